"""``python -m exporters``: ``run`` the sampling agent, or ask the ``doctor`` about every source."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections import Counter as Tally

from exporters.agent import Agent
from exporters.cli import ArgumentParser, main_guard, positive_float, setup_logging
from exporters.config import load_config
from exporters.sources import build_sources, check_sources
from exporters.sources.custom import CustomSource
from exporters.stores import open_store

log = logging.getLogger("exporters")


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m exporters", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sample the hardware into a store")
    doctor = sub.add_parser("doctor", help="say, for every source, whether it works and why not")
    for p in (run, doctor):
        p.add_argument("--config", help="YAML configuration file (see README, 'Configuration')")
        p.add_argument("--sysfs-root", help="root of the sysfs tree (default /sys)")
        p.add_argument("--procfs-root", help="root of the procfs tree (default /proc)")
        p.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)")
    run.add_argument(
        "--interval", type=positive_float, help="power sampling interval in seconds (0.1)"
    )
    run.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    run.add_argument("--metrics-port", type=int, help="serve /metrics on this port")
    run.add_argument("--host", help="host tag (default: this machine's hostname)")
    return parser


def _config(args) -> dict:
    overrides = {"sysfs_root": args.sysfs_root, "procfs_root": args.procfs_root}
    if args.command == "run":
        overrides.update(store=args.store, host=args.host)
        if args.interval is not None:
            overrides["interval_s"] = {"power": args.interval}
        if args.metrics_port is not None:
            overrides["metrics"] = {"port": args.metrics_port}
    return load_config(args.config, overrides=overrides)


def run(args) -> int:
    cfg = _config(args)
    store = open_store(cfg["store"])
    sources, waiting, notes = build_sources(cfg)
    for note in notes:
        log.info("%s", note)
    agent = Agent(
        sources,
        store,
        host=cfg["host"] or socket.gethostname(),
        intervals=cfg["interval_s"],
        flush_interval_s=cfg["flush_interval_s"],
        waiting=waiting,
    )
    if cfg["metrics"]["port"] is not None:
        from exporters.metrics import serve_metrics

        port = serve_metrics(agent, cfg["metrics"]["port"], cfg["metrics"]["addr"])
        log.info("serving /metrics on http://%s:%d/metrics", cfg["metrics"]["addr"], port)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: agent.stop())
    log.info("sampling %s into %s", ", ".join(s.name for s in sources) or "nothing", store.url)
    try:
        agent.run(args.duration)
    finally:
        store.close()
    log.info("stopped after writing %d points", agent.points_total)
    return 0


def doctor(args) -> int:
    cfg = _config(args)
    for check in check_sources(cfg):
        name, source = check.name, check.source
        if not check.used:
            print(
                f"{name:10} not used: {check.auto}"
                if check.auto
                else f"{name:10} disabled: enable with sources.{name}.enabled: true in the config"
            )
            continue
        why = check.why
        if isinstance(source, CustomSource):  # say where it comes from
            why += f" [custom source {source.spec}, kind {source.kind}]"
        if check.auto:
            why = why.rstrip(".") + f". Used here because {check.auto}."
        print(f"{name:10} {'found' if check.ok else 'NOT AVAILABLE'}: {why}")
        if check.ok:
            try:
                readings = source.read()
            except Exception as e:  # the doctor reports, it never crashes
                print(f"{'':10} reading failed: {e}")
                continue
            tally = Tally(r.measurement for r in readings)
            what = ", ".join(f"{n} {m}" for m, n in sorted(tally.items()))
            print(f"{'':10} reads {what or 'nothing'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    command = {"run": run, "doctor": doctor}[args.command]
    return main_guard("exporters", lambda: command(args))


if __name__ == "__main__":
    sys.exit(main())
