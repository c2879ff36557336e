"""``python -m benchmark sweep``: every operating point of some models as its own tagged run, then
each model's energy-optimal point and its Pareto front of energy per inference against p99
batch latency (:mod:`scoring.sweep`).

The points are models x backends x precisions x batch sizes, in that order. Every one is
checked before the first run starts (an unknown model, a backend and precision no engine
runs together, a ``--data`` that cannot be read, a run id in use): one line, exit 2. Each point
is one run, ``SWEEP-MODEL-BACKEND-PRECISION-bBATCH`` (``--sweep-id`` names the sweep, whose
name every point's ``start`` event carries).

Where points run: Keras fixes its backend at its first import in a process, so the points of
the process's backend run here, one model build per model and setting for all its batch
sizes; each other backend's points run in one child process (``python -m benchmark sweep``
for that backend alone, ``KERAS_BACKEND`` set for it), before this process starts sampling,
so that no two samplers of this host run at once. The results are read back from the store,
as scoring reads every run, whichever process ran them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmark import engines
from exporters.config_checks import tag_problem
from exporters.errors import UsageError, shown
from scoring import jsonout
from scoring.sweep import Sweep, SweepPoint, sweep_points, sweeps


@dataclass(frozen=True)
class Point:
    """One operating point of a sweep."""

    model: str
    backend: str
    precision: str
    jit: str
    batch_size: int

    def run_id(self, sweep: str) -> str:
        jit = "" if self.jit == "auto" else f"-jit{self.jit}"
        return f"{sweep}-{self.model}-{self.backend}-{self.precision}{jit}-b{self.batch_size}"


def add_parser(sub: argparse._SubParsersAction, count: Callable[[str], int]) -> None:
    """The ``sweep`` subcommand's options; ``count`` parses a positive whole number."""
    p = sub.add_parser("sweep", help="each operating point (batch size, backend, precision) as "
                       "its own run; each model's best point and Pareto front")  # fmt: skip
    p.add_argument("--model", required=True, help="registry names, comma-separated")
    p.add_argument("--batch-sizes", required=True, type=_counts(count),
                   help="comma-separated, e.g. 1,8,32,128")  # fmt: skip
    engines.add_arguments(p, several=True)  # --backends, --precisions, --jit
    p.add_argument("--data", default="auto", help="as for run: ILSVRC2012 val directory, "
                   "'synthetic', 'digits' or 'auto'")  # fmt: skip
    p.add_argument("--limit", type=count, help="at most this many images per point")
    p.add_argument("--weights", default="auto", help="as for run (default auto)")
    p.add_argument("--min-duration", type=float, default=0.0,
                   help="seconds each point's pass lasts at least")  # fmt: skip
    p.add_argument("--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)")
    p.add_argument("--sweep-id", help="name of the sweep (default: sweep, time, random tag)")
    p.add_argument("--json", action="store_true", help='print {"runs": [...], "best": [...]}')
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)


def _counts(count: Callable[[str], int]) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        return sorted({count(part) for part in text.split(",")})

    return parse


def points_of(args: argparse.Namespace) -> list[Point]:
    """Every point of the sweep, in a stable order; models as the registry names them."""
    from benchmark.registry import get_spec

    models = [get_spec(m).name for m in args.model.split(",")]
    return [Point(m, b, p, args.jit, n) for m in dict.fromkeys(models)
            for b in args.backends for p in args.precisions for n in args.batch_sizes]  # fmt: skip


