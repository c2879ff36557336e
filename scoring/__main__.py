"""``python -m scoring``: ``energy`` in a window, ``runs`` with scores and rankings, the
``report``, the scoring service (``serve``), and bundles: ``export``, ``verify``, ``import``."""

from __future__ import annotations

import logging
import signal
import sys

from exporters.cli import ArgumentParser, main_guard, positive_float, setup_logging
from exporters.errors import UsageError
from exporters.stores import open_store
from exporters.stores.base import Store
from exporters.times import parse_time
from exporters.window import DEFAULT_COUNTED, WindowEnergy, window_energy
from scoring import bundle, importer, jsonout, rankings, verify
from scoring.figures import ALWAYS, FIGURES, TEXT, Figure, printable
from scoring.rankings import SCORES, compare, entries, ranking
from scoring.runs import RunScore, load_runs, repeat_stats, warn_invalid
from scoring.service import ScoringService
from scoring.sweep import ranked_at_best


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m scoring", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    energy = sub.add_parser("energy", help="energy per domain in a window")
    energy.add_argument("--start", required=True, help="RFC 3339, epoch ns, now, or -15m")
    energy.add_argument("--end", default="now", help="RFC 3339, epoch ns, now (default)")
    energy.add_argument(
        "--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)"
    )
    energy.add_argument("--host", help="only this host's domains")
    energy.add_argument(
        "--count",
        default=",".join(DEFAULT_COUNTED),
        help="domain patterns that make the total (default: %(default)s)",
    )
    energy.add_argument("--json", action="store_true", help="print one JSON document")

    runs = sub.add_parser("runs", help="runs with energy, accuracy, scores and rankings")
    runs.add_argument("--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)")
    runs.add_argument("--since", default="0", help="only runs started after this time")
    runs.add_argument("--score", default="composite", choices=sorted(SCORES), help="rank by")
    runs.add_argument("--reference", help="reference machine (host) for the comparison")
    runs.add_argument("--at-best", action="store_true", help="rank each swept model at its "
                      "energy-optimal sweep point on each machine (benchmark sweep)")  # fmt: skip
    runs.add_argument("--json", action="store_true", help="print one JSON document")

    report = sub.add_parser("report", help="write index.html, scores.csv, scores.json, charts")
    report.add_argument(
        "--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)"
    )
    report.add_argument("--out", required=True, help="directory to write the report into")
    report.add_argument("--since", default="0", help="only runs started after this time")
    report.add_argument("--reference", help="reference machine (host) for the comparison")

    serve = sub.add_parser("serve", help="score finished runs and write score points")
    serve.add_argument("--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)")
    serve.add_argument("--poll", type=positive_float, default=5.0, help="seconds between passes")
    serve.add_argument("--grace", type=positive_float, default=10.0,
                       help="seconds after a run's end to wait for its last samples")  # fmt: skip
    serve.add_argument("--once", action="store_true", help="one pass, then exit")
    for module in (bundle, verify, importer):  # export, verify, import: their own modules
        module.add_parser(sub)
    return parser


def _table(result: WindowEnergy) -> str:
    rows = [f"window {result.to_dict()['start']} .. {result.to_dict()['end']}"]
    rows.append(
        f"{'host':16} {'source':7} {'domain':13} {'joules':>12} {'method':8} {'coverage':>8}  note"
    )
    for d in result.domains:
        notes = [n for n, on in (("counted", d.counted), ("ESTIMATED", d.estimated)) if on]
        if d.mismatch:
            notes.append(f"counter and power disagree ({d.power_joules:.1f} J by power)")
        rows.append(
            f"{d.host:16} {d.source:7} {d.domain:13} {d.joules:12.3f} {d.method:8} "
            f"{d.coverage:8.1%}  {', '.join(notes)}"
        )
    total = f"total {result.total_joules:.3f} J over {len(result.counted)} counted domains"
    if result.estimated:
        total += " (includes an ESTIMATE, not a measurement)"
    if result.counted and result.coverage < 1:
        total += f"; samples cover only {result.coverage:.1%} of the window"
    rows.append(total)
    return "\n".join(rows)


def energy(args) -> int:
    start, end = parse_time(args.start), parse_time(args.end)
    if end <= start:
        raise UsageError(f"--end ({args.end}) is not after --start ({args.start}): swap them")
    with open_store(args.store) as store:
        result = window_energy(store, start, end, host=args.host, counted=args.count.split(","))
    if args.json:
        jsonout.dump(result.to_dict())
    else:
        print(_table(result))
        if not result.domains:
            print(
                "no energy samples in this window: is the agent running (python -m exporters run)?"
            )
    return 0


