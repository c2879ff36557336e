"""``python -m exporters``: ``run`` the sampling agent, or ask the ``doctor`` about every source."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from collections import Counter as Tally

from exporters.agent import Agent
from exporters.cli import (
    ArgumentParser,
    main_guard,
    positive_float,
    setup_logging,
    whole_number,
)
from exporters.config import load_config
from exporters.errors import StoreError
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
    run.add_argument("--metrics-port", type=whole_number, help="serve /metrics on this port")
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


EXIT_S = 6.0  # from SIGTERM to exit, at most (Docker kills after 10 s)


def run(args) -> int:
    cfg = _config(args)
    store = open_store(cfg["store"])
    try:
        store.check_writable()  # a read-only or damaged store: one line, exit 2, before sampling
    except BaseException:
        store.close(timeout_s=0.0)
        raise
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
        priority=cfg["sampler_priority"],
    )
    if cfg["metrics"]["port"] is not None:
        from exporters.metrics import serve_metrics

        port = serve_metrics(agent, cfg["metrics"]["port"], cfg["metrics"]["addr"])
        log.info("serving /metrics on http://%s:%d/metrics", cfg["metrics"]["addr"], port)
    stopped: list[float] = []

    def stop(*_: object) -> None:
        stopped.append(time.monotonic())
        agent.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    log.info("sampling %s into %s", ", ".join(s.name for s in sources) or "nothing", store.url)
    try:
        agent.run(args.duration)
    finally:  # after a signal, the store gets what is left of EXIT_S to send what waits
        store.close(
            timeout_s=max(0.5, EXIT_S - (time.monotonic() - stopped[0])) if stopped else None
        )
    log.info("stopped after writing %d points", agent.points_total)
    if agent.points_lost:
        raise StoreError(
            f"{agent.points_lost} sampled points were not stored in {store.url}: the store was "
            "stuck (see the errors above)"
        )
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
