"""The window API for users' own code: joules per domain, duplicate and unknown windows."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from rapl_writer import ProfileWriter, make_tree

import benchmark
from exporters.stores.sqlite import SQLiteStore

WRAPS = {"package-0": 262_143.0, "dram-0": 65_712.0}
WATTS = {"package-0": 20.0, "dram-0": 2.5}


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """This host, as far as tubai sees it: a RAPL tree drawing constant power."""
    zones = make_tree(tmp_path / "sys", WRAPS)
    monkeypatch.setenv("TUBAI_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    monkeypatch.setenv("TUBAI_HOST", "bench-host")
    writer = ProfileWriter(zones, WRAPS, lambda domain, t: WATTS[domain] * t)
    writer.start()
    yield writer
    writer.stop()


def test_measure_returns_joules_per_domain(tmp_path, machine) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    with benchmark.measure("sleep", store=url) as window:
        time.sleep(0.8)
    result = window.result
    assert result is not None and result.name == "sleep"
    assert set(result.joules) == {"rapl:package-0", "rapl:dram-0"}
    assert result.joules["rapl:package-0"] == pytest.approx(20.0 * result.duration_s, rel=0.01)
    assert result.total_joules == pytest.approx(22.5 * result.duration_s, rel=0.01)
    assert result.watts == pytest.approx(22.5, rel=0.01)
    assert result.coverage == 1.0 and not result.estimated


def test_overlapping_windows_and_misuse(tmp_path, machine) -> None:
    with benchmark.Monitor(f"sqlite:///{tmp_path}/m.db") as monitor:
        monitor.begin_window("outer")
        time.sleep(0.3)
        monitor.begin_window("inner")
        with pytest.raises(ValueError, match="already open"):
            monitor.begin_window("inner")
        time.sleep(0.3)
        inner = monitor.end_window("inner")
        outer = monitor.end_window("outer")
        with pytest.raises(ValueError, match="never begun"):
            monitor.end_window("outer")
        assert monitor.sampler.agent is not None  # nobody else sampled: it ran its own agent
    assert outer.start_ns < inner.start_ns and inner.end_ns < outer.end_ns
    assert outer.total_joules > inner.total_joules
    assert inner.total_joules == pytest.approx(22.5 * inner.duration_s, rel=0.01)


def test_with_an_exporter_running_it_only_marks_windows(tmp_path, machine) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    exporter = subprocess.Popen(
        [sys.executable, "-m", "exporters", "run", "--store", url, "--duration", "20"],
        env=os.environ.copy(), stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.2)
            with SQLiteStore(tmp_path / "shared.db") as store:
                if store.read("energy", time.time_ns() - 2 * 10**9, time.time_ns()):
                    break
        with benchmark.Monitor(url) as monitor:
            assert monitor.sampler.agent is None
            monitor.begin_window("w")
            time.sleep(0.6)
            result = monitor.end_window("w")
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    assert result.joules["rapl:package-0"] == pytest.approx(20.0 * result.duration_s, rel=0.01)


def test_samples_left_by_a_stopped_agent_are_not_taken_for_an_exporter(tmp_path, machine) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    with benchmark.measure("first", store=url):
        time.sleep(0.3)
    with benchmark.Monitor(url) as monitor:  # the first agent's samples are seconds old
        assert monitor.sampler.agent is not None and not monitor.sampler.external
        monitor.begin_window("second")
        time.sleep(0.5)
        result = monitor.end_window("second")
    assert result.coverage == 1.0
    assert result.total_joules == pytest.approx(22.5 * result.duration_s, rel=0.01)