def check(args: argparse.Namespace, points: list[Point]) -> None:
    """Every problem of the sweep, before anything runs: one :class:`UsageError`."""
    from benchmark.datasets import open_dataset
    from benchmark.registry import get_spec
    from benchmark.runner import data_source

    problems = []
    why = None if args.sweep_id is None else tag_problem(args.sweep_id)
    if why:
        problems.append(f"--sweep-id {shown(args.sweep_id)} is not usable: {why}")
    settings = dict.fromkeys((p.backend, p.precision, p.jit) for p in points)
    for backend, precision, jit in settings:
        why = engines.check_point(backend, precision, jit)
        if why:
            problems.append(f"{backend} {precision} jit {jit}: {why}")
    for model, backend in dict.fromkeys((p.model, p.backend) for p in points):
        why = engines.check_model(get_spec(model), backend)
        if why:
            problems.append(why)
    if problems:
        raise UsageError("; ".join(problems))
    for model, backend in {p.model: p.backend for p in points}.items():
        spec = get_spec(model)  # a bad --data raises a UsageError naming the fix
        open_dataset(data_source(args.data, spec), spec, args.limit,
                     pipeline=engines.pipeline_for(backend))  # fmt: skip


def _claim(store, sweep_id: str | None, points: list[Point]) -> str:
    """The sweep's id: ``sweep_id``, refused where one of its points' run ids is in use."""
    from benchmark.records import ids_in_use

    base = (
        sweep_id or f"sweep-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.urandom(2).hex()}"
    )
    used = ids_in_use(store, [p.run_id(base) for p in points])
    if used and sweep_id is None:
        return _claim(store, None, points)
    if used:
        raise UsageError(f"--sweep-id {shown(sweep_id)} is in use: {shown(used[0])} already has "
                         f"run events in {store.url}; give another --sweep-id")  # fmt: skip
    return base


def process_backend(backends: list[str]) -> str:
    """The Keras backend of this process: Keras's own once imported, else set here
    (:func:`benchmark.engines.use_backend`) for the first of ``backends`` Keras runs."""
    if "keras" in sys.modules:
        return engines.default_backend()
    wanted = [b for b in backends if b in engines.KERAS_BACKENDS] or backends
    return engines.use_backend(wanted[0])


def _child(args: argparse.Namespace, backend: str, sweep_id: str) -> None:
    """Run the points of ``backend`` in a child process (Keras's backend set for it)."""
    argv = [sys.executable, "-m", "benchmark", "sweep", "--in-process", "--json",
            "--model", args.model, "--batch-sizes", ",".join(map(str, args.batch_sizes)),
            "--backends", backend, "--precisions", ",".join(args.precisions), "--jit", args.jit,
            "--data", args.data, "--weights", args.weights, "--sweep-id", sweep_id,
            "--min-duration", str(args.min_duration), "--no-progress"]  # fmt: skip
    argv += ["--limit", str(args.limit)] if args.limit else []
    argv += ["--store", args.store] if args.store else []
    env = dict(os.environ)
    if backend in engines.KERAS_BACKENDS:
        env["KERAS_BACKEND"] = backend
    print(f"sweep: the {backend} points run in a child process", file=sys.stderr)
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise UsageError(f"the {backend} points of sweep {sweep_id} failed (exit status "
                         f"{done.returncode}; its error is printed above)")  # fmt: skip


def _run_here(args: argparse.Namespace, points: list[Point], sweep_id: str, store) -> None:
    """Run ``points`` in this process: one model build per model and setting."""
    from benchmark.runner import RunOptions, prepare, run_benchmark
    from benchmark.sampling import Sampler

    base = RunOptions(model="", data=args.data, limit=args.limit, weights=args.weights,
                      min_duration_s=args.min_duration, sweep=sweep_id,
                      progress=not args.no_progress and sys.stderr.isatty())  # fmt: skip
    with Sampler(store) as sampler:
        print(f"sampling: {sampler.describe()}", file=sys.stderr)
        prepared, key = None, None
        for i, p in enumerate(points, 1):
            opts = dataclasses.replace(base, model=p.model, backend=p.backend,
                                       precision=p.precision, jit=p.jit, batch_size=p.batch_size,
                                       run_id=p.run_id(sweep_id))  # fmt: skip
            if key != (p.model, p.backend, p.precision, p.jit):
                prepared, key = None, (p.model, p.backend, p.precision, p.jit)
                prepared = prepare(opts)
            print(f"sweep point {i}/{len(points)}: {opts.run_id}", file=sys.stderr)
            run_benchmark(opts, store, sampler, prepared)


