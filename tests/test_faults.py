"""Faults the measurements must survive: a GPU lost mid-run, the wall clock stepped back.

Every bound here is one the agent guarantees, on a machine as busy as it may be: a sample's
timestamp is the middle of its read and one agent's reads never overlap, so each read happened
between the timestamps of the samples before and after it. The fixtures' counters are exact
where the agent reads them (the fake GPUs') or logged where they are not (RAPL's writer).
"""

from __future__ import annotations

import itertools
import threading
import time
from bisect import bisect_left

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

pytestmark = pytest.mark.timing


@pytest.fixture
def rapl(tmp_path):
    zones = make_tree(tmp_path / "sys", WRAPS)
    writer = ProfileWriter(zones, WRAPS, lambda domain, t: WATTS[domain] * t)
    writer.start()
    yield writer
    writer.stop()


class ClockedGPU(FakeGPU):
    """A fake GPU whose energy counter is its power times the time since it was made: exact at
    the instant NVML is asked, however late the agent asks."""

    def __init__(self, **kwargs) -> None:
        self._since_ns = time.monotonic_ns()
        super().__init__(**kwargs)

    @property
    def energy_mj(self) -> int:
        return self._base_mj + self.power_mw * (time.monotonic_ns() - self._since_ns) // S

    @energy_mj.setter
    def energy_mj(self, value: int) -> None:
        self._base_mj = value


def read_within_ns(stamps: list[int], t: int) -> int:
    """How far from their stamps the reads of the two samples around ``t`` can have been."""
    i = bisect_left(stamps, t)
    return max(max(stamps[j] - stamps[j - 1], stamps[j + 1] - stamps[j]) for j in (i - 1, i))


def sampled_past(agent: Agent, t_ns: int, domains: set[str]) -> None:
    """Wait until the agent has sampled each domain twice after ``t_ns`` (a window's end)."""
    hung = time.monotonic() + 300
    for _ in range(2):
        while not domains <= {
            p.tags.get("domain") for p in list(agent.latest.values()) if p.time_ns > t_ns
        }:
            assert time.monotonic() < hung, f"no samples of {domains} after {t_ns}"
            time.sleep(0.01)
        t_ns = max(p.time_ns for p in list(agent.latest.values()))


def test_a_gpu_lost_mid_run_stops_nothing_else_and_the_run_reports_the_gap(tmp_path, rapl):
    nv = FakeNvml([
        ClockedGPU(name="NVIDIA H200", uuid="GPU-a", power_mw=200_000, energy_mj=0),
        ClockedGPU(name="NVIDIA H200", uuid="GPU-b", power_mw=100_000, energy_mj=0),
    ])  # fmt: skip
    with SQLiteStore(tmp_path / "g.db") as store:
        sources = [RaplSource(tmp_path / "sys"), NvmlSource(nvml=nv)]
        agent = Agent(sources, store, "h", {"power": 0.05})
        sampling = threading.Thread(target=agent.run)
        sampling.start()
        time.sleep(0.5)
        tags = RunTags("gpu-lost", "resnet50", "tensorflow", "synthetic", "h")
        start = write_event(store, tags, "start")
        time.sleep(0.5)
        not_lost = clock.wall_ns()
        nv.gpus[1].fail_with = NVML_ERROR_GPU_IS_LOST
        lost = clock.wall_ns()
        time.sleep(1.5)
        end = write_event(
            store, tags, "end", inferences=1000, top1=0.76, accuracy_source="measured"
        )
        sampled_past(agent, end, {"package-0", "dram-0", "gpu0"})
        agent.stop()
        sampling.join()
        energy = {d.domain: d for d in window_energy(store, start, end).domains}
        (run,) = load_runs(store)
        health = store.read("agent", 0, 2**62, tags={"collector": "nvml"})
        gpu0 = [p.time_ns for p in store.read("energy", 0, 2**62, tags={"domain": "gpu0"})]
        gpu1 = [p.time_ns for p in store.read("energy", 0, 2**62, tags={"domain": "gpu1"})]
    assert energy["package-0"].coverage == 1.0 and energy["gpu0"].coverage == 1.0
    # the energy of the GPU still there, within how far its reads can be from their stamps
    slack_ns = read_within_ns(gpu0, start) + read_within_ns(gpu0, end)
    assert abs(energy["gpu0"].joules - 200.0 * (end - start) / S) <= 200.0 * slack_ns / S
    # The lost GPU is covered up to its last sample, read (fully) before the loss; the read
    # after it (the same stamps as gpu0's: one read of both) failed, so ended after the loss.
    last = gpu0.index(gpu1[-1])
    assert gpu0[last - 1] < lost and not_lost < gpu0[last + 2]
    assert energy["gpu1"].coverage == pytest.approx((gpu1[-1] - start) / (end - start))
    assert energy["gpu1"].coverage < 1
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
    monkeypatch.setenv("TUBAI_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    began = time.monotonic_ns()
    with benchmark.measure("across the step", store=f"sqlite:///{tmp_path}/c.db") as window:
        time.sleep(0.6)
        stepped.update(by=3600 * S)  # while the agent's thread samples
        time.sleep(0.9)
    elapsed_ns = time.monotonic_ns() - began
    result = window.result
    assert 1.5 * S <= result.end_ns - result.start_ns <= elapsed_ns
    assert result.coverage == 1.0
    with SQLiteStore(tmp_path / "c.db") as store:
        samples = {d: store.read("energy", 0, 2**62, tags={"domain": d}) for d in WRAPS}
    for domain, points in samples.items():  # read on time, as the writer's clock (unset) says
        expected = rapl.window_joules(domain, points, result.start_ns, result.end_ns)
        assert result.joules[f"rapl:{domain}"] == pytest.approx(expected, rel=1e-9, abs=1e-6)
    stamps = [p.time_ns for p in samples["dram-0"]]
    assert all(a < b for a, b in itertools.pairwise(stamps))  # no sample went back in time
    assert stamps[-1] - stamps[0] <= elapsed_ns  # nor forward: the hour is in no stamp
