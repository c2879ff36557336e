"""Runs made unsteady, drifting, disturbed or cooled down on purpose, through the real runner on
a RAPL fixture tree: each steadiness flag is raised by what it is about (scoring/steadiness.py).

The model is wrapped so that a test can act at a given batch (sleep, start busy processes,
heat the fixture's power); the fixture's power is a profile its writer process follows."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest
from rapl_writer import ProfileWriter, host_machine

from benchmark.runner import RunOptions, prepare, run_benchmark
from benchmark.sampling import Sampler
from benchmark.steadiness import COOLDOWN_PROBE_S
from exporters.config import load_config
from exporters.stores.sqlite import SQLiteStore
from scoring import steadiness
from scoring.runs import load_runs

pytest.importorskip("tensorflow")

# The drift is judged from the samples inside the window (3 a part at least): the sampler at
# normal priority gets a CPU beside busy loops, where at idle priority it may take none
PRIORITY = "normal"
BUSY = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


class Hooked:
    """What predicts (the engine, else the model), with ``hooks[call]()`` run before its
    ``call``-th batch (warm-up included, from 1)."""

    def __init__(self, inner, hooks: dict[int, Callable[[], None]]) -> None:
        self.inner, self.hooks, self.calls = inner, hooks, 0

    def _hook(self) -> None:
        self.calls += 1
        if self.calls in self.hooks:
            self.hooks[self.calls]()

    def predict(self, x):
        self._hook()
        return self.inner.predict(x)

    def predict_on_batch(self, x):
        self._hook()
        return self.inner.predict_on_batch(x)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class Heatable:
    """Power of ``low`` watts, or ``high`` until the writer's clock passes ``hot_until`` (set
    by :meth:`heat` from the test; shared with the writer's forked process)."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.hot_until = multiprocessing.get_context("fork").Value("d", -1.0, lock=False)
        self._last: dict[str, tuple[float, float]] = {}  # the writer's own, after the fork

    def __call__(self, domain: str, t: float) -> float:
        t0, joules = self._last.get(domain, (0.0, 0.0))
        joules += (self.high if t < self.hot_until.value else self.low) * (t - t0)
        self._last[domain] = (t, joules)
        return joules

    def heat(self, writer: ProfileWriter, seconds: float) -> None:
        self.hot_until.value = (writer.now_ns() - writer.start_ns) / 1e9 + seconds


def run(store, hooks: dict[int, Callable[[], None]] | None = None, **options):
    opts = RunOptions(model="digits_cnn", progress=False, **options)
    prepared = prepare(opts)
    if getattr(prepared, "engine", None) is not None:
        prepared = dataclasses.replace(prepared, engine=Hooked(prepared.engine, hooks or {}))
    else:
        prepared = dataclasses.replace(prepared, model=Hooked(prepared.model, hooks or {}))
    with Sampler(store, host="h", config=load_config()) as sampler:
        run_benchmark(opts, store, sampler, prepared)
    return load_runs(store)


@pytest.mark.timing
def test_a_pass_that_stalls_is_unsteady(tmp_path, monkeypatch) -> None:
    machine = host_machine(tmp_path, monkeypatch, sampler_priority=PRIORITY)
    with machine, SQLiteStore(tmp_path / "b.db") as store:
        (r,) = run(store, {6: lambda: time.sleep(1.5)}, limit=640, batch_size=64)
    assert r.stall_s >= 1.5 and r.latency_p50_s <= r.latency_p90_s <= r.latency_p99_s
    assert r.stall_s / r.latency_p50_s >= steadiness.STALL_FACTOR
    assert any(f.startswith("unsteady: no batch finished for") for f in r.flags), r.flags
    bin_s = r.duration_s / len(r.throughput_series)
    assert sum(r.throughput_series) * bin_s == pytest.approx(r.inferences, rel=0.01)


@pytest.mark.timing
def test_other_processes_busy_during_the_pass_are_flagged(tmp_path, monkeypatch) -> None:
    busy: list[subprocess.Popen] = []

    def disturb() -> None:
        busy.extend(subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2))

    machine = host_machine(tmp_path, monkeypatch, sampler_priority=PRIORITY)
    try:
        with machine, SQLiteStore(tmp_path / "b.db") as store:
            (r,) = run(store, {3: disturb}, batch_size=150, min_duration_s=1.5)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert r.other_cpu_cores > steadiness.BUSY_LIMIT_CORES
    assert any(f.startswith("busy machine: other processes used") for f in r.flags), r.flags


