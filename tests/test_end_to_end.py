"""The agent as users run it, against a RAPL tree whose counters follow a known power profile:
``scoring energy`` over a window must return exactly the energy of the counter values the agent
read (the fixture logs each one: tests/rapl_writer.py), across wraparounds, on a machine as busy
as it may be; SIGTERM must flush what was sampled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rapl_writer import CLOCK_SLACK_NS, ProfileWriter, make_tree, steps

from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.sqlite import SQLiteStore

S = 1_000_000_000
PACKAGE = steps([0.0, 45.0, 27.5, 60.0], period_s=0.37)
DRAM = steps([0.0, 4.5], period_s=0.37)
WRAPS = {"package-0": 40.0, "dram-0": 65_712.999613}  # the package wraps every second or so


def profile(domain: str, t: float) -> float:
    return PACKAGE(t) if domain == "package-0" else DRAM(t)


# The agent samples at normal priority: make test runs these tests again beside two busy loops,
# which would starve a SCHED_IDLE sampler (the default) for longer than a 40 J counter takes to
# wrap; that case (a gap no reading can bridge: a new segment, flagged) is tests/test_counters'.
ENV = {**os.environ, "TUBAI_SOURCES__NVML__ENABLED": "false", "TUBAI_SAMPLER_PRIORITY": "normal"}

pytestmark = pytest.mark.timing


def _agent(tmp_path, store_url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "exporters", "run", "--sysfs-root", str(tmp_path / "sys"),
         "--store", store_url, "--interval", "0.05", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**ENV, "TUBAI_SPOOL_DIR": str(tmp_path / "spool")},
    )  # fmt: skip


def _open(url: str, tmp_path):
    if url.startswith("sqlite"):
        return SQLiteStore(url.removeprefix("sqlite:///"))
    return InfluxDBStore.from_url(url, spool_dir=tmp_path / "test-spool")


@pytest.fixture
def writer(tmp_path):
    zones = make_tree(tmp_path / "sys", WRAPS)
    w = ProfileWriter(zones, WRAPS, profile)
    w.start()
    yield w
    w.stop()


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/e2e.db"
    return request.getfixturevalue("influxd").url


def test_window_energy_is_what_the_counters_read_across_wraparounds(
    tmp_path, writer, store_url
) -> None:
    agent = _agent(tmp_path, store_url, "--duration", "5")
    _, err = agent.communicate(timeout=300)
    assert agent.returncode == 0, err
    with _open(store_url, tmp_path) as store:
        samples = {d: store.read("energy", 0, 2**62, tags={"domain": d}) for d in WRAPS}
        wraps = store.read("agent", 0, 2**62, tags={"collector": "agent"})[-1]
    assert wraps.fields["counter_wraps_total"] >= 3  # the package counter really wrapped
    # 5 s of sampling (on the agent's monotonic clock, however late its reads) less the edges
    start, end = samples["package-0"][0].time_ns + S // 2, samples["package-0"][-1].time_ns - S // 3
    assert writer.true_joules("package-0", start, end) > 2 * WRAPS["package-0"]  # wraps inside
    result = subprocess.run(
        [sys.executable, "-m", "scoring", "energy", "--store", store_url,
         "--start", str(start), "--end", str(end), "--json"],
        capture_output=True, text=True, check=True,
        env={**ENV, "TUBAI_SPOOL_DIR": str(tmp_path / "reader-spool")},
    )  # fmt: skip
    report = json.loads(result.stdout)
    domains = {d["domain"]: d for d in report["domains"]}
    read = {d: writer.window_joules(d, samples[d], start, end) for d in WRAPS}
    for domain in WRAPS:
        assert domains[domain]["method"] == "counter"
        assert domains[domain]["coverage"] == 1.0
        assert domains[domain]["joules"] == pytest.approx(read[domain], rel=1e-9, abs=1e-6)
    assert report["total_joules"] == pytest.approx(sum(read.values()), rel=1e-9)
    assert report["estimated"] is False
    assert {d["source"] for d in report["domains"]} == {"rapl"}


def test_sigterm_flushes_and_exits_cleanly(tmp_path, writer) -> None:
    db = tmp_path / "t.db"
    agent = _agent(tmp_path, f"sqlite:///{db}")
    hung = time.monotonic() + 300
    while True:  # until its first batch is stored: it starts slowly on a busy machine
        assert agent.poll() is None and time.monotonic() < hung, "the agent never wrote"
        time.sleep(0.1)
        if db.exists():
            with SQLiteStore(db) as store:
                if store.read("energy", 0, 2**62):
                    break
    stopped_at = time.time_ns()
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=300)
    assert agent.returncode == 0, err
    with SQLiteStore(db) as store:
        health = store.read("agent", 0, 2**62)
    # Its health at exit, made after the signal, was stored: it is written in one batch with
    # whatever was sampled since the last flush, so that last batch was flushed at exit.
    final = [p for p in health if p.tags["collector"] == "agent"][-1]
    assert final.time_ns >= stopped_at - CLOCK_SLACK_NS
    assert {p.tags["collector"] for p in health} >= {"rapl", "system", "agent"}
    assert all(p.fields["ok"] for p in health if p.tags["collector"] == "rapl")
