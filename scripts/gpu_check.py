"""``make gpu-check``: tubai's GPU path on a real NVIDIA GPU, offline, without TensorFlow, in 8 min.

    python scripts/gpu_check.py [--out DIR] [--backend torch|jax] [--budget-s 480] ...

Four steps, each timed and each bounded by its share of the budget (a step that runs out of
time is stopped, reported as ``timed out``, and the next one goes on):

1. ``gpu tests``: the tests marked ``gpu`` (``pytest -m gpu``), on the real NVML.
2. ``nvml check``: one real model's pass (``--nvml-model``, synthetic data, ``--backend``) with
   NVML sampled; for each GPU, its energy counter over the window against its integrated power,
   and the >5% flag of :mod:`exporters.window` (``DomainEnergy.mismatch``: one rule, one home).
3. ``models``: the paper's eight models (``paper/table1_a100.csv``) at batch 1 and 32 on
   synthetic data, each model one ``python -m benchmark sweep`` in its own process.
4. ``table``: Table I-like figures of every run (scored by :mod:`scoring.runs`), printed and,
   with the rest, written to ``DIR/gpu_check.json``; the models' runs are in
   ``DIR/gpu_check.db``, the NVML pass in ``DIR/nvml_check.db``.

Exit status: 0 when every step that ran passed (the NVML counter and power agree, the GPU
tests passed or were skipped), 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: the repository's packages
    sys.path.insert(0, str(ROOT))

BUDGET_S = 480.0  # the whole check: 8 minutes
TESTS_BUDGET_S = 90.0
NVML_BUDGET_S = 90.0
RESERVE_S = 15.0  # kept for the table and the JSON
BATCH_SIZES = (1, 32)


@dataclass
class Step:
    """One step: its budget, how long it took, and what it found."""

    name: str
    budget_s: float
    status: str = "not run"  # passed, failed, skipped, timed out, not run
    seconds: float = 0.0
    detail: dict = field(default_factory=dict)


class Clock:
    """The check's time: what is left of the budget."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget_s = time.monotonic(), budget_s

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)


def paper_models() -> list[str]:
    """The reference paper's eight models, from its Table I."""
    with (ROOT / "paper" / "table1_a100.csv").open(newline="") as f:
        return [row["model"] for row in csv.DictReader(f)]


def _timed(step: Step, body) -> Step:
    start = time.monotonic()
    try:
        body(step)
    except subprocess.TimeoutExpired:
        step.status = "timed out"
    except Exception as e:  # a step that breaks is reported, the next one runs
        step.status, step.detail["error"] = "failed", f"{type(e).__name__}: {e}"
    step.seconds = round(time.monotonic() - start, 2)
    print(f"[{step.name}] {step.status} in {step.seconds:.1f} s (budget {step.budget_s:.0f} s)",
          file=sys.stderr)  # fmt: skip
    return step


def gpu_tests(step: Step, paths: list[str]) -> None:
    """``pytest -m gpu``: passed, failed, or skipped where no GPU answers. A test module that
    cannot be imported here (one that needs TensorFlow) does not stop the others."""
    argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
            "--continue-on-collection-errors", *paths]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=step.budget_s)
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    step.detail = {"summary": summary, "exit_status": done.returncode}
    if " failed" in summary:
        step.status = "failed"
    else:  # collection errors alone are reported in the summary, not a failure of the GPU
        step.status = "passed" if " passed" in summary else "skipped"


def _gpu_comparison(energy) -> list[dict]:
    """Each GPU's counter energy against its integrated power over the window."""
    out = []
    for d in energy.domains:
        if d.role != "gpu":
            continue
        diff = (None if d.power_joules is None or not d.joules
                else (d.power_joules - d.joules) / d.joules)  # fmt: skip
        out.append({"domain": d.domain, "source": d.source, "counter_joules": d.joules,
                    "power_joules": d.power_joules, "difference": diff, "method": d.method,
                    "flagged": d.mismatch})  # fmt: skip
    return out


def nvml_check(step: Step, store_url: str, model: str, seconds: float, limit: int,
               backend: str) -> None:  # fmt: skip
    """One real pass of ``model`` with NVML sampled: the counter against integrated power."""
    from benchmark.runner import RunOptions, run_benchmark
    from benchmark.sampling import Sampler
    from exporters.stores import open_store

    opts = RunOptions(model=model, data="synthetic", batch_size=32, limit=limit,
                      weights="random", min_duration_s=seconds, progress=False,
                      backend=backend,
                      run_id=f"gpu-check-nvml-{time.time_ns()}")  # fmt: skip
    with open_store(store_url) as store, Sampler(store) as sampler:
        (result,) = run_benchmark(opts, store, sampler)
    gpus = _gpu_comparison(result.energy)
    step.detail = {"run_id": result.run_id, "seconds": result.duration_s, "gpus": gpus}
    if not gpus:
        step.status, step.detail["why"] = "failed", "no GPU energy measured: is NVML readable?"
    elif any(g["flagged"] or g["power_joules"] is None for g in gpus):
        step.status = "failed"
    else:
        step.status = "passed"


