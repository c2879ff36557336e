"""What runs beside the inference in perf/inference_slowdown.py's blocks, and how the CPU of
what runs there is read.

Arms, by name (``off`` runs nothing):

- ``agent``: the in-process sampler (:class:`benchmark.sampling.Sampler`, as ``python -m
  benchmark run`` starts it) with the configuration's ``sampler_priority``; ``agent:idle``,
  ``agent:low``, ``agent:normal`` with that one; ``agent@N`` with its thread kept on CPU N
  (``--agent-cpu``); ``agent*K`` (``agent:normal*K`` ...) K samplers at once, each with its own
  host and store, the dose that ``dose_response`` scales down from.
- ``load:P``, the calibration: once every ``SPIN_PERIOD_S`` the inference thread spins for P% of
  it (see ``Case.run``); nothing runs beside it.
- ``burn:X`` (``burn:X:idle`` ...): a thread burning X ms of CPU in every 100 ms, in Python.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchmark.sampling import Sampler
from exporters.config import load_config
from exporters.priority import lower_this_thread
from exporters.stores.sqlite import SQLiteStore

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/rapl/intel_desktop"
WATCHED = ("tubai-agent", "tubai-store-writer", "perf-burn")  # the agents' threads, a burner
BURN_PERIOD_S = 0.1


def watched_ids() -> list[int]:
    return [t.native_id for t in threading.enumerate() if t.name in WATCHED]


def schedstat_s(tid: int) -> float:
    """CPU seconds thread ``tid`` of this process has run (its ``schedstat``); 0 once gone."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
            return int(f.read().split(b" ", 1)[0]) / 1e9
    except FileNotFoundError:
        return 0.0


class Probe:
    """The CPU seconds the first :data:`WATCHED` threads of this process have run so far, read
    between batches. It reads ``FILES`` files whatever it watches (this thread's stand in for
    missing ones), so that every arm pays the same; :meth:`all_s` reads every watched thread
    (at a block's ends, outside its timed batches)."""

    FILES = 2

    def __init__(self) -> None:
        self.ids = watched_ids()
        ids = self.ids[: self.FILES]
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

    def all_s(self) -> float:
        return sum(schedstat_s(i) for i in self.ids)

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


def spin(seconds: float) -> float:
    """Busy-wait ``seconds`` of wall time in this thread; the time actually spun."""
    start = time.perf_counter()
    end = start + seconds
    while (now := time.perf_counter()) < end:
        pass
    return now - start


class Arms:
    """Starts and stops what runs beside the inference for each arm's block."""

    def __init__(self, tmp: Path) -> None:
        shutil.copytree(FIXTURE, tmp / "sys")
        self.tmp = tmp
        self.config = load_config(overrides={"sysfs_root": str(tmp / "sys")})
        self.config["sources"]["nvml"]["enabled"] = False  # cpu_model: auto, off beside RAPL
        self.stores: list[SQLiteStore] = []
        self.blocks = 0

    def store(self, i: int) -> SQLiteStore:
        while len(self.stores) <= i:
            self.stores.append(SQLiteStore(self.tmp / f"ab{len(self.stores)}.db"))
        return self.stores[i]

    @contextlib.contextmanager
    def running(self, arm: str) -> Iterator[None]:
        self.blocks += 1
        arm, _, copies = arm.partition("*")
        kind, _, rest = arm.partition(":")
        rest, _, cpu = rest.partition("@")
        if arm == "off" or kind == "load":
            yield
        elif kind == "agent":
            config = {**self.config, "sampler_priority": rest or self.config["sampler_priority"]}
            with contextlib.ExitStack() as stack:
                for i in range(int(copies or 1)):  # hosts of their own: no running agent found
                    host = f"perf-{self.blocks}-{i}"
                    agent_cpu = int(cpu) if cpu else None
                    stack.enter_context(Sampler(self.store(i), host, config, agent_cpu=agent_cpu))
                yield
        elif kind == "burn":
            ms, _, priority = rest.partition(":")
            with burning(float(ms) / 1e3, priority or self.config["sampler_priority"]):
                yield
        else:
            raise SystemExit(f"unknown arm {arm!r}")

    def close(self) -> None:
        for store in self.stores:
            store.close()


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
