"""Window edges read, not interpolated: the counters read when a window opens and closes.

The machine is a kernel-like RAPL tree (tests/rapl_writer.py): a 100 J counter that wraps every
1.1 to 3.3 s, its package stepping between 30 and 90 W every second, the file rewritten about
every millisecond. The truth of a window is the writer's own log: the counter the file held at
the instants its edges were read. What the code guarantees, however busy the machine, is that
each edge reading holds a value the file held during that read (whose span it reports), so the
windows are checked exactly against those values, and against the bounds of the issue with the
file's change during the reads allowed for (nothing, when the reads are not preempted).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from counting_store import CountingStore
from edge_truth import clock_shift, window_truth
from influxd import _free_port
from rapl_writer import ProfileWriter, make_tree, steps

import benchmark
from exporters import clock
from exporters.agent import Agent
from exporters.edges import EdgeReading, EdgeSeries, edge_energy, with_stored
from exporters.metrics import is_loopback, metrics_app, serve_metrics
from exporters.schema import Point, energy_tags
from exporters.sources.rapl import RaplSource
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.sqlite import SQLiteStore
from exporters.window import window_energy

DOMAIN = "package-0"
WRAPS = {DOMAIN: 100.0}
PACKAGE = steps([30.0, 90.0], period_s=1.0)
BOUNDS = {0.01: 0.05, 0.05: 0.01, 1.0: 0.001}  # window length (s): largest relative error
HOST = "edge-host"


@pytest.fixture
def machine(tmp_path, monkeypatch) -> Iterator[ProfileWriter]:
    """This host, as far as tubai sees it: the kernel-like RAPL tree and nothing else."""
    zones = make_tree(tmp_path / "sys", WRAPS)
    monkeypatch.setenv("TUBAI_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    monkeypatch.setenv("TUBAI_HOST", HOST)
    writer = ProfileWriter(zones, WRAPS, lambda domain, t: PACKAGE(t))
    writer.start()
    yield writer
    writer.stop()


def check_window(writer: ProfileWriter, result, shift: int, length_s: float) -> float:
    """Assert ``result`` read the file at its edges and is within the bound; its error."""
    assert result.edges == "read", result.energy
    start, end = result.readings
    assert (result.start_ns, result.end_ns) == (start.time_ns, end.time_ns)
    truth = window_truth(writer, DOMAIN, start, end, shift)
    measured_uj = round(result.joules[f"rapl:{DOMAIN}"] * 1e6)
    assert measured_uj in truth.possible_uj, (measured_uj, truth)  # exactly what was read
    error = abs(result.total_joules - truth.joules)
    assert error <= BOUNDS[length_s] * truth.joules + truth.during_j, (length_s, result, truth)
    return error / truth.joules if truth.joules else error  # the writer may stall that long


@pytest.mark.timing
@pytest.mark.parametrize("cadence_s", [2.0, 0.01])
def test_windows_take_the_counters_at_their_edges(tmp_path, machine, monkeypatch, cadence_s):
    monkeypatch.setenv("TUBAI_INTERVAL_S__POWER", str(cadence_s))
    shift = clock_shift(machine)
    errors = {}
    with benchmark.Monitor(f"sqlite:///{tmp_path}/m.db") as monitor:
        assert monitor.sampler.agent is not None  # in-process: it reads the sources itself
        for length_s in BOUNDS:
            monitor.begin_window("w")
            time.sleep(length_s)
            result = monitor.end_window("w")
            errors[length_s] = check_window(machine, result, shift, length_s)
        stored = monitor.stored_energy(result)  # the same window from the stored samples
    assert stored.edges == "read" and stored.coverage == 1.0
    assert stored.total_joules == pytest.approx(result.total_joules, rel=1e-12)
    print(f"cadence {cadence_s} s: relative errors by window length {errors}")


@pytest.mark.timing
def test_end_window_reads_no_store(tmp_path, machine, monkeypatch) -> None:
    monkeypatch.setenv("TUBAI_INTERVAL_S__POWER", "2")
    with CountingStore(tmp_path / "c.db") as store, benchmark.Monitor(store) as monitor:
        monitor.begin_window("w")
        time.sleep(0.05)
        before = store.reads
        result = monitor.end_window("w")
        assert store.reads == before  # from the two edge readings alone
    assert result.edges == "read" and result.coverage == 1.0
    assert set(result.joules) == {f"rapl:{DOMAIN}"} and result.total_joules > 0


def test_edge_reads_leave_the_rates_to_the_periodic_samples(tmp_path) -> None:
    zone = make_tree(tmp_path / "sys", {DOMAIN: 262_143.0})[DOMAIN]
    source = RaplSource(tmp_path / "sys")
    assert source.available()[0]
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([source], store, HOST)
        agent.writer.start()
        (first,) = agent.sample(source)
        time.sleep(0.2)
        (zone / "energy_uj").write_text("1000000\n")  # 1 J before the edge
        edge = agent.sample_now()
        (zone / "energy_uj").write_text("3000000\n")  # 2 J more after it
        (last,) = agent.sample(source)
        agent.writer.put([first, last])  # what the loop does with its samples
        assert agent.writer.close(30) == 0
        stored = store.read("energy", 0, 2**62)
    assert edge.series[(HOST, "rapl", DOMAIN)].joules_total == 1.0
    assert agent.latest[last.series_key()] is last  # /metrics serves the periodic samples
    period_s = (last.time_ns - first.time_ns) / 1e9  # stamps: the reads' middles, give or take
    assert last.fields["watts"] == pytest.approx(3.0 / period_s, rel=1e-3)
    assert sorted(p.time_ns for p in stored) == [first.time_ns, edge.time_ns, last.time_ns]
    (at_edge,) = [p for p in stored if p.time_ns == edge.time_ns]
    assert at_edge.fields == {"joules_total": 1.0}  # a total, no rate


def reading(t_ns: int, **series: tuple[float | None, str | None]) -> EdgeReading:
    parsed = {}
    for name, (total, segment) in series.items():
        source, domain = name.split("__")
        parsed[(HOST, source, domain.replace("_", "-"))] = EdgeSeries(False, total, segment)
    return EdgeReading(t_ns, 1000, HOST, parsed)


def test_edge_energy_leaves_to_the_store_what_the_edges_cannot_give(tmp_path) -> None:
    s = 10**9
    start = reading(s, rapl__package_0=(10.0, "a.0"), rapl__dram_0=(5.0, "a.0"),
                    nvml__gpu0=(None, None), ipmi__wall=(None, None))  # fmt: skip
    end = reading(3 * s, rapl__package_0=(70.0, "a.0"), rapl__dram_0=(1.0, "a.1"),
                  nvml__gpu0=(None, None), ipmi__wall=(None, None))  # fmt: skip
    energy, missing = edge_energy(start, end)
    # the package from its edges; DRAM was reset between them, the GPU gives power only: both
    # counted, so both need the stored samples; the wall is not counted: left to them
    assert [(d.domain, d.joules, d.edges) for d in energy.domains] == [("package-0", 60.0, "read")]
    assert sorted(missing) == [(HOST, "nvml", "gpu0"), (HOST, "rapl", "dram-0")]
    with SQLiteStore(tmp_path / "s.db") as store:
        store.write([
            Point("energy", {**energy_tags("nvml", "gpu0"), "host": HOST}, {"watts": 100.0}, t)
            for t in range(s // 4, 5 * s, s // 2)  # none at the edges
        ])  # fmt: skip
        stored = window_energy(store, s, 3 * s, host=HOST)
    merged = with_stored(energy, stored)
    assert {d.domain: d.joules for d in merged.counted} == {"package-0": 60.0, "gpu0": 200.0}
    assert merged.edges == "interpolated"  # the GPU's edges come from its periodic samples
    assert EdgeReading.from_dict(json.loads(json.dumps(start.to_dict()))) == start
    for bad in ({"time_ns": 1}, {**start.to_dict(), "series": [{"source": "rapl"}]}, []):
        with pytest.raises(ValueError):
            EdgeReading.from_dict(bad)


def _ask(port: int, host: str = "127.0.0.1", method: str = "POST") -> requests.Response:
    return requests.request(method, f"http://{host}:{port}/sample", timeout=30)


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than the loopback, if it has one."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return None
    return next((i[4][0] for i in infos if not is_loopback(i[4][0])), None)


def test_the_sample_endpoint_answers_loopback_posts_only(tmp_path) -> None:
    make_tree(tmp_path / "sys", WRAPS)
    with SQLiteStore(tmp_path / "e.db") as store:
        agent = Agent([RaplSource(tmp_path / "sys")], store, HOST)
        port = serve_metrics(agent, 0, addr="0.0.0.0")
        answer = _ask(port)
        assert answer.status_code == 200
        edge = EdgeReading.from_dict(answer.json())
        assert edge.host == HOST and edge.series[(HOST, "rapl", DOMAIN)].joules_total == 0.0
        refused = _ask(port, method="GET")
        assert refused.status_code == 405 and refused.headers["Allow"] == "POST"
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).status_code == 200
        elsewhere = _non_loopback_address()
        if elsewhere is not None:  # a client from another address of this machine
            assert _ask(port, host=elsewhere).status_code == 403
        environ: dict = {"REQUEST_METHOD": "POST", "PATH_INFO": "/sample",
                         "REMOTE_ADDR": "192.0.2.7"}  # fmt: skip
        setup_testing_defaults(environ)
        statuses: list[str] = []
        metrics_app(agent, None)(environ, lambda status, headers: statuses.append(status))  # type: ignore[arg-type]
        assert statuses == ["403 Forbidden"]
        agent.run(duration_s=0.01)
        assert _ask(port).status_code == 503  # stopped: its sources are closed
    assert all(is_loopback(a) for a in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"))
    assert not any(is_loopback(a) for a in ("192.0.2.7", "::ffff:192.0.2.7", "", "x"))


def _exporter(tmp_path, url: str, port: int) -> subprocess.Popen:
    with open(tmp_path / "exporter.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "exporters", "run", "--store", url, "--interval", "1",
             "--metrics-port", str(port)],
            env={**os.environ, "TUBAI_SPOOL_DIR": str(tmp_path / "spool")}, stderr=log,
        )  # fmt: skip


def _await_sampling(exporter: subprocess.Popen, store, port: int, log) -> None:
    hung = time.monotonic() + 300  # it samples when it has started, slowly on a busy machine
    while True:
        running = exporter.poll() is None and time.monotonic() < hung
        assert running, f"the exporter never sampled: {log.read_text()[-2000:]}"
        time.sleep(0.2)
        try:
            store.flush()
            fresh = store.read("energy", clock.wall_ns() - 3 * 10**9, clock.wall_ns() + 10**9)
            serving = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).ok
        except (requests.RequestException, Exception):
            continue
        if fresh and serving:
            return


def _stored_at(store, t_ns: int, timeout_s: float = 60.0) -> Point:
    """The package sample stored at exactly ``t_ns`` (the exporter writes it soon after)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = store.read("energy", t_ns, t_ns, tags={"domain": DOMAIN})
        if found or time.monotonic() > deadline:
            assert found, f"no sample stored at the edge {t_ns}"
            return found[0]
        time.sleep(0.2)


