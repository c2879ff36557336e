"""``python -m scoring``: ``energy`` of every domain in a time window (more commands to come)."""

from __future__ import annotations

import json
import sys

from exporters.cli import ArgumentParser, main_guard, setup_logging
from exporters.errors import UsageError
from exporters.stores import open_store
from exporters.times import parse_time
from exporters.window import DEFAULT_COUNTED, WindowEnergy, window_energy


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
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(_table(result))
        if not result.domains:
            print(
                "no energy samples in this window: is the agent running (python -m exporters run)?"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    return main_guard("scoring", lambda: {"energy": energy}[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
