"""The agent keeps sampling whatever the store does, with real stores, files and processes:

- another process holds the SQLite write lock: sampling keeps its cadence, every point arrives
  once the lock is released, and the stall is reported (log lines, health points);
- held past the writer's bound: the oldest points are dropped, counted and said once;
- SIGTERM while the store hangs (an InfluxDB that accepts and never answers, a SQLite lock held
  for good): the agent exits within its bound; the InfluxDB points stay in the spool and the
  next store delivers them to a real ``influxd``;
- a write that fails is kept and tried again; the writer's health is served on ``/metrics``.

What is checked at start (an unwritable store, unstorable names): tests/test_store_checks.py.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from influxd import InfluxTarget
from prometheus_client.parser import text_string_to_metric_families
from rapl_writer import make_tree
from sqlite_faults import released, wait_for, write_lock

from exporters import agent as agent_module
from exporters import clock
from exporters.__main__ import EXIT_S
from exporters.agent import Agent
from exporters.metrics import serve_metrics
from exporters.schema import Point
from exporters.sources.rapl import RaplSource
from exporters.stores import sqlite as sqlite_module
from exporters.stores.base import Store
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.spool import SPOOL_FILE
from exporters.stores.sqlite import SQLiteStore

S = 1_000_000_000
INTERVAL_S = 0.1  # the power cadence of every agent here
HOLD_S = 3.0  # how long another process holds the SQLite write lock
ENV = {**os.environ, "TUBAI_SOURCES__NVML__ENABLED": "false"}


def longest_gap_s(points: list[Point]) -> float:
    times = [p.time_ns for p in points]
    return max(b - a for a, b in itertools.pairwise(times)) / S


@pytest.fixture
def rapl(tmp_path: Path) -> RaplSource:
    make_tree(tmp_path / "sys", {"package-0": 262_143.0})
    return RaplSource(tmp_path / "sys")


@contextmanager
def sampling(agent: Agent) -> Iterator[Agent]:
    """``agent`` running in a thread of its own until the block ends."""
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=120)
        assert not thread.is_alive()


def has_energy(store: Store) -> bool:
    return bool(store.read("energy", 0, 2**62))


def through_a_lock(
    db: Path, agent: Agent, caplog: pytest.LogCaptureFixture, while_held=lambda: None
) -> tuple[int, int]:
    """Sample with ``agent`` while another process holds ``db``'s write lock for ``HOLD_S``,
    until the store takes writes again; (wall ns when the lock was held, when released)."""
    with sampling(agent):
        wait_for("a first batch stored", lambda: has_energy(agent.store))
        with write_lock(db, HOLD_S) as holder:
            locked_at = clock.wall_ns()
            while_held()
            released(holder)
            released_at = clock.wall_ns()
        wait_for("the store taking writes again", lambda: "takes writes again" in caplog.text)
        time.sleep(0.5)
    return locked_at, released_at


def stored(store: Store) -> tuple[list[Point], list[Point], int]:
    """The energy samples, the agent's own health points, and how many points in all."""
    energy = store.read("energy", 0, 2**62)
    health = store.read("agent", 0, 2**62)
    own = [p for p in health if p.tags["collector"] == "agent"]
    return energy, own, len(energy) + len(health)


