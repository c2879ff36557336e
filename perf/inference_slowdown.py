"""Inference slowdown from the agent: time per batch of a model with and without sampling.

Method. One process holds each model and runs the same synthetic batches, again and again,
through its compiled predict function (``predict_on_batch``, as ``python -m benchmark run``
does), in short blocks: as many batches as take about ``--block-s`` (at least one). Blocks come
in rounds: each round has one block of every arm, ``off`` (nothing but inference) and those
asked for, in an order that turns every round and runs backwards every other turn, so that no
arm keeps a place against drift. An ``agent`` block starts the in-process sampler
(:class:`benchmark.sampling.Sampler`, as ``python -m benchmark run`` starts it: a thread
sampling a fixture RAPL tree of five domains, the system sources and the CPU model at 0.1 s
into SQLite) and stops it after its batches; every block, whatever its arm, waits ``SETTLE_S``
before its batches are timed. The first ``--warm-up`` rounds (tracing, caches, the store's
first writes) are left out.

Each batch is timed back to back, with the CPU time the watched threads (the agent's sampling
and writing threads, a burner) ran during it (``/proc/self/task/TID/schedstat``). Three
estimates of each arm's slowdown (perf/slowdown_stats.py), each with a 95% bootstrap interval
over rounds:

- ``slowdown_pct``, paired blocks: the median over rounds of the arm's time per batch against
  the same round's ``off`` block, less one. It sees every way the agent slows the inference,
  but no finer than the machine's drift between blocks (on the 2-vCPU development VM, 13%
  between two 0.4 s blocks with nothing else running): its interval narrows only with rounds.
- ``per_wake_up``: the slope of each batch's time on the watched threads' CPU during it, both
  as differences from the batch before (the drift cancels between neighbours), times that CPU:
  what lands in the batches the threads ran during. Only for batches under ``SHORT_BATCH_S``
  (against the agent's 0.1 s: where some batches hold a wake-up and their neighbours none);
  there it resolves tenths of a percent in a minute.
- ``dose_response`` (with ``--doses K...``): K of the first arm's agents at once (``agent*K``:
  each its own sampler, host and store, waking at the same cadence) cost K times what one does;
  the seconds a batch loses per second of their CPU, fitted over every dose, times one agent's
  CPU a batch, is one agent's slowdown, resolved as finely as 16 agents' is. Each dose's own
  slowdown is given beside it, so that a cost that does not grow in proportion shows.

Also, per case, ``others_pct_median``: how much of the CPUs other processes used during the
blocks (``/proc/stat`` less this process), and the figures of the rounds where they used under
``QUIET_PCT`` in every block (``quiet``), where there are ``MIN_QUIET`` of those. The arms
(perf/slowdown_arms.py): ``agent`` (``agent:PRIORITY``, ``agent@CPU``, ``agent*K``),
``burn:X``, and the calibration ``load:P`` (``--calibrate P``, in the first case): once every
``SPIN_PERIOD_S`` (0.1 s, at a random phase), after the batch under way, the inference thread
itself spins for P% of that period, counted as watched CPU: a cost known exactly that lands in
batches as the agent's wake-ups do. Its expected slowdown is the time spun over the ``off``
arm's time per batch; the check (``calibration_ok``) is that each estimate's interval holds it.
With ``--calibrate-doses``, larger loads fit the calibration's own dose-response, whose ``k``
must come out 1 (a second spun is a second more: ``k_ok``).

Prints one JSON document, with the load average around it: on a busy machine the intervals
widen, and figures taken there are not the agent's alone.

    python perf/inference_slowdown.py --case mobilenetv3_small:32 --arms agent --doses 4 16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from slowdown_arms import Arms, Probe, others_cpu_s, spin  # perf/, this script's directory
from slowdown_stats import Block, dose_response, paired, per_wake_up

from benchmark.datasets import open_dataset
from benchmark.models import build_model
from benchmark.registry import get_spec

SETTLE_S = 0.2  # before each block's batches: the agent's first reads and writes are done
SHORT_BATCH_S = 0.025  # per wake-up only for batches this short against the agent's 0.1 s
SPIN_PERIOD_S = 0.1  # the calibration spins once a period, as the agent wakes at 0.1 s
QUIET_PCT = 5.0  # a round is quiet where other processes used less of the CPUs in each block
MIN_QUIET = 10  # quiet rounds needed for a figure of their own


@dataclass
class Case:
    """One model at one batch size: its batches, and how many make a block."""

    model: str
    batch_size: int
    predict: object = None
    batches: list = field(default_factory=list)
    s_per_batch: float = 0.0  # median of the warm-up, nothing else running

    def run(self, probe: Probe, spin_s: float = 0.0, phase: float = 0.0) -> Block:
        """Every batch once: each one's wall time (back to back) and the watched threads' CPU
        during it. With ``spin_s``, the first batch to end after each ``SPIN_PERIOD_S`` tick
        (the first ``phase`` of one in) is followed by ``spin_s`` of spinning, counted as the
        watched CPU."""
        n = len(self.batches)
        ends, cpu, spun = np.empty(n + 1), np.empty(n + 1), np.zeros(n)
        threads_s = probe.all_s()
        cpu[0], ends[0] = probe.read(), time.perf_counter()
        due = ends[0] + phase * SPIN_PERIOD_S
        for i, x in enumerate(self.batches):
            self.predict(x)
            while spin_s and time.perf_counter() >= due:
                spun[i] += spin(spin_s)
                due += SPIN_PERIOD_S
            cpu[i + 1], ends[i + 1] = probe.read(), time.perf_counter()
        threads_s = probe.all_s() - threads_s + float(spun.sum())
        return Block(np.diff(ends), np.diff(cpu) + spun, threads_s)


def prepare(model: str, batch_size: int, block_s: float) -> Case:
    """Build ``model`` (random weights), trace it, time a batch, size its block."""
    spec = get_spec(model)
    keras_model, _ = build_model(spec, "random")
    x = next(iter(open_dataset("synthetic", spec, batch_size).batches(batch_size)))[0]
    case = Case(model, batch_size, keras_model.predict_on_batch, [x] * 4)
    probe = Probe()
    case.s_per_batch = float(np.median(case.run(probe).durations[1:]))  # the first traces
    probe.close()
    case.batches = [x] * max(1, round(block_s / case.s_per_batch))
    return case


def order(arms: list[str], r: int) -> list[str]:
    """Round ``r``'s order: turned by one each round, backwards every other turn."""
    n = len(arms)
    turned = arms[r % n :] + arms[: r % n]
    return turned[::-1] if (r // n) % 2 else turned


@dataclass
class Blocks:
    """What the timed blocks of one case gave, by arm, warm-up left out."""

    blocks: dict[str, list[Block]]  # one a round
    others_pct: list[float]  # other processes' share of the CPUs, the round's busiest block


def run_rounds(case: Case, arms: Arms, names: list[str], rounds: int, warm_up: int) -> Blocks:
    """``warm_up`` rounds left out, then ``rounds`` rounds of one block of each arm."""
    spins = {a: float(a.split(":")[1]) / 100 * SPIN_PERIOD_S for a in names if "load:" in a}
    out, rng = Blocks({a: [] for a in names}, []), random.Random(0)
    for r in range(warm_up + rounds):
        others = 0.0
        for arm in order(names, r):
            with arms.running(arm):
                time.sleep(SETTLE_S)
                probe, others_s = Probe(), others_cpu_s()
                block = case.run(probe, spins.get(arm, 0.0), rng.random())
                others_s = others_cpu_s() - others_s
                probe.close()
            wall = float(block.durations.sum())
            others = max(others, 100 * others_s / (wall * (os.cpu_count() or 1)))
            if r >= warm_up:
                out.blocks[arm].append(block)
        if r >= warm_up:
            out.others_pct.append(others)
    return out


def figures(case: Case, data: Blocks) -> dict:
    """Each arm's slowdown against ``off`` (:func:`~slowdown_stats.paired`), that of its quiet
    rounds where there are enough, and for a thread's arm the slowdown per wake-up
    (:func:`~slowdown_stats.per_wake_up`); for the calibration, the slowdown its spinning
    should show and whether the interval holds it."""
    off = data.blocks["off"]
    quiet = [i for i, pct in enumerate(data.others_pct) if pct < QUIET_PCT]
    median_off = float(np.median([b.per_batch for b in off]))
    out = {
        "model": case.model, "batch_size": case.batch_size, "rounds": len(off),
        "batches_per_block": len(case.batches), "ms_per_batch_off": 1e3 * median_off,
        "others_pct_median": float(np.median(data.others_pct)), "quiet_rounds": len(quiet),
        "arms": {},
    }  # fmt: skip
    for arm, blocks in data.blocks.items():
        if arm == "off":
            continue
        result = paired(blocks, off)
        if len(quiet) >= MIN_QUIET:  # the rounds no other process disturbed, on their own
            result["quiet"] = paired([blocks[i] for i in quiet], [off[i] for i in quiet])
        wake = per_wake_up(blocks) if median_off < SHORT_BATCH_S else None
        if wake:
            result["per_wake_up"] = wake
        if arm.startswith("load:"):  # the calibration: both estimates must find what was spun
            spun = sum(float(b.cpu.sum()) for b in blocks) / sum(len(b.cpu) for b in blocks)
            result["expected_pct"] = expected = 100 * spun / median_off
            for found in (result, wake) if wake else (result,):
                lo, hi = found["ci95_pct"]
                found["calibration_ok"] = bool(lo <= expected <= hi)
        out["arms"][arm] = result
    for at, doses in families(list(data.blocks)).items():
        for arm in doses[1:]:
            out["arms"][arm]["dose_of"] = at
        fitted = out["arms"][at]["dose_response"] = dose_response(
            {a: data.blocks[a] for a in doses}, off, at
        )
        if at.startswith("load:"):  # each second spun is a second more: k is 1
            lo, hi = fitted["ci95_pct"]
            fitted["calibration_ok"] = bool(lo <= out["arms"][at]["expected_pct"] <= hi)
            fitted["k_ok"] = bool(fitted["k_ci95"][0] <= 1 <= fitted["k_ci95"][1])
    return out


def families(names: list[str]) -> dict[str, list[str]]:
    """Arms that are larger doses of another (``agent*4`` of ``agent``, every ``load:P`` of the
    smallest), by the arm they are doses of, itself first: those with a dose besides."""
    out: dict[str, list[str]] = {}
    loads = sorted((a for a in names if a.startswith("load:")), key=lambda a: float(a[5:]))
    if len(loads) > 1:
        out[loads[0]] = loads
    for arm in names:
        base, _, copies = arm.partition("*")
        if copies and base in names:
            out.setdefault(base, [base]).append(arm)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", default=["mobilenetv3_small:32"],
                        help="MODEL:BATCH_SIZE, each measured in turn")  # fmt: skip
    parser.add_argument("--arms", nargs="+", default=["agent"], help="besides off (see above)")
    parser.add_argument("--calibrate", type=float, default=0.5, metavar="P",
                        help="a load:P arm in the first case (0: none)")  # fmt: skip
    parser.add_argument(
        "--doses",
        nargs="*",
        type=int,
        default=[],
        metavar="K",
        help="also K agents at once for each agent arm (dose_response)",
    )
    parser.add_argument(
        "--calibrate-doses",
        nargs="*",
        type=float,
        default=[],
        metavar="P",
        help="also load:P arms, to check dose_response on a known cost",
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warm-up", type=int, default=2)
    parser.add_argument("--block-s", type=float, default=0.4)
    args = parser.parse_args()

    started, load_before = time.monotonic(), os.getloadavg()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        arms = Arms(Path(tmp))
        for i, text in enumerate(args.case):
            model, _, batch = text.partition(":")
            case = prepare(model, int(batch or 32), args.block_s)
            names = ["off", *args.arms]
            names += [f"{args.arms[0]}*{k}" for k in args.doses]
            if i == 0 and args.calibrate:
                names += [f"load:{p:g}" for p in (args.calibrate, *args.calibrate_doses)]
            blocks = run_rounds(case, arms, names, args.rounds, args.warm_up)
            cases.append(figures(case, blocks))
        arms.close()
    json.dump(
        {"inference_slowdown": {
            "cases": cases, "interval_s": arms.config["interval_s"]["power"],
            "sampler_priority": arms.config["sampler_priority"], "block_s": args.block_s,
            "settle_s": SETTLE_S, "cpus": os.cpu_count(), "seconds": time.monotonic() - started,
            "load_average": {"before": load_before, "after": os.getloadavg()},
        }},
        sys.stdout, indent=2,
    )  # fmt: skip
    print()


if __name__ == "__main__":
    main()
