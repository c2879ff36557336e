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
and writing threads, a burner) ran during it (``/proc/self/task/TID/schedstat``). Two estimates
of each arm's slowdown (perf/slowdown_stats.py), each with a 95% bootstrap interval over
rounds:

- ``slowdown_pct``, paired blocks: the median over rounds of the arm's time per batch against
  the same round's ``off`` block, less one. It sees every way the agent slows the inference,
  but no finer than the machine's drift between blocks (on the 2-vCPU development VM, 11%
  between two 0.4 s blocks with nothing else running): its interval narrows only with rounds.
- ``per_wake_up``: the slope of each batch's time on the watched threads' CPU during it, both
  as differences from the batch before (the drift cancels between neighbours), times that CPU:
  what lands in the batches the threads ran during. Only for batches under ``SHORT_BATCH_S``
  (against the agent's 0.1 s: where some batches hold a wake-up and their neighbours none);
  there it resolves tenths of a percent in a minute.

Also, per case, ``others_pct_median``: how much of the CPUs other processes used during the
blocks (``/proc/stat`` less this process), and the figures of the rounds where they used under
``QUIET_PCT`` in every block (``quiet``), where there are ``MIN_QUIET`` of those. Arms, by name:

- ``agent``: the sampler with the configuration's ``sampler_priority``; ``agent:idle``,
  ``agent:low``, ``agent:normal`` with that one; ``agent@N`` (or ``agent:idle@N``) with the
  agent's thread kept on CPU N (``--agent-cpu``).
- ``load:P``, the calibration (``--calibrate P``, in the first case): once every
  ``SPIN_PERIOD_S`` (0.1 s, at a random phase), after the batch under way, the inference thread
  itself spins for P% of that period, counted as watched CPU: a cost known exactly that lands
  in batches as the agent's wake-ups do. Its expected slowdown is the time spun over the
  ``off`` arm's time per batch; the check (``calibration_ok``) is that each estimate's
  interval holds it.
- ``burn:X``: a thread that burns X ms of CPU time in every 100 ms (in Python, as the agent
  runs), at the configuration's ``sampler_priority`` (``burn:X:idle`` and so on): how CPU
  taken by another thread of the process shows up in the time per batch.

Prints one JSON document, with the load average around it: on a busy machine the intervals
widen, and figures taken there are not the agent's alone.

    python perf/inference_slowdown.py --case mobilenetv3_small:32 --arms agent agent:idle
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from slowdown_stats import Block, paired, per_wake_up  # perf/, this script's directory

from benchmark.datasets import open_dataset
from benchmark.models import build_model
from benchmark.registry import get_spec
from benchmark.sampling import Sampler
from exporters.config import load_config
from exporters.priority import lower_this_thread
from exporters.stores.sqlite import SQLiteStore

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/rapl/intel_desktop"
WATCHED = ("tubai-agent", "tubai-store-writer", "perf-burn")  # the agent's threads, a burner
SETTLE_S = 0.2  # before each block's batches: the agent's first reads and writes are done
BURN_PERIOD_S = 0.1
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
        cpu[0], ends[0] = probe.read(), time.perf_counter()
        due = ends[0] + phase * SPIN_PERIOD_S
        for i, x in enumerate(self.batches):
            self.predict(x)
            while spin_s and time.perf_counter() >= due:
                spun[i] += spin(spin_s)
                due += SPIN_PERIOD_S
            cpu[i + 1], ends[i + 1] = probe.read(), time.perf_counter()
        return Block(np.diff(ends), np.diff(cpu) + spun)


def spin(seconds: float) -> float:
    """Busy-wait ``seconds`` of wall time in this thread; the time actually spun."""
    start = time.perf_counter()
    end = start + seconds
    while (now := time.perf_counter()) < end:
        pass
    return now - start


class Probe:
    """The CPU seconds the :data:`WATCHED` threads of this process have run so far, from their
    ``/proc/self/task/TID/schedstat`` (nanoseconds on a CPU). It reads ``FILES`` files whatever
    it watches (this thread's stand in for missing ones), so that every arm pays the same."""

    FILES = 2

    def __init__(self) -> None:
        ids = [t.native_id for t in threading.enumerate() if t.name in WATCHED][: self.FILES]
        self.watched = len(ids)
        ids += [threading.get_native_id()] * (self.FILES - len(ids))
        self.files = [open(f"/proc/self/task/{i}/schedstat", "rb", buffering=0) for i in ids]

    def read(self) -> float:
        total = 0
        for i, f in enumerate(self.files):
            f.seek(0)
            ns = int(f.read().split(b" ", 1)[0])
            total += ns if i < self.watched else 0
        return total / 1e9

    def close(self) -> None:
        for f in self.files:
            f.close()


def others_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``) less this process's own:
    what other processes (and the kernel) ran so far, to within a clock tick."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(values) - values[3] - values[4]  # less idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK") - (own.user + own.system)


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


class Arms:
    """What runs beside the inference in a block of each arm (see the module docstring)."""

    def __init__(self, tmp: Path) -> None:
        shutil.copytree(FIXTURE, tmp / "sys")
        self.config = load_config(overrides={"sysfs_root": str(tmp / "sys")})
        self.config["sources"]["nvml"]["enabled"] = False
        self.config["sources"]["cpu_model"]["enabled"] = True
        self.store = SQLiteStore(tmp / "ab.db")
        self.blocks = 0

    @contextlib.contextmanager
    def running(self, arm: str) -> Iterator[None]:
        self.blocks += 1
        kind, _, rest = arm.partition(":")
        rest, _, cpu = rest.partition("@")
        if arm == "off" or kind == "load":
            yield
        elif kind.startswith("agent"):
            priority = rest or self.config["sampler_priority"]
            config = {**self.config, "sampler_priority": priority}
            agent_cpu = int(cpu) if cpu else None
            host = f"perf-{self.blocks}"  # a host of its own: no running agent is found
            with Sampler(self.store, host=host, config=config, agent_cpu=agent_cpu):
                yield
        elif kind == "burn":
            ms, _, priority = rest.partition(":")
            with burning(float(ms) / 1e3, priority or self.config["sampler_priority"]):
                yield
        else:
            raise SystemExit(f"unknown arm {arm!r}")

    def close(self) -> None:
        self.store.close()


@contextlib.contextmanager
def burning(cpu_s: float, priority: str) -> Iterator[None]:
    """A thread burning ``cpu_s`` of CPU time in every ``BURN_PERIOD_S``, at ``priority``."""
    stop = threading.Event()

    def burn() -> None:
        lower_this_thread(priority)
        due = time.monotonic()
        while not stop.wait(max(0.0, due - time.monotonic())):
            end = time.thread_time() + cpu_s
            while time.thread_time() < end:
                pass
            due += BURN_PERIOD_S

    thread = threading.Thread(target=burn, name="perf-burn", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", default=["mobilenetv3_small:32"],
                        help="MODEL:BATCH_SIZE, each measured in turn")  # fmt: skip
    parser.add_argument("--arms", nargs="+", default=["agent"], help="besides off (see above)")
    parser.add_argument("--calibrate", type=float, default=0.5, metavar="P",
                        help="a load:P arm in the first case (0: none)")  # fmt: skip
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
            if i == 0 and args.calibrate:
                names.append(f"load:{args.calibrate:g}")
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