@pytest.mark.influxdb
@pytest.mark.timing
def test_windows_beside_a_running_exporter_are_read_over_its_port(
    tmp_path, machine, influxd, monkeypatch
) -> None:
    port, closed = _free_port(), _free_port()
    exporter = _exporter(tmp_path, influxd.url, port)
    try:
        with InfluxDBStore.from_url(influxd.url, spool_dir=tmp_path / "own-spool") as store:
            _await_sampling(exporter, store, port, tmp_path / "exporter.log")
            monkeypatch.setenv("TUBAI_EXPORTER_URL", f"http://127.0.0.1:{port}")
            with benchmark.Monitor(store) as monitor:
                assert monitor.sampler.external and monitor.sampler.agent is None
                monitor.begin_window("w")
                time.sleep(0.2)
                result = monitor.end_window("w")
            assert result.edges == "read" and result.coverage == 1.0
            start, end = result.readings
            edges = [_stored_at(store, t) for t in (result.start_ns, result.end_ns)]
            key = (HOST, "rapl", DOMAIN)
            assert [p.fields["joules_total"] for p in edges] == [
                r.series[key].joules_total for r in (start, end)
            ]
            stored = window_energy(store, result.start_ns, result.end_ns, host=HOST)
            assert stored.edges == "read"
            assert stored.total_joules == pytest.approx(result.total_joules, rel=1e-12)

            monkeypatch.setenv("TUBAI_EXPORTER_URL", f"http://127.0.0.1:{closed}")
            with benchmark.Monitor(store) as monitor:  # nothing listens there
                monitor.begin_window("w")
                time.sleep(0.2)
                fallback = monitor.end_window("w")
            assert fallback.readings == (None, None) and fallback.edges == "interpolated"
            assert fallback.coverage == 1.0 and fallback.total_joules > 0
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)


def test_each_pass_of_a_benchmark_is_a_window_between_edge_samples(tmp_path, machine) -> None:
    pytest.importorskip("tensorflow")
    from benchmark.records import read_events
    from benchmark.runner import RunOptions, run_benchmark
    from benchmark.sampling import Sampler
    from exporters.config import load_config

    options = RunOptions(model="mobilenetv3_small", data="synthetic", limit=16, batch_size=16,
                         weights="random", run_id="edges", repeats=2, progress=False)  # fmt: skip
    with SQLiteStore(tmp_path / "r.db") as store:
        with Sampler(store, config=load_config()) as sampler:
            results = run_benchmark(options, store, sampler)
        for result in results:
            events = read_events(store, result.run_id)
            assert [e.time_ns for e in events] == [result.start_ns, result.end_ns]
            for t in (result.start_ns, result.end_ns):  # the counters read at each event
                assert store.read("energy", t, t, tags={"domain": DOMAIN})
            assert result.energy is not None and result.energy.edges == "read"