@pytest.mark.timing
def test_sampling_goes_on_while_another_process_holds_the_write_lock(
    tmp_path: Path, rapl: RaplSource, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(agent_module, "STALL_S", 1.0)  # said after 1 s of the 3 s
    caplog.set_level(logging.WARNING)
    db = tmp_path / "t.db"
    with SQLiteStore(db) as store:
        agent = Agent([rapl], store, "h", {"power": INTERVAL_S, "system": 0.5}, 0.2)
        locked_at, released_at = through_a_lock(db, agent, caplog)
        energy, health, total = stored(store)
    # Sampling never waited on the store: no hole beyond a few ticks (it was 3 s).
    assert longest_gap_s(energy) <= 10 * INTERVAL_S
    during = [p for p in energy if locked_at < p.time_ns < released_at]
    assert len(during) >= (HOLD_S / 2) / INTERVAL_S  # sampled then, stored after
    assert agent.points_lost == 0 and agent.points_total == total  # every point arrived
    # ... and the stall was reported: once in the log, and in the health points.
    assert caplog.text.count("has taken no write for") == 1
    assert max(p.fields["store_stalled_s"] for p in health) >= 1.0
    assert max(p.fields["store_queue_points"] for p in health) > 0
    assert health[-1].fields["points_dropped_total"] == 0


@pytest.mark.timing
def test_beyond_its_bound_the_oldest_points_are_dropped_counted_and_said_once(
    tmp_path: Path, rapl: RaplSource, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "t.db"
    with SQLiteStore(db) as store:
        agent = Agent([rapl], store, "h", {"power": INTERVAL_S, "system": 0.5}, 0.2, max_queued=10)
        _, released_at = through_a_lock(db, agent, caplog)
        energy, health, _ = stored(store)
    assert caplog.text.count("the oldest are dropped (counted") == 1
    dropped = health[-1].fields["points_dropped_total"]
    assert dropped > 0 and agent.points_lost == dropped == agent.writer.dropped
    assert longest_gap_s(energy) > 1.0  # the oldest of the stall went...
    kept = [p for p in energy if released_at - S < p.time_ns < released_at]
    assert kept  # ... the newest stayed


@pytest.mark.timing
def test_a_write_that_fails_is_kept_and_tried_again_until_it_is_stored(
    tmp_path: Path, rapl: RaplSource, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(sqlite_module, "BUSY_S", 0.3)  # writes give up on the lock after 0.3 s
    db = tmp_path / "t.db"
    with SQLiteStore(db) as store:
        agent = Agent([rapl], store, "h", {"power": INTERVAL_S, "system": 0.5}, 0.2)
        through_a_lock(
            db,
            agent,
            caplog,
            lambda: wait_for("a failed write", lambda: "tried again" in caplog.text),
        )
        energy, _, total = stored(store)
    failed = [r.getMessage() for r in caplog.records if "tried again every" in r.getMessage()]
    assert len(failed) == 1 and "held its write lock for over 0.3 s" in failed[0]
    assert agent.points_lost == 0 and agent.points_total == total
    assert longest_gap_s(energy) <= 10 * INTERVAL_S


def test_the_writer_health_is_served_on_metrics(tmp_path: Path, rapl: RaplSource) -> None:
    with SQLiteStore(tmp_path / "t.db") as store:
        agent = Agent([rapl], store, "lab1", {"power": INTERVAL_S, "system": 0.2}, 0.2)
        port = serve_metrics(agent, 0)
        agent.run(duration_s=0.5)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    own = {"collector": "agent", "host": "lab1"}
    for name, kind in [
        ("tubai_agent_store_queue_points", "gauge"),
        ("tubai_agent_store_stalled_s", "gauge"),
        ("tubai_agent_points_dropped", "counter"),
    ]:
        assert families[name].type == kind
        assert [s.labels for s in families[name].samples] == [own]
    dropped = families["tubai_agent_points_dropped"].samples[0]
    assert dropped.name == "tubai_agent_points_dropped_total" and dropped.value == 0


def hang_forever(port_holder: list[int], stop: threading.Event) -> None:
    """Accept connections on a free loopback port and never answer: a hung InfluxDB."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        server.settimeout(0.1)
        port_holder.append(server.getsockname()[1])
        held = []
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
        for conn in held:
            conn.close()


@contextmanager
def hanging_server() -> Iterator[int]:
    port: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=hang_forever, args=(port, stop), daemon=True)
    thread.start()
    wait_for("the hanging server listening", lambda: bool(port))
    try:
        yield port[0]
    finally:
        stop.set()
        thread.join()


def exporter(tmp_path: Path, store_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "exporters", "run", "--sysfs-root", str(tmp_path / "sys"),
         "--store", store_url, "--interval", str(INTERVAL_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**ENV, "TUBAI_SPOOL_DIR": str(tmp_path / "spool")},
    )  # fmt: skip


def spooled(spool_dir: Path, like: str = "%") -> int:
    """Lines waiting in a spool, read-only (opening a Spool would write to it)."""
    path = spool_dir / SPOOL_FILE
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(
            db.execute("SELECT COUNT(*) FROM lines WHERE line LIKE ?", (like,)).fetchone()[0]
        )
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        db.close()


def stop_within_bound(agent: subprocess.Popen[str]) -> tuple[float, str]:
    """SIGTERM ``agent``; (seconds until it exited, its stderr)."""
    sent = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=120)
    return time.monotonic() - sent, err


@pytest.mark.influxdb
@pytest.mark.timing
def test_sigterm_while_influxdb_hangs_exits_in_time_and_the_spool_keeps_the_points(
    tmp_path: Path, rapl: RaplSource, influxd: InfluxTarget
) -> None:
    with hanging_server() as port:
        agent = exporter(tmp_path, f"influxdb://127.0.0.1:{port}/{influxd.database}")
        wait_for("points spooled", lambda: any(spooled(d) for d in tmp_path.glob("spool/*")))
        (spool_dir,) = tmp_path.glob("spool/*")
        time.sleep(1.0)  # the sender is stuck on its first delivery by now
        before = spooled(spool_dir)
        took_s, err = stop_within_bound(agent)
    assert agent.returncode == 0, err
    assert took_s <= EXIT_S + 2.0, err  # 8 s at most (Docker kills after 10 s); it took 17.7 s
    assert "Traceback" not in err
    energy = spooled(spool_dir, "energy,%")
    assert spooled(spool_dir) > before and energy > 0  # nothing sent, nothing lost
    # The next store on that spool delivers them to a server that answers.
    with InfluxDBStore(influxd.http, influxd.database, spool_dir=spool_dir) as store:
        store.flush(60)
        assert len(store.read("energy", 0, 2**62)) == energy
        assert store.pending() == 0


@pytest.mark.timing
def test_sigterm_while_the_sqlite_lock_is_held_exits_in_time_and_says_what_was_lost(
    tmp_path: Path, rapl: RaplSource
) -> None:
    db = tmp_path / "t.db"
    agent = exporter(tmp_path, f"sqlite:///{db}")
    with SQLiteStore(db) as store:
        wait_for("a first batch stored", lambda: has_energy(store))
    with write_lock(db, 120):
        time.sleep(1.0)  # a batch or two wait for the lock
        took_s, err = stop_within_bound(agent)
    assert took_s <= EXIT_S + 2.0, err
    assert agent.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("exporters: error: ") and "points were not stored" in last, err
    assert "Traceback" not in err