def models(step: Step, clock: Clock, names: list[str], args: argparse.Namespace) -> None:
    """Each model at batch 1 and 32, one ``benchmark sweep`` process each, within budget."""
    done: dict[str, str] = {}
    for i, name in enumerate(names):
        share = (clock.left_s() - RESERVE_S) / (len(names) - i)
        if share < 5:
            done[name] = "skipped: no time left"
            continue
        argv = [sys.executable, "-m", "benchmark", "sweep", "--model", name, "--batch-sizes",
                ",".join(map(str, BATCH_SIZES)), "--backends", args.backend, "--data",
                "synthetic", "--limit", str(args.limit), "--weights", "random",
                "--min-duration", str(args.pass_seconds), "--store", args.store,
                "--no-progress", "--json"]  # fmt: skip
        try:
            run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=share)
            last = (run.stderr.strip().splitlines() or [""])[-1]
            done[name] = "passed" if run.returncode == 0 else f"failed: {last}"
        except subprocess.TimeoutExpired:
            done[name] = f"timed out after {share:.0f} s"
        print(f"  {name}: {done[name]}", file=sys.stderr)
    step.detail = {"models": done}
    step.status = "passed" if done and all(s == "passed" for s in done.values()) else "failed"


TABLE_COLUMNS = (  # (header, RunScore figure, format): Table I's figures, per run
    ("model", "model", "22"), ("batch", "batch_size", ">5"), ("img/s", "images_per_s", ">8.1f"),
    ("seconds", "duration_s", ">8.2f"), ("GPU W", "gpu_power_w", ">7.1f"),
    ("GPU %", "gpu_util_pct", ">6.1f"), ("GPU mem %", "gpu_mem_util_pct", ">9.1f"),
    ("CPU %", "cpu_util_pct", ">6.1f"), ("uWh/inf", "uwh_per_inference", ">9.3f"),
    ("Wh/50k", "wh_per_50k", ">7.3f"), ("top-1", "top1", ">6.3f"),
    ("composite", "composite", ">9.2f"),
)  # fmt: skip


def table_rows(store_url: str, since_ns: int) -> list[dict]:
    """Every finished run since ``since_ns``, Table I's figures (Wh for 50,000 images: the
    paper's pass over the ILSVRC2012 validation set)."""
    from exporters.stores import open_store
    from scoring.runs import load_runs

    with open_store(store_url) as store:
        runs = [r for r in load_runs(store, since_ns) if r.status == "finished"]
    rows = []
    for r in runs:
        row = {fig: getattr(r, fig, None) for _, fig, _ in TABLE_COLUMNS if fig != "wh_per_50k"}
        uwh = r.uwh_per_inference
        row |= {"run_id": r.run_id, "backend": r.backend, "flags": r.flags,
                "wh_per_50k": None if uwh is None else uwh * 50_000 / 1e6}  # fmt: skip
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    head = " ".join(f"{h:{fmt.rstrip('.0123456789f')}}" for h, _, fmt in TABLE_COLUMNS)
    lines = [head]
    for row in rows:
        cells = []
        for _, fig, fmt in TABLE_COLUMNS:
            value, width = row.get(fig), fmt.rstrip(".0123456789f")
            cells.append(f"{'-':{width}}" if value is None else f"{value:{fmt}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="gpu-check", help="directory for the store and the JSON")
    p.add_argument("--backend", default="torch", choices=("torch", "jax", "tensorflow"))
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="the whole check (480)")
    p.add_argument("--models", help="comma-separated (default: the paper's eight)")
    p.add_argument("--limit", type=int, default=320, help="images per pass (320)")
    p.add_argument("--pass-seconds", type=float, default=5.0, help="each pass at least (5)")
    p.add_argument("--nvml-model", default="mobilenetv3_large")
    p.add_argument("--nvml-seconds", type=float, default=30.0, help="the NVML pass (30)")
    p.add_argument("--tests", nargs="*", default=["tests"], help="where the gpu tests are")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.store = f"sqlite:///{(out / 'gpu_check.db').resolve()}"
    nvml_store = f"sqlite:///{(out / 'nvml_check.db').resolve()}"
    os.environ["KERAS_BACKEND"] = args.backend  # before anything imports Keras
    from exporters import clock as wall

    clock, since = Clock(args.budget_s), wall.wall_ns()
    names = args.models.split(",") if args.models else paper_models()
    steps = [
        _timed(Step("gpu tests", min(TESTS_BUDGET_S, clock.left_s())),
               lambda s: gpu_tests(s, args.tests)),
        _timed(Step("nvml check", min(NVML_BUDGET_S, clock.left_s())),
               lambda s: nvml_check(s, nvml_store, args.nvml_model, args.nvml_seconds,
                                    args.limit, args.backend)),
        _timed(Step("models", clock.left_s() - RESERVE_S),
               lambda s: models(s, clock, names, args)),
    ]  # fmt: skip
    rows = table_rows(args.store, since)
    print(format_table(rows))
    for g in steps[1].detail.get("gpus", []):
        diff = "-" if g["difference"] is None else f"{g['difference']:+.2%}"
        flag = "  FLAGGED (over 5%)" if g["flagged"] else ""
        print(f"{g['source']} {g['domain']}: counter {g['counter_joules']:.1f} J, power "
              f"{g['power_joules'] or 0:.1f} J, {diff}{flag}")  # fmt: skip
    total = round(args.budget_s - clock.left_s(), 2)
    doc = {"backend": args.backend, "budget_s": args.budget_s, "seconds": total,
           "steps": [vars(s) for s in steps], "table": rows}  # fmt: skip
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"gpu check: {total:.0f} s of {args.budget_s:.0f}; wrote {out / 'gpu_check.json'}")
    return 0 if all(s.status in ("passed", "skipped") for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