def run_points(args: argparse.Namespace, points: list[Point], sweep_id: str) -> None:
    """Run every point: other backends' in child processes first, then this process's."""
    from exporters.stores import open_store

    here = process_backend(args.backends)
    local = [p for p in points  # ONNX Runtime builds its export with any Keras backend
             if args.in_process or p.backend in (here, "onnxruntime")]  # fmt: skip
    for backend in dict.fromkeys(p.backend for p in points if p not in local):
        _child(args, backend, sweep_id)
    if local:
        with open_store(args.store) as store:
            _run_here(args, local, sweep_id, store)


def results(store_url: str | None, sweep_id: str, start_ns: int) -> list[SweepPoint]:
    """The sweep's points as scoring reads them from the store."""
    from exporters.stores import open_store
    from scoring.runs import load_runs

    with open_store(store_url) as store:
        runs = load_runs(store, start_ns)
        return [p for p in sweep_points(store, runs) if p.sweep == sweep_id]


def table(groups: list[Sweep]) -> str:
    """Per model and machine: every point, its best point and its front."""
    lines = []
    for s in groups:
        on_front = {p.run_id for p in s.front}
        lines.append(f"{s.model} on {s.host}:")
        lines.append(f"  {'setting':34} {'uWh/inf':>10} {'img/s':>9} {'p99 ms':>9}")
        for p in s.points:
            p99 = "-" if p.latency_p99_s is None else f"{p.latency_p99_s * 1e3:9.2f}"
            ips = "-" if p.images_per_s is None else f"{p.images_per_s:9.1f}"
            mark = ("  best" if p is s.best else "") + ("  front" if p.run_id in on_front else "")
            uwh = "-" if p.uwh_per_inference is None else f"{p.uwh_per_inference:10.4f}"
            mark += "  not scored (python -m scoring runs says why)" if uwh == "-" else ""
            lines.append(f"  {p.setting[:34]:34} {uwh:>10} {ips:>9} {p99:>9}{mark}")
        if s.best is not None:
            lines.append(f"  energy-optimal: {s.best.setting} "
                         f"({s.best.uwh_per_inference:.4f} uWh per inference)")  # fmt: skip
        front = ", ".join(p.setting for p in s.front) or "none (no p99 latency recorded)"
        lines.append(f"  Pareto front (energy against p99 latency): {front}")
    return "\n".join(lines) or "no scored points: see python -m scoring runs for why"


def document(groups: list[Sweep], sweep_id: str) -> dict:
    """``--json``: every point (marked best and on the front) and each model's best point."""
    runs = []
    for s in groups:
        on_front = {p.run_id for p in s.front}
        runs += [p.as_dict() | {"best": p is s.best, "on_front": p.run_id in on_front}
                 for p in s.points]  # fmt: skip
    best = [s.best.as_dict() | {"front": [p.run_id for p in s.front]}
            for s in groups if s.best is not None]  # fmt: skip
    return {"sweep": sweep_id, "runs": runs, "best": best}


def sweep(args: argparse.Namespace) -> int:
    """The ``sweep`` command."""
    from exporters import clock
    from exporters.stores import open_store

    args.backends = args.backends or [engines.default_backend()]
    if not args.in_process:
        process_backend(args.backends)  # before anything imports Keras
    points = points_of(args)
    check(args, points)
    with open_store(args.store) as store:
        sweep_id = _claim(store, args.sweep_id, points)
    start_ns = clock.wall_ns()
    run_points(args, points, sweep_id)
    if args.in_process:
        return 0  # a child: the parent reads the results
    groups = sweeps(results(args.store, sweep_id, start_ns))
    if args.json:
        jsonout.dump(document(groups, sweep_id))
    else:
        print(table(groups))
    return 0
