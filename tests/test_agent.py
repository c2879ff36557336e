"""The sampling loop: cadence per kind, failures isolated, health points, re-checks, /metrics."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from rapl_writer import make_tree

from exporters import agent as agent_module
from exporters.agent import Agent
from exporters.errors import SourceError
from exporters.metrics import serve_metrics
from exporters.schema import Counter, Reading
from exporters.sources.custom import CustomSource
from exporters.sources.rapl import RaplSource
from exporters.stores.sqlite import SQLiteStore


class Ticker:
    """A source that counts its reads and reports a steadily rising counter."""

    def __init__(self, name: str, kind: str, fail: bool = False, ready: bool = True) -> None:
        self.name, self.kind, self.fail, self.ready = name, kind, fail, ready
        self.reads: list[int] = []

    def available(self) -> tuple[bool, str]:
        return self.ready, "ticker"

    def read(self) -> list[Reading]:
        self.reads.append(time.monotonic_ns())
        if self.fail:
            raise SourceError(f"{self.name} broke: replace it")
        counter = Counter(raw=len(self.reads) * 1e6, scale=1e-6, rate_field="watts")
        return [Reading("energy", {"domain": self.name}, counters={"joules_total": counter})]


@pytest.mark.timing
def test_each_kind_keeps_its_cadence_without_drift(tmp_path) -> None:
    fast, slow = Ticker("fast", "power"), Ticker("slow", "system")
    started = time.monotonic_ns()
    with SQLiteStore(tmp_path / "a.db") as store:
        Agent([fast, slow], store, "h", {"power": 0.02, "system": 0.25}).run(duration_s=1.0)
        points = store.read("energy", 0, 2**62, tags={"domain": "fast"})
    # What the loop guarantees on a machine however busy (how many reads it gets to is not):
    # at most one read a tick, none before its tick (deadlines count from the start: no
    # catching up), and no drift: a read the scheduler made late is followed by one on its
    # tick, less than a tick later (a loop that waits a tick after each read never is).
    assert 2 <= len(fast.reads) <= 51 and 1 <= len(slow.reads) <= 5
    assert all(r - started >= i * 0.02e9 for i, r in enumerate(fast.reads))
    gaps = [b - a for a, b in zip(fast.reads, fast.reads[1:])]
    assert min(gaps) < 0.02e9
    assert len(points) == len(fast.reads)
    assert all(p.tags["host"] == "h" for p in points)


@pytest.mark.timing
def test_a_failing_source_is_recorded_and_the_others_go_on(tmp_path) -> None:
    good, bad = Ticker("good", "power"), Ticker("bad", "power", fail=True)
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([bad, good], store, "h", {"power": 0.05, "system": 0.2})
        agent.run(duration_s=0.6)
        health = store.read("agent", 0, 2**62)
        energy = store.read("energy", 0, 2**62)
    ok = {(p.tags["collector"], p.fields["ok"]) for p in health if "ok" in p.fields}
    assert ok == {("good", True), ("bad", False)}
    assert len(bad.reads) >= 2  # read again after it failed (how often: the cadence test)
    assert {p.tags["domain"] for p in energy} == {"good"}
    own = [p for p in health if p.tags["collector"] == "agent"]
    assert own[-1].fields["cpu_seconds_total"] > 0
    assert agent.points_total == len(energy) + len(health)


@pytest.mark.timing
def test_sources_unavailable_at_start_are_checked_again(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(agent_module, "RECHECK_S", 0.2)
    late = Ticker("late", "power", ready=False)
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([], store, "h", {"power": 0.05}, waiting=[late])
        threading.Timer(0.3, lambda: setattr(late, "ready", True)).start()
        start = time.monotonic_ns()
        agent.run(duration_s=1.0)
    assert late in agent.sources and not agent.waiting
    assert 0.3e9 <= late.reads[0] - start  # picked up at a re-check after it became ready
    assert len(late.reads) >= 2  # and sampled from then on


def test_metrics_endpoint_serves_latest_values(tmp_path) -> None:
    make_tree(tmp_path / "sys", {"package-0": 262_143.0})
    source = RaplSource(tmp_path / "sys")
    assert source.available()[0]
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([source], store, "lab1")
        agent.sample(source)
        (tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj").write_text("5000000\n")
        agent.sample(source)
        port = serve_metrics(agent, 0)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    joules = families["tubai_energy_joules"].samples[0]
    assert joules.value == 5.0
    assert joules.labels == {
        "domain": "package-0",
        "estimated": "false",
        "host": "lab1",
        "source": "rapl",
    }
    assert families["tubai_energy_joules"].type == "counter"
    assert families["tubai_energy_watts"].type == "gauge"


class Closing(Ticker):
    """A ticker with the optional ``close()``, which counts its calls (and may fail)."""

    def __init__(self, name: str, ready: bool = True, broken: bool = False) -> None:
        super().__init__(name, "power", ready=ready)
        self.broken, self.closed = broken, 0

    def close(self) -> None:
        self.closed += 1
        if self.broken:
            raise OSError("port busy")


def test_every_source_is_closed_when_the_agent_stops(tmp_path, caplog) -> None:
    broken, sampled, late = Closing("broken", broken=True), Closing("a"), Closing("late", False)
    user = Closing("user")
    custom = CustomSource(user, "lab.meters:Meter", 0, None)  # close() goes to the user's object
    plain = Ticker("plain", "power")  # close() is optional
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([broken, sampled, custom, plain], store, "h", {"power": 0.05}, waiting=[late])
        agent.run(duration_s=0.3)
    assert (broken.closed, sampled.closed, user.closed, late.closed) == (1, 1, 1, 1)
    assert all(source.reads for source in (broken, sampled, user, plain))
    assert "broken: close() failed: OSError: port busy" in caplog.text


@pytest.mark.timing
def test_the_loop_flushes_no_more_often_than_it_samples(tmp_path, monkeypatch) -> None:
    ticker = Ticker("slow", "power")
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([ticker], store, "h", {"power": 0.3, "system": 10.0}, flush_interval_s=0.05)
        flushes: list[int] = []
        flush = agent.flush
        monkeypatch.setattr(agent, "flush", lambda: flushes.append(len(agent._buffer)) or flush())
        agent.run(duration_s=1.0)
        stored = store.read("energy", 0, 2**62)
    # A flush between two samples would have nothing new: the loop wakes for samples only, and
    # flushes at most once per sample (and once at the end).
    assert len(flushes) <= len(ticker.reads) + 1
    assert len(stored) == len(ticker.reads)


@pytest.mark.timing
def test_stop_wakes_a_sleeping_loop_at_once(tmp_path) -> None:
    ticker = Ticker("slow", "power")
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([ticker], store, "h", {"power": 60.0, "system": 60.0}, flush_interval_s=60)
        thread = threading.Thread(target=agent.run)
        thread.start()
        assert agent.first_round.wait(60)
        time.sleep(0.2)  # asleep until the next tick, a minute away
        agent.stop()
        agent.stop()  # twice: harmless
        thread.join(30)
        assert not thread.is_alive()
        assert len(store.read("energy", 0, 2**62)) == len(ticker.reads) == 1
