"""Fault tests of the InfluxDB path ("Prove it"), against a real ``influxd`` and RAPL fixture trees
whose counters draw a known constant power:

- InfluxDB stopped for 30 s in the middle of a benchmark run: every point arrives, and the run
  scores as an identical run without the outage does;
- the agent SIGKILLed and restarted: what it spooled arrives, at most its last batch interval is
  lost, and the gap shows as coverage below 1;
- a spool directory that is unusable, or full: one clear error line, points wait in a bounded
  memory queue (the oldest dropped beyond it, counted and logged), nothing crashes.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from influxd import InfluxTarget
from rapl_writer import ProfileWriter, make_tree

from exporters.config import DEFAULTS
from exporters.errors import StoreError
from exporters.schema import Point
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.spool import REJECTED_FILE, SPOOL_FILE, MemorySpool
from exporters.window import window_energy
from scoring.runs import RunScore, load_runs

S = 1_000_000_000
WATTS = {"package-0": 30.0, "dram-0": 3.0}
WRAPS = {"package-0": 262_143.0, "dram-0": 65_712.999613}
INTERVAL_S = 0.1  # the power sampling interval of every agent here
FLUSH_S = DEFAULTS["flush_interval_s"]  # and how often each writes a batch
T0 = 1_700_000_000_000_000_000
FAST = {"retry_min_s": 0.05, "retry_max_s": 0.2, "timeout_s": 2.0, "close_timeout_s": 1.0}


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProfileWriter]:
    """This host as tubai sees it: a RAPL tree drawing a constant 30 W package and 3 W DRAM."""
    zones = make_tree(tmp_path / "sys", WRAPS)
    monkeypatch.setenv("TUBAI_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    monkeypatch.delenv("TUBAI_STORE", raising=False)
    monkeypatch.chdir(tmp_path)  # data/models (the digits CNN's cache) lands here
    writer = ProfileWriter(zones, WRAPS, lambda domain, t: WATTS[domain] * t)
    writer.start()
    yield writer
    writer.stop()


def seq_points(n: int, start: int = 0) -> list[Point]:
    return [
        Point("energy", {"host": "h", "domain": "package-0"}, {"seq": i}, T0 + i * 1000)
        for i in range(start, start + n)
    ]


def seqs(store: InfluxDBStore) -> list[int]:
    return [int(p.fields["seq"]) for p in store.read("energy", T0, T0 + 10**12)]


def disk_count(spool_dir: Path) -> int:
    """Entries in a spool file, read-only (opening a Spool would write to it)."""
    db = sqlite3.connect(f"file:{spool_dir / SPOOL_FILE}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM lines").fetchone()[0])
    finally:
        db.close()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- 1. InfluxDB stopped for 30 s in the middle of a benchmark run --------------------------------


class CountingStore(InfluxDBStore):
    """The store, remembering the time of every package sample handed to it (the truth) and
    when it was asked to read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.package_times: list[int] = []
        self.reads: list[int] = []

    def read(self, *args: Any, **kwargs: Any) -> list[Point]:
        self.reads.append(time.time_ns())
        return super().read(*args, **kwargs)

    def read_columns(self, *args: Any, **kwargs: Any) -> list:
        self.reads.append(time.time_ns())
        return super().read_columns(*args, **kwargs)

    def write(self, points: Iterable[Point]) -> None:
        points = list(points)
        self.package_times += [
            p.time_ns
            for p in points
            if p.measurement == "energy" and p.tags.get("domain") == "package-0"
        ]
        super().write(points)


def _benchmark(store: InfluxDBStore, run_id: str) -> list:
    from benchmark.runner import RunOptions, run_benchmark
    from benchmark.sampling import Sampler
    from exporters.config import load_config

    opts = RunOptions(
        model="digits_cnn", batch_size=150, min_duration_s=40, progress=False, run_id=run_id
    )
    # normal priority: this checks that sampling never waits on the store; a SCHED_IDLE sampler
    # (the default) on a machine other work saturates is late for the scheduler's reasons
    config = load_config(overrides={"sampler_priority": "normal"})
    with Sampler(store, host="h", config=config) as sampler:
        assert sampler.agent is not None, "the sampler runs its own agent"
        return run_benchmark(opts, store, sampler)