def _num(value: object, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


# The runs table: the figures with a CLI view, then the flags. Those shown SOME appear where some
# run has a value: no GPU columns on a machine without GPUs, no wall column without a wall meter.
# `--json` has every figure.
RUN_COLUMNS = tuple(f for f in FIGURES if f.cli is not None)


def _cell(value: object, width: int, spec: str) -> str:
    if isinstance(value, str):
        return f"{value:{width}{spec}}"
    return f"{_num(value, spec):>{width}}"


def _header(figure: Figure) -> str:
    view = figure.cli
    return f"{view.header:{view.width}}" if figure.unit == TEXT else f"{view.header:>{view.width}}"


def runs_text(runs: list[RunScore], score: str, reference: str | None,
              ranked: list[RunScore] | None = None) -> str:  # fmt: skip
    """The runs table, repeats and rankings; ``ranked``: the runs rankings use (all)."""
    columns = [
        f for f in RUN_COLUMNS if f.cli.show == ALWAYS or any(f.value(r) is not None for r in runs)
    ]
    lines = [" ".join(_header(f) for f in columns) + "  flags"]
    for r in runs:
        cells = " ".join(_cell(f.shown(r), f.cli.width, f.cli.fmt) for f in columns)
        lines.append(f"{cells}  " + "; ".join(printable(n) for n in r.remarks))
    stats = [s for s in repeat_stats(runs) if s.runs > 1]
    if stats:
        lines.append("\nrepeats (mean uWh per inference, spread = std/mean):")
        for s in stats:
            flag = "  SPREAD OVER 5%" if s.flagged else ""
            lines.append(f"  {s.host:12} {s.label:20} {s.runs} runs  {s.uwh_mean:.4f} uWh  "
                         f"spread {s.spread:.1%}{flag}")  # fmt: skip
    items = entries(runs if ranked is None else ranked)
    if ranked is not None:
        lines += ["", "rankings at each swept model's energy-optimal point (--at-best; a model "
                  "not swept: all its runs)"]  # fmt: skip
    for host, in_order in ranking(items, score).items():
        lines += ["", *rankings.ranking_lines(host, in_order, score)]
    lines += ["", *rankings.rating_lines(runs), *rankings.environment_lines(runs)]
    hosts = sorted({e.host for e in items})
    if len(hosts) > 1:
        ref = reference or hosts[0]
        lines.append(f"\n{score} across machines (ratio to {ref}):")
        lines.append(f"  {'model':24}" + "".join(f" {h[:16]:>24}" for h in hosts))
        for c in compare(items, ref, score):
            cells = [
                f"{c.values[h]:10.4g} ({c.ratios[h]:6.2f}x)" if h in c.values and h in c.ratios
                else _num(c.values.get(h), "10.4g")
                for h in hosts
            ]  # fmt: skip
            lines.append(f"  {c.model:24}" + "".join(f" {cell:>24}" for cell in cells))
    return "\n".join(lines)


def _load(store: Store, since: str) -> list[RunScore]:
    """The runs started after ``since``, scored; each invalid one logged (stderr) once."""
    runs = load_runs(store, parse_time(since))
    for run in runs:
        warn_invalid(run)
    return runs


def runs_command(args) -> int:
    with open_store(args.store) as store:
        runs = _load(store, args.since)
        ranked, at_best = ranked_at_best(store, runs) if args.at_best else (runs, None)
    if args.json:
        items = entries(ranked)
        doc = {
            "runs": [r.as_dict() for r in runs],
            "repeats": [vars(s) | {"spread": s.spread, "flagged": s.flagged}
                        for s in repeat_stats(runs)],
            "rankings": {h: [e.model for e in es] for h, es in ranking(items, args.score).items()},
            "score": args.score,
        } | rankings.ranking_json(runs, items, args.score)  # fmt: skip
        if at_best is not None:
            doc["at_best"] = at_best  # {host: {model: the run of its best sweep point}}
        jsonout.dump(doc)
    elif not runs:
        print("no runs in this store yet: make bench (or python -m benchmark run) makes one")
    else:
        print(runs_text(runs, args.score, args.reference, ranked if args.at_best else None))
    return 0


def report(args) -> int:
    from pathlib import Path

    from scoring.report import write_report

    with open_store(args.store) as store:
        runs = _load(store, args.since)
        index = write_report(store, Path(args.out), runs, reference_host=args.reference)
    invalid = sum(r.status == "invalid" for r in runs)
    also = f", {invalid} invalid (see their flags)" if invalid else ""
    print(f"wrote {index} ({len(runs)} runs{also}), scores.csv and scores.json beside it")
    return 0


def serve(args) -> int:
    with open_store(args.store) as store:
        service = ScoringService(store, poll_s=args.poll, grace_s=args.grace)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: service.stop())
        logging.getLogger("scoring").info("scoring finished runs in %s", store.url)
        scored = service.run(once=args.once)
    logging.getLogger("scoring").info("scored %d runs", scored)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    commands = {"energy": energy, "runs": runs_command, "report": report, "serve": serve}
    commands |= {"export": bundle.export_command, "verify": verify.verify_command,
                 "import": importer.import_command}  # fmt: skip
    return main_guard("scoring", lambda: commands[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
