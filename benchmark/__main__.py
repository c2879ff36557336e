"""``python -m benchmark``: ``run`` a model over a dataset as measured windows; ``sweep`` its
operating points; list ``models``."""

from __future__ import annotations

import dataclasses
import os
import re
import sys

from benchmark import campaign as campaign_cli
from benchmark import engines
from benchmark import sweep as sweep_cli
from benchmark.steadiness import COOLDOWN_TOLERANCE, check_cooldown
from exporters.cli import (
    ArgumentParser,
    main_guard,
    positive_float,
    setup_logging,
    whole_number,
)
from exporters.config_checks import tag_problem
from exporters.errors import UsageError, shown
from exporters.priority import cpu_problem
from scoring import jsonout

MAX_COUNT = 10**9  # images, passes or a batch: more is a typo (and no memory holds such a batch)


def _positive_int(text: str) -> int:
    """argparse type: a whole number from 1 to :data:`MAX_COUNT`, in ASCII digits."""
    import argparse

    digits = text.strip()
    if not re.fullmatch(r"[0-9]{1,10}", digits) or not 1 <= int(digits) <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a whole number above 0 (at most {MAX_COUNT:,})"
        )
    return int(digits)


def _idle(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else positive_float(text)


def _cpu(text: str) -> int:
    """argparse type: a CPU this process may run on."""
    import argparse

    cpu = whole_number(text)
    why = cpu_problem(cpu)
    if why:
        raise argparse.ArgumentTypeError(why)
    return cpu


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a model over a dataset, each pass a measured window")
    run.add_argument("--model", required=True, help="a registry name (python -m benchmark models)")
    run.add_argument(
        "--data",
        default="auto",
        help="ILSVRC2012 val directory, 'synthetic', 'digits', or 'auto' (digits for "
        "digits_cnn, synthetic otherwise)",
    )
    run.add_argument("--batch-size", type=_positive_int, default=32)
    run.add_argument("--limit", type=_positive_int, help="at most this many images")
    run.add_argument("--repeats", type=_positive_int, default=1, help="measured passes (1)")
    run.add_argument(
        "--weights", default="auto", help="auto (imagenet, else random), imagenet, random, or a "
        ".keras/.h5 file",
    )  # fmt: skip
    run.add_argument("--idle", type=_idle, default=0.0,
                     help="seconds of idle baseline first, measured again after the last pass "
                     "(a baseline that moved is flagged)")  # fmt: skip
    run.add_argument("--cooldown", type=_idle, default=0.0, metavar="SECONDS",
                     help="before each pass, wait at most this long for power back within "
                     f"{COOLDOWN_TOLERANCE * 100:.0f}%% of the idle baseline (needs --idle; the "
                     "wait is recorded)")  # fmt: skip
    run.add_argument(
        "--min-duration", type=_idle, default=0.0,
        help="seconds each pass lasts at least: the data is gone over again until then (MLPerf "
        "Power asks for 60 s)",
    )  # fmt: skip
    run.add_argument("--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)")
    run.add_argument("--run-id", help="name of the run (default: model, time and a random tag); "
                     "one already in the store is refused, unless --replace")  # fmt: skip
    run.add_argument("--replace", action="store_true",
                     help="run a --run-id already in the store again: scoring takes the newest "
                     "run, the older events stay")  # fmt: skip
    run.add_argument("--agent-cpu", type=_cpu, metavar="N",
                     help="keep our own sampling agent's thread on CPU N (one the inference "
                     "is kept off, with taskset or the framework's own settings)")  # fmt: skip
    run.add_argument("--json", action="store_true", help="print one JSON document")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    engines.add_arguments(run)  # --backend, --precision, --jit
    sweep_cli.add_parser(sub, _positive_int)
    campaign_cli.add_parser(sub)
    models = sub.add_parser("models", help="list the model registry")
    models.add_argument("--json", action="store_true")
    return parser


def _check_run_id(run_id: str | None, replace: bool) -> None:
    why = None if run_id is None else tag_problem(run_id)
    if why:
        raise UsageError(f"--run-id {shown(run_id)} is not usable: {why}")
    if replace and run_id is None:
        raise UsageError("--replace runs a --run-id again: give the --run-id to replace")


def _table(summaries: list[dict]) -> str:
    head = (
        f"{'run':34} {'images':>7} {'seconds':>8} {'img/s':>8} {'joules':>10} "
        f"{'uWh/inf':>9} {'top-1':>6} {'accuracy':9} {'composite':>9}"
    )
    rows = [head]
    for s in summaries:

        def num(key: str, fmt: str, s=s) -> str:
            return format(s[key], fmt) if s[key] is not None else "-"

        rows.append(
            f"{s['run_id'][:34]:34} {s['images']:7d} {s['seconds']:8.2f} "
            f"{s['images_per_s']:8.1f} {num('joules', '10.2f'):>10} "
            f"{num('uwh_per_inference', '9.4f'):>9} {num('top1', '6.3f'):>6} "
            f"{s['accuracy_source']:9} {num('composite', '9.2f'):>9}"
        )
    last = summaries[-1]
    if last["estimated"]:
        rows.append("ENERGY IS ESTIMATED from CPU utilisation (no RAPL or GPU counter readable): "
                    "see python -m exporters doctor")  # fmt: skip
    if last["joules"] is None:
        rows.append("no energy was measured: python -m exporters doctor says why")
    if last["coverage"] is not None and last["coverage"] < 1:
        rows.append(f"samples cover only {last['coverage']:.1%} of the window")
    if last["idle_watts"] is not None:
        rows.append(f"idle baseline {last['idle_watts']:.2f} W; net of idle: "
                    + ", ".join(f"{s['net_joules']:.2f} J" for s in summaries))  # fmt: skip
    rows.extend(f"note: {n}" for n in last["notes"])
    return "\n".join(rows)


def _image_error(e: Exception, data: str) -> Exception:
    """A :class:`UsageError` where ``e`` is an image of ``data`` that cannot be decoded (the
    pass under way has written its ``fail`` event with the reason), else ``e`` itself."""
    from benchmark.images import undecodable

    why = undecodable(e)
    if why is None:
        return e
    return UsageError(
        f"an image in --data {shown(data)} cannot be decoded ({why}): replace or remove the "
        "corrupt file and run again"
    )


def run(args) -> int:
    from benchmark.runner import RunOptions, claim_run_id, prepare, run_benchmark
    from benchmark.sampling import Sampler
    from exporters.stores import open_store

    _check_run_id(args.run_id, args.replace)
    check_cooldown(args.cooldown, args.idle)
    opts = RunOptions(
        model=args.model, data=args.data, batch_size=args.batch_size, limit=args.limit,
        repeats=args.repeats, weights=args.weights, idle_s=args.idle, run_id=args.run_id,
        min_duration_s=args.min_duration, cooldown_s=args.cooldown,
        progress=not args.no_progress and sys.stderr.isatty(),
        backend=args.backend or engines.default_backend(), precision=args.precision, jit=args.jit,
    )  # fmt: skip
    prepared = prepare(opts)  # bad input fails here, before anything starts
    with open_store(args.store) as store:
        run_id = claim_run_id(store, args.run_id, prepared.spec.name, args.repeats, args.replace)
        opts = dataclasses.replace(opts, run_id=run_id)
        with Sampler(store, agent_cpu=args.agent_cpu) as sampler:
            print(f"sampling: {sampler.describe()}", file=sys.stderr)
            try:
                results = run_benchmark(opts, store, sampler, prepared)
            except Exception as e:
                error = _image_error(e, args.data)
                if error is e:
                    raise
                raise error from e
    summaries = [r.summary() for r in results]
    if args.json:
        jsonout.dump({"runs": summaries})
    else:
        print(_table(summaries))
    return 0


def models(args) -> int:
    from benchmark.listing import registry_json, registry_table

    if args.json:
        jsonout.dump(registry_json())
    else:
        print(registry_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    setup_logging()
    commands = {"run": run, "models": models, "sweep": sweep_cli.sweep}
    command = {**commands, "campaign": campaign_cli.command}[args.command]
    return main_guard("benchmark", lambda: command(args))


if __name__ == "__main__":
    sys.exit(main())