def _wait_for_start_event(influxd: InfluxTarget, run_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = influxd.query(f'SELECT "event" FROM "run" WHERE "run_id" = \'{run_id}\'')
        if any(r.get("series") for r in answer.get("results") or []):
            return
        time.sleep(0.1)
    raise AssertionError(f"no start event of {run_id!r} in InfluxDB within {timeout_s} s")


def _run_through_an_outage(store: CountingStore, influxd: InfluxTarget) -> tuple[int, int, int]:
    """Run "outage" with InfluxDB stopped for 30 s in its middle: (down_ns, up_ns, points still
    spooled at the end of the outage)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["results"] = _benchmark(store, "outage")
        except BaseException as e:  # re-raised in the test's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name="benchmark", daemon=True)
    thread.start()
    _wait_for_start_event(influxd, "outage", timeout_s=120)
    down_ns = time.time_ns()
    influxd.stop()
    time.sleep(30)
    spooled = store.pending()
    up_ns = time.time_ns()
    influxd.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the run did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return down_ns, up_ns, spooled


@pytest.mark.influxdb
@pytest.mark.timing
def test_a_30_s_outage_mid_run_loses_nothing_and_changes_no_score(
    influxd: InfluxTarget, tmp_path: Path, machine: ProfileWriter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    store = CountingStore.from_url(influxd.url, spool_dir=tmp_path / "spool")
    try:
        down_ns, up_ns, spooled_during_outage = _run_through_an_outage(store, influxd)
        _benchmark(store, "baseline")
        store.flush(30)
        # every sample handed over by now (the agent's writer thread may hand the outage run's
        # last batch over after the run returns); the window below keeps the outage run's
        outage_times = list(store.package_times)
        runs = {r.run_id: r for r in load_runs(store)}
        window = (runs["outage"].start_ns, runs["outage"].end_ns)
        stored = store.read("energy", *window, tags={"host": "h", "domain": "package-0"})
    finally:
        store.close()

    outage, baseline = runs["outage"], runs["baseline"]
    assert window[0] < down_ns and up_ns < window[1], "the outage was inside the run's window"
    assert spooled_during_outage > 0, "writes during the outage waited in the spool"
    assert not [t for t in store.reads if down_ns <= t <= up_ns], "no read during the outage"
    assert errors(caplog) == [], "nothing in the run path failed"

    for r in (outage, baseline):
        assert r.status == "finished" and r.coverage == 1.0, (r.run_id, r.flags)
        assert r.energy_j / r.duration_s == pytest.approx(sum(WATTS.values()), rel=0.01)
        assert r.duration_s >= 40 and r.inferences > 0

    # Every package sample the agent handed to the store inside the window is stored: the same
    # instants, none missing, none added; at most one per tick (a busy machine makes the agent
    # skip ticks, never add any): the ticks of the window, both ends included, one read late
    # from the tick before it, and the two edge readings; and no gap as long as a flush
    # interval: sampling never waited for the store.
    # (sorted: an edge read, stamped mid-read, may be handed over after a periodic sample)
    handed = sorted(t for t in outage_times if window[0] <= t <= window[1])
    times = [p.time_ns for p in stored]
    assert times == handed
    assert len(times) <= math.floor(outage.duration_s / INTERVAL_S) + 1 + 1 + 2
    assert max(b - a for a, b in itertools.pairwise(times)) < 1.0 * S

    # Each run's energy is the truth (the fixture's counters) within 0.2%: edges are
    # interpolated between samples 0.1 s apart on a constant power, so only the writer's lag
    # (milliseconds) and the timestamps' jitter are left.
    errors_pct = []
    for r in (outage, baseline):
        truth = sum(machine.true_joules(d, r.start_ns, r.end_ns) for d in WATTS)
        assert r.energy_j == pytest.approx(truth, rel=2e-3)
        errors_pct.append(f"{(r.energy_j / truth - 1) * 100:+.4f}%")
    # Energy per inference is then power / throughput, and throughput is not the measurement's:
    # TensorFlow on this shared 2-CPU machine (other test suites run alongside) ran the outage
    # run at 30,109, 20,688 and 32,038 img/s and the baseline at 24,737, 26,938 and 25,958 img/s
    # in three tries: 22-23% apart, either way. So the scores are compared with throughput taken
    # out: energy per inference times throughput (the measured mean power) must agree within
    # the measurement noise above (0.2%; observed under 0.03%), outage or not. The raw figures
    # only within a factor of 2, the throughput noise with room to spare.
    assert outage.uwh_per_inference * outage.images_per_s == pytest.approx(
        baseline.uwh_per_inference * baseline.images_per_s, rel=2e-3
    )
    assert 0.5 < outage.uwh_per_inference / baseline.uwh_per_inference < 2
    assert outage.top1 == baseline.top1
    _print_runs(outage, baseline, len(times), errors_pct, spooled_during_outage)


def _print_runs(
    outage: RunScore, baseline: RunScore, samples: int, errors_pct: list[str], spooled: int
) -> None:
    print(
        f"\noutage:   {outage.duration_s:.2f} s, {outage.inferences} inferences, "
        f"{outage.images_per_s:.0f} img/s, {outage.energy_j:.2f} J, "
        f"{outage.energy_j / outage.duration_s:.4f} W, {outage.uwh_per_inference:.6f} uWh/inf, "
        f"composite {outage.composite:.1f}, {samples} package samples, "
        f"energy vs truth {errors_pct[0]} (baseline {errors_pct[1]}), "
        f"{spooled} spooled at the end of the outage"
        f"\nbaseline: {baseline.duration_s:.2f} s, {baseline.inferences} inferences, "
        f"{baseline.images_per_s:.0f} img/s, {baseline.energy_j:.2f} J, "
        f"{baseline.energy_j / baseline.duration_s:.4f} W, "
        f"{baseline.uwh_per_inference:.6f} uWh/inf, composite {baseline.composite:.1f}"
    )


# -- 2. The agent SIGKILLed and restarted ---------------------------------------------------------


def _agent(tmp_path: Path, url: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "TUBAI_SPOOL_DIR": str(tmp_path / "spool"),
        "TUBAI_SOURCES__NVML__ENABLED": "false",
        # at most a batch is lost where the writer thread gets a CPU: a SCHED_IDLE one (the
        # default) on a machine other work saturates may hold more in memory at the kill
        "TUBAI_SAMPLER_PRIORITY": "normal",
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "exporters", "run", "--sysfs-root", str(tmp_path / "sys"),
             "--store", url, "--interval", str(INTERVAL_S)],
            stdout=subprocess.DEVNULL, stderr=out, env=env,
        )  # fmt: skip


def _wait_for_log(log: Path, text: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout_s} s: {log.read_text()}")


def _kill_and_restart_an_agent(tmp_path: Path, influxd: InfluxTarget) -> tuple[int, Path, int]:
    """An agent sampling while InfluxDB is down, SIGKILLed; then InfluxDB back and a second agent
    for 3 s: (the kill's time, the spool directory, entries in it at the kill)."""
    zones = make_tree(tmp_path / "sys", WRAPS)
    writer = ProfileWriter(zones, WRAPS, lambda domain, t: WATTS[domain] * t)
    writer.start()
    try:
        influxd.stop()  # everything the first agent samples waits in its spool
        first = _agent(tmp_path, influxd.url, tmp_path / "first.log")
        _wait_for_log(tmp_path / "first.log", "sampling", first)
        time.sleep(1.75 * FLUSH_S)  # it writes a batch every FLUSH_S after "sampling": kill between
        first.send_signal(signal.SIGKILL)
        killed_ns = time.time_ns()
        first.wait(10)
        (spool_dir,) = (tmp_path / "spool").iterdir()
        spooled = disk_count(spool_dir)

        influxd.start()
        second = _agent(tmp_path, influxd.url, tmp_path / "second.log")
        _wait_for_log(tmp_path / "second.log", "sampling", second)
        time.sleep(3)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "second.log").read_text()
    finally:
        writer.stop()
    return killed_ns, spool_dir, spooled


@pytest.mark.influxdb
@pytest.mark.timing
def test_a_sigkilled_agent_loses_at_most_a_batch_and_the_gap_shows_as_coverage(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    killed_ns, spool_dir, spooled = _kill_and_restart_an_agent(tmp_path, influxd)
    with InfluxDBStore.from_url(influxd.url, spool_dir=tmp_path / "reader-spool") as store:
        package = store.read("energy", 0, 2**62, tags={"domain": "package-0"})
        everything = sum(len(store.read(m, 0, 2**62)) for m in ("energy", "cpu", "mem", "agent"))
        times = [p.time_ns for p in package]
        totals = [p.fields["joules_total"] for p in package]
        drops = [i for i in range(1, len(totals)) if totals[i] < totals[i - 1]]
        assert len(drops) == 1, "the restart shows as one drop of joules_total"
        (restart,) = drops
        first_last, second_first = times[restart - 1], times[restart]
        start, end = times[0] + S // 2, times[-1] - S // 2
        energy = window_energy(store, start, end)
    assert disk_count(spool_dir) == 0, "the second agent drained the first one's spool"

    # What the first agent spooled arrived (everything in the spool file at the kill), and it
    # lost at most what it sampled since its last batch write: one flush interval and one
    # sampling interval.
    assert spooled > 0 and everything >= spooled
    assert first_last < killed_ns < second_first
    lost_s = (killed_ns - first_last) / S
    assert lost_s <= FLUSH_S + INTERVAL_S
    assert totals[restart] < 1.0, "the new agent counts from 0"

    # The window spanning the kill reports the gap as coverage: the uncovered time is the time
    # from the kill to the new agent's first sample plus what was lost before the kill, that is
    # the gap between the stored samples around the restart (within a sampling interval: each
    # domain has its own instants); the energy of the covered parts is right.
    window_s = (end - start) / S
    gap_s = (second_first - first_last) / S
    down_s = (second_first - killed_ns) / S
    assert {d.domain for d in energy.counted} == set(WATTS)
    for d in energy.counted:
        uncovered_s = (1 - d.coverage) * window_s
        assert 0 < uncovered_s == pytest.approx(down_s + lost_s, abs=INTERVAL_S)
        # within 3%: the fixture writer's updates lag on a loaded machine, and the edges of
        # the uncovered stretch are known to a sampling interval only
        assert d.joules == pytest.approx(WATTS[d.domain] * d.coverage * window_s, rel=0.03)
    assert energy.coverage < 1
    print(
        f"\nspooled at the kill: {spooled}; lost before the kill: {lost_s:.3f} s; "
        f"kill to first new sample: {down_s:.3f} s; gap: {gap_s:.3f} s; window {window_s:.2f} s, "
        f"coverage {energy.coverage:.4f}, {energy.total_joules:.3f} J = "
        f"{energy.total_joules / (energy.coverage * window_s):.4f} W over the covered time"
    )


# -- 3. A spool directory that is unusable or full ------------------------------------------------


@pytest.mark.influxdb
@pytest.mark.parametrize("where", ["is a file", "is under a file"])
def test_an_unusable_spool_directory_is_one_error_and_points_go_through_memory(
    influxd: InfluxTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    caplog.set_level(logging.INFO)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    spool_dir = blocker if where == "is a file" else blocker / "spool"
    with InfluxDBStore.from_url(influxd.url, spool_dir=spool_dir, **FAST) as store:
        for k in range(10):
            store.write(seq_points(30, 30 * k))
        store.flush(10)
        assert store.pending() == 0
        assert seqs(store) == list(range(300))
    (message,) = errors(caplog)
    assert str(spool_dir) in message and "TUBAI_SPOOL_DIR" in message
    assert "kept in memory (up to 200,000)" in message and "\n" not in message
    assert blocker.read_text() == "not a directory"


@pytest.mark.influxdb
def test_a_full_spool_overflows_into_memory_and_everything_arrives_in_order(
    influxd: InfluxTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    spool_dir = tmp_path / "spool"
    influxd.stop()
    # 64 KiB holds some 800 of these lines: the rest overflows, as on a full disk (SQLite
    # answers the same "database or disk is full" when max_page_count is reached).
    store = InfluxDBStore.from_url(
        influxd.url, spool_dir=spool_dir, spool_max_bytes=64 * 1024, batch_size=300, **FAST
    )
    try:
        for k in range(40):
            # A marker point at one fixed instant, rewritten by each batch: the value stored at
            # the end is that of the batch delivered last.
            marker = Point("marker", {}, {"batch": k}, T0)
            store.write([*seq_points(50, 50 * k), marker])
        on_disk = disk_count(spool_dir)
        assert 0 < on_disk < 40 * 51 and store.pending() == 40 * 51
        with pytest.raises(StoreError, match=r"still spooled .* of them in memory"):
            store.flush(0.3)
        influxd.start()
        store.flush(20)
        assert seqs(store) == list(range(2000))
        (marker,) = store.read("marker", T0, T0)
        assert marker.fields["batch"] == 39, "the disk spool went first, then memory, in order"
        store.write(seq_points(10, 2000))  # the spool has room again: back to disk
        store.flush(10)
        assert seqs(store) == list(range(2010))
    finally:
        store.close()
    (message,) = errors(caplog)
    assert f"spool {spool_dir / SPOOL_FILE} cannot take more points" in message
    assert "database or disk is full" in message and "TUBAI_SPOOL_MAX_MB" in message
    assert any("takes points again" in r.getMessage() for r in caplog.records)
    print(f"\n{on_disk} lines on disk, {40 * 51 - on_disk} in memory")


@pytest.mark.influxdb
def test_the_memory_bound_drops_the_oldest_and_says_so(
    influxd: InfluxTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    influxd.stop()
    store = InfluxDBStore.from_url(
        influxd.url, spool_dir=blocker / "spool", memory_bound=1000, batch_size=200, **FAST
    )
    try:
        for k in range(250):
            store.write(seq_points(100, 100 * k))
        assert store.pending() == 1000
        influxd.start()
        store.flush(10)
        assert seqs(store) == list(range(24_000, 25_000)), "exactly the oldest were dropped"
    finally:
        store.close()
    spool_error, *drops = errors(caplog)
    assert str(blocker / "spool") in spool_error
    dropped = [int(re.search(r"dropped the oldest, (\d+) so far", m).group(1)) for m in drops]
    assert dropped == [100, 10_000, 20_000, 24_000]  # the first, every 10,000th, and at close
    assert all("more than 1000 point(s) wait in memory" in m for m in drops)


@pytest.mark.influxdb
def test_the_exporter_runs_with_an_unusable_spool_directory(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    make_tree(tmp_path / "sys", WRAPS)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "exporters", "run", "--sysfs-root", str(tmp_path / "sys"),
         "--store", influxd.url, "--interval", str(INTERVAL_S), "--duration", "3"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TUBAI_SPOOL_DIR": str(blocker),
             "TUBAI_SOURCES__NVML__ENABLED": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert str(blocker) in line and "spool" in line and "TUBAI_SPOOL_DIR" in line
    with InfluxDBStore.from_url(influxd.url, spool_dir=tmp_path / "reader-spool") as store:
        package = store.read("energy", 0, 2**62, tags={"domain": "package-0"})
    assert len(package) >= 20, "it sampled, and the samples arrived"


def test_memory_spool_keeps_order_and_the_newest_within_its_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory = MemorySpool(3, tmp_path / "missing" / "dir", name="test")
    assert len(memory) == 0 and memory.peek(5) == (0, []) and memory.head_id() is None
    assert memory.append([]) == 0
    assert memory.append(["a", "b"]) == 2 and memory.append(["c", "d", "e"]) == 5
    assert memory.peek(10) == (5, ["c", "d", "e"]) and memory.dropped == 2
    assert memory.ack(3) == 1 and memory.head_id() == 4 and memory.tail_id() == 5
    assert memory.reject(["x y=1"], "HTTP 400: bad") is None  # no directory: into the log
    (tmp_path / "dir").mkdir()
    kept = MemorySpool(1, tmp_path / "dir").reject(["x y=1"], "bad")
    assert kept == tmp_path / "dir" / REJECTED_FILE
    memory.close()
    messages = errors(caplog)
    assert "dropped the oldest, 2 so far" in messages[0] and "x y=1" in messages[1]
    assert len(messages) == 2, "close reports no drop twice"