class Ramp:
    """``low`` watts, then from :meth:`begin` on growing ``e``-fold every ``tau_s``."""

    def __init__(self, low: float, tau_s: float) -> None:
        self.low, self.tau_s = low, tau_s
        self.from_s = multiprocessing.get_context("fork").Value("d", math.inf, lock=False)
        self._last: dict[str, tuple[float, float]] = {}

    def __call__(self, domain: str, t: float) -> float:
        t0, joules = self._last.get(domain, (0.0, 0.0))
        grown = max(0.0, t - self.from_s.value) / self.tau_s
        joules += self.low * math.exp(grown) * (t - t0)
        self._last[domain] = (t, joules)
        return joules

    def begin(self, writer: ProfileWriter) -> None:
        self.from_s.value = (writer.now_ns() - writer.start_ns) / 1e9


@pytest.mark.timing
def test_power_rising_over_the_window_is_drift(tmp_path, monkeypatch) -> None:
    """Power growing 10% a second from the warm-up on: the trend the run reports is the one
    through the energy of each part of its window as its samples read it (the writer's log),
    and it is flagged."""
    power = Ramp(10.0, 10.0)
    machine = host_machine(tmp_path, monkeypatch, power, sampler_priority=PRIORITY)
    with machine as writer, SQLiteStore(tmp_path / "b.db") as store:
        (r,) = run(store, {1: lambda: power.begin(writer)}, batch_size=150, min_duration_s=3.0)
        samples = store.read("energy", 0, 2**62, tags={"domain": "package-0"})
    edges = np.linspace(r.start_ns, r.end_ns, steadiness.DRIFT_PARTS + 1).round().astype(int)
    watts = [writer.window_joules("package-0", samples, a, b) / ((b - a) / 1e9)
             for a, b in zip(edges[:-1].tolist(), edges[1:].tolist())]  # fmt: skip
    middles_s = (edges[:-1] + edges[1:] - 2 * r.start_ns) / 2e9
    expected = 100 * np.polyfit(middles_s, watts, 1)[0] * r.duration_s / np.mean(watts)
    assert r.power_drift_pct == pytest.approx(expected, rel=1e-6)
    assert r.power_drift_pct > steadiness.DRIFT_LIMIT_PCT  # about 30% over 3 s
    assert any(f.startswith("power drift: +") for f in r.flags), r.flags


@pytest.mark.timing
def test_cooldown_waits_for_idle_power_before_each_pass(tmp_path, monkeypatch) -> None:
    power = Heatable(10.0, 40.0)
    machine = host_machine(tmp_path, monkeypatch, power, sampler_priority=PRIORITY)
    with machine as writer, SQLiteStore(tmp_path / "b.db") as store:
        # 3 batches a pass after 2 of warm-up: the last batch of pass 1 heats it for 2 s
        hooks = {5: lambda: power.heat(writer, 2.0)}
        first, second = run(store, hooks, limit=450, batch_size=150, repeats=2, idle_s=1.0,
                            cooldown_s=8.0)  # fmt: skip
    assert first.idle_w == pytest.approx(10.0, rel=0.1)
    assert (first.cooldown_reached, second.cooldown_reached) == (True, True)
    assert COOLDOWN_PROBE_S <= first.cooldown_s < second.cooldown_s < 8.0 + 2 * COOLDOWN_PROBE_S
    assert second.cooldown_s >= 2 * COOLDOWN_PROBE_S  # the first probe found it hot
    assert second.idle_w_after == pytest.approx(10.0, rel=0.1)
    assert not [f for f in first.flags + second.flags if f.startswith(("cool", "idle"))]


@pytest.mark.timing
def test_a_cooldown_that_times_out_and_an_idle_that_moved_are_flagged(
    tmp_path, monkeypatch
) -> None:
    power = Heatable(10.0, 40.0)
    machine = host_machine(tmp_path, monkeypatch, power, sampler_priority=PRIORITY)
    with machine as writer, SQLiteStore(tmp_path / "b.db") as store:
        hooks = {1: lambda: power.heat(writer, 3600.0)}  # hot from the warm-up on
        (r,) = run(store, hooks, limit=300, batch_size=150, idle_s=1.0, cooldown_s=1.0)
        (end,) = [p for p in store.read("run", 0, 2**62) if p.fields["event"] == "end"]
    assert r.cooldown_reached is False and r.cooldown_s >= 1.0
    assert r.idle_w == pytest.approx(10.0, rel=0.1)
    assert r.idle_w_after == pytest.approx(40.0, rel=0.1)
    assert r.idle_moved_pct > 200  # 10 W before, 40 W after
    kinds = [f.split(":")[0] for f in r.flags]
    assert "cool-down timed out" in kinds and "idle moved" in kinds, r.flags
    assert json.loads(end.fields["throughput_series"]) == r.throughput_series
