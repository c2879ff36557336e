"""Faults the measurements must survive: a GPU lost mid-run, the wall clock stepped back."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from fakes.fake_pynvml import NVML_ERROR_GPU_IS_LOST, FakeGPU, FakeNvml
from rapl_writer import ProfileWriter, make_tree

import benchmark
from benchmark.records import RunTags, write_event
from exporters import clock
from exporters.agent import Agent
from exporters.clock import SteadyWallClock
from exporters.sources.nvml import NvmlSource
from exporters.sources.rapl import RaplSource
from exporters.stores.sqlite import SQLiteStore
from exporters.window import window_energy
from scoring.runs import load_runs

S = 1_000_000_000
WRAPS = {"package-0": 262_143.0, "dram-0": 65_712.0}
WATTS = {"package-0": 20.0, "dram-0": 2.5}


@pytest.fixture
def rapl(tmp_path):
    zones = make_tree(tmp_path / "sys", WRAPS)
    writer = ProfileWriter(zones, WRAPS, lambda domain, t: WATTS[domain] * t)
    writer.start()
    yield tmp_path / "sys"
    writer.stop()


def test_a_gpu_lost_mid_run_stops_nothing_else_and_the_run_reports_the_gap(tmp_path, rapl):
    nv = FakeNvml([
        FakeGPU(name="NVIDIA H200", uuid="GPU-a", power_mw=200_000, energy_mj=0),
        FakeGPU(name="NVIDIA H200", uuid="GPU-b", power_mw=100_000, energy_mj=0),
    ])  # fmt: skip
    running = threading.Event()

    def gpus_draw_power() -> None:  # the fake GPUs' counters advance with real time
        while not running.wait(0.01):
            for gpu in nv.gpus:
                if gpu.fail_with is None:
                    gpu.advance(0.01)

    threading.Thread(target=gpus_draw_power, daemon=True).start()
    with SQLiteStore(tmp_path / "g.db") as store:
        agent = Agent([RaplSource(rapl), NvmlSource(nvml=nv)], store, "h", {"power": 0.05})
        sampling = threading.Thread(target=agent.run, kwargs={"duration_s": 3.0})
        sampling.start()
        time.sleep(0.5)
        tags = RunTags("gpu-lost", "resnet50", "tensorflow", "synthetic", "h")
        start = write_event(store, tags, "start")
        time.sleep(0.5)
        lost_at = clock.wall_ns()
        nv.gpus[1].fail_with = NVML_ERROR_GPU_IS_LOST
        time.sleep(1.5)
        end = write_event(
            store, tags, "end", inferences=1000, top1=0.76, accuracy_source="measured"
        )
        sampling.join()
        running.set()
        energy = {d.domain: d for d in window_energy(store, start, end).domains}
        (run,) = load_runs(store)
        health = store.read("agent", 0, 2**62, tags={"collector": "nvml"})
    assert energy["package-0"].coverage == 1.0 and energy["gpu0"].coverage == 1.0
    assert energy["gpu0"].joules == pytest.approx(200.0 * (end - start) / S, rel=0.05)
    assert energy["gpu1"].coverage == pytest.approx((lost_at - start) / (end - start), abs=0.1)
    assert all(p.fields["ok"] for p in health)  # the NVML source kept reading the other GPU
    assert run.coverage == pytest.approx(energy["gpu1"].coverage)
    assert any("samples cover" in flag for flag in run.flags)


def test_the_wall_clock_stepped_back_moves_neither_cadence_nor_windows(
    tmp_path, rapl, monkeypatch
) -> None:
    stepped = {"by": 0}

    def wall() -> int:  # the system clock, which someone sets back an hour mid-window
        return time.time_ns() - stepped["by"]

    monkeypatch.setattr(clock, "CLOCK", SteadyWallClock(wall=wall))
    monkeypatch.setenv("TUBAI_SYSFS_ROOT", str(rapl))
    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    threading.Timer(0.6, lambda: stepped.update(by=3600 * S)).start()
    with benchmark.measure("across the step", store=f"sqlite:///{tmp_path}/c.db") as window:
        time.sleep(1.5)
    assert stepped["by"] == 3600 * S
    result = window.result
    assert result.duration_s == pytest.approx(1.5, abs=0.1)
    assert result.joules["rapl:package-0"] == pytest.approx(20.0 * result.duration_s, rel=0.01)
    assert result.coverage == 1.0
    with SQLiteStore(tmp_path / "c.db") as store:
        stamps = [p.time_ns for p in store.read("energy", 0, 2**62, tags={"domain": "dram-0"})]
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(steps) > 0  # no sample went back in time
    assert max(steps) < 0.3 * S  # and the cadence (0.1 s) held across the step
