"""The window API for users' own code: joules per domain, duplicate and unknown windows.

Each window's joules are checked against the RAPL fixture's own log (tests/rapl_writer.py): the
values its samples read, each one the writer showed while that sample could have been read,
interpolated at the window's edges. That holds exactly on a busy machine, where the counters can
lag their profile (the writer runs late) and samples their tick (the agent runs late). Where the
monitor samples this host itself, the edges are read (samples at exactly the window's edges:
tests/test_edges.py); beside an exporter it cannot ask, they are interpolated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from influxd import _free_port
from rapl_writer import ProfileWriter, make_tree

import benchmark
from exporters.stores.sqlite import SQLiteStore

WRAPS = {"package-0": 262_143.0, "dram-0": 65_712.0}
WATTS = {"package-0": 20.0, "dram-0": 2.5}

pytestmark = pytest.mark.timing


def read_by_the_counters(writer: ProfileWriter, db, result) -> dict[str, float]:
    """What ``result``'s window must report per domain, from the samples stored in ``db``."""
    with SQLiteStore(db) as store:
        samples = {d: store.read("energy", 0, 2**62, tags={"domain": d}) for d in WRAPS}
    return {
        f"rapl:{domain}": writer.window_joules(domain, points, result.start_ns, result.end_ns)
        for domain, points in samples.items()
    }


def assert_joules(writer: ProfileWriter, db, result, edges: str = "read") -> None:
    assert result.edges == edges
    expected = read_by_the_counters(writer, db, result)
    assert result.joules == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert result.total_joules == pytest.approx(sum(expected.values()), rel=1e-9)
    assert result.watts == pytest.approx(result.total_joules / result.duration_s)


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
    assert result.duration_s >= 0.8
    assert_joules(machine, tmp_path / "m.db", result)
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
    for window in (inner, outer):
        assert_joules(machine, tmp_path / "m.db", window)
        assert window.coverage == 1.0


def test_with_an_exporter_running_it_only_marks_windows(tmp_path, machine, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    monkeypatch.setenv("TUBAI_EXPORTER_URL", f"http://127.0.0.1:{_free_port()}")  # nobody there
    exporter = subprocess.Popen(
        [sys.executable, "-m", "exporters", "run", "--store", url, "--duration", "900"],
        env=os.environ.copy(), stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        hung = time.monotonic() + 300  # it samples when it has started, slowly on a busy machine
        while True:
            assert exporter.poll() is None and time.monotonic() < hung, "the exporter never sampled"
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
    assert result.coverage == 1.0
    assert_joules(machine, tmp_path / "shared.db", result, edges="interpolated")


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
    assert_joules(machine, tmp_path / "m.db", result)  # across both agents' samples
