"""Steadiness, recorded (benchmark/steadiness.py) and judged (scoring/steadiness.py): the batch
timer, other processes' CPU time from a procfs tree, each flag at its threshold, and what
``scoring runs --json`` and the score point show. Runs made unsteady on purpose through the real
runner are in test_steadiness_runs.py."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_fixtures import add_events, add_power

from benchmark.records import RunEnd, RunStart, RunTags, write_event
from benchmark.steadiness import (
    LATENCY_RATIO,
    MAX_FINE_BINS,
    MAX_SERIES_BINS,
    BatchTimer,
    CpuClock,
    process_cpu_seconds,
)
from exporters.sources.procfs import CLOCK_TICKS
from exporters.stores.sqlite import SQLiteStore
from scoring import steadiness
from scoring.__main__ import main as scoring_main
from scoring.runs import RunScore, load_runs
from scoring.service import score_point

S = 1_000_000_000


def _timed(latencies: list[float], images: int = 8) -> BatchTimer:
    """A timer fed batches finishing ``latencies`` apart, on a clock of our own."""
    timer = BatchTimer()
    t0 = timer._t0
    now = t0
    for latency in latencies:
        now += latency
        timer.batch(images, now)
    timer.span_s = now - t0
    return timer


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-4, 5.0), min_size=1, max_size=300))
def test_latency_percentiles_are_within_half_a_bin(latencies) -> None:
    timer = _timed(latencies)
    for q, name in ((0.5, "latency_p50_s"), (0.9, "latency_p90_s"), (0.99, "latency_p99_s")):
        exact = float(np.percentile(latencies, q * 100, method="inverted_cdf"))
        assert timer.fields()[name] == pytest.approx(exact, rel=math.sqrt(LATENCY_RATIO) - 1 + 1e-6)
    assert timer.stall_s == pytest.approx(max(latencies), abs=1e-6)  # a monotonic clock's sums


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 3.0), st.integers(1, 64)), min_size=1, max_size=200))
def test_the_series_holds_every_image_in_bins_of_about_a_second(batches) -> None:
    timer = BatchTimer()
    now = timer._t0
    for latency, images in batches:
        now += latency
        timer.batch(images, now)
    timer.span_s = now - timer._t0
    series = timer.series()
    assert len(series) == min(MAX_SERIES_BINS, max(1, round(timer.span_s)))
    bin_s = timer.span_s / len(series)
    total = sum(images for _, images in batches)
    assert sum(series) * bin_s == pytest.approx(total, rel=1e-3)  # 4 significant digits each


def test_a_stall_shows_in_the_series_and_the_gap() -> None:
    timer = _timed([0.1] * 30 + [4.0] + [0.1] * 30)  # 3 s, 4 s without a batch, 3 s
    series = timer.series()
    assert len(series) == 10 and timer.stall_s == pytest.approx(4.0)
    assert series[:3] == pytest.approx([80.0] * 3, rel=1e-3)  # 8 images per 0.1 s
    assert series[3:6] == pytest.approx([2.0] * 3, rel=1e-3)  # one batch spread over 4 s
    assert steadiness.throughput_cv(series) > steadiness.THROUGHPUT_CV_LIMIT
    assert steadiness.throughput_cv([80.0] * 10) == 0.0


def test_memory_stays_bounded_over_a_long_pass() -> None:
    timer = _timed([0.5] * 20_000)  # close to three hours
    assert timer._images.shape == (MAX_FINE_BINS + 1,) and timer._bin_s > 1.0
    series = timer.series()
    assert len(series) == MAX_SERIES_BINS
    assert series == pytest.approx([16.0] * MAX_SERIES_BINS, rel=1e-3)


COMMS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"),
                min_size=0, max_size=16)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(COMMS, st.integers(0, 2**40), st.integers(0, 2**40))
def test_process_stat_is_read_past_any_command_name(comm, utime, stime) -> None:
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "10", "0", "0", "0", str(utime),
              str(stime), "0", "0", "20", "0", "3"]  # fmt: skip
    line = f"4242 ({comm}) {' '.join(fields)}\n".encode()
    assert process_cpu_seconds(line) == (utime + stime) / CLOCK_TICKS


@pytest.mark.parametrize("bad", [b"", b"4242 (x) S 1 2", b"4242 (x) S 1 2 3 0 -1 4 5 6 7 8 a b"])
def test_a_stat_line_that_is_not_one_is_refused(bad) -> None:
    with pytest.raises(ValueError):
        process_cpu_seconds(bad)


def test_this_process_cpu_time_agrees_with_psutil() -> None:
    sum(range(3 * 10**6))
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        ours = process_cpu_seconds(f.read())
    times = psutil.Process().cpu_times()
    assert ours <= times.user + times.system + 1e-9
    assert ours == pytest.approx(times.user + times.system, abs=0.05)


def _proc(root, machine_ticks: list[int], own_ticks: tuple[int, int], pid: int = 77) -> None:
    (root / str(pid)).mkdir(parents=True, exist_ok=True)
    cpu = " ".join(str(t) for t in machine_ticks)
    (root / "stat").write_text(f"cpu  {cpu}\ncpu0 {cpu}\nintr 1 2\n")
    own = f"{pid} (py (thon)) S 1 1 1 0 -1 0 0 0 0 0 {own_ticks[0]} {own_ticks[1]} 0 0 20 0 9\n"
    (root / str(pid) / "stat").write_text(own)


def test_other_processes_cpu_time_from_a_procfs_tree(tmp_path) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
    _proc(tmp_path, [1000, 10, 500, 9000, 50, 5, 5, 0, 0, 0], (300, 100))
    clock = CpuClock(tmp_path, pid=77)
    clock.start()
    # busy +400 ticks (user 250, system 100, steal 50; idle and iowait do not count), ours +150
    _proc(tmp_path, [1250, 10, 600, 9500, 90, 5, 5, 50, 20, 0], (400, 150))
    assert clock.other_s() == pytest.approx((400 - 150) / CLOCK_TICKS)
    assert CpuClock(tmp_path / "missing").read() is None


def _run(**fields) -> RunScore:
    return RunScore("r", "m", "h", "tensorflow", "synthetic", "finished", 0, 10 * S, **fields)


def _flagged(run: RunScore, word: str) -> list[str]:
    return [f for f in steadiness.flags(run) if f.startswith(word)]


def test_a_stall_is_judged_against_the_median_batch_and_a_floor() -> None:
    assert _flagged(_run(stall_s=3.0, latency_p50_s=1.0), "unsteady: no batch")
    assert not _flagged(_run(stall_s=2.9, latency_p50_s=1.0), "unsteady")  # under 3x
    assert not _flagged(_run(stall_s=0.9, latency_p50_s=0.01), "unsteady")  # under 1 s
    (flag,) = _flagged(_run(stall_s=8.5, latency_p50_s=0.5), "unsteady")
    assert "8.50 s, 17x the median batch time" in flag


def test_each_flag_fires_past_its_threshold_only() -> None:
    steady = _run(throughput_series=[10.0, 11.0, 9.0], other_cpu_s=4.9, idle_w=20.0,
                  idle_w_after=21.9, power_drift_pct=-9.9, cooldown_s=2.0,
                  cooldown_reached=True)  # fmt: skip
    assert steadiness.flags(steady) == []
    shaky = _run(throughput_series=[10.0, 10.0, 0.0], other_cpu_s=5.1, idle_w=20.0,
                 idle_w_after=17.9, power_drift_pct=10.1, cooldown_s=30.0,
                 cooldown_reached=False)  # fmt: skip
    assert [f.split(":")[0] for f in steadiness.flags(shaky)] == [
        "unsteady", "power drift", "busy machine", "idle moved", "cool-down timed out"
    ]  # fmt: skip
    assert shaky.throughput_cv == pytest.approx(math.sqrt(2) / 2)
    assert (shaky.other_cpu_cores, shaky.idle_moved_pct) == pytest.approx((0.51, -10.5))


def test_a_window_too_short_for_its_slowest_sensor(store) -> None:
    """A 5 s window read by NVML (updating every 100 ms) and RAPL (1 ms): 50 NVML updates."""
    times = [98.0 + 0.5 * i for i in range(20)]
    add_power(store, "lab", "rapl", "package-0", times, [30.0] * 20)
    add_power(store, "lab", "nvml", "gpu0", times, [200.0] * 20)
    add_events(store, "short", "net", "lab", 100.0, 5.0)
    add_power(store, "lab", "rapl", "package-0", [t + 100 for t in times], [30.0] * 20)
    add_events(store, "cpu only", "net", "lab", 200.0, 5.0)
    runs = {r.run_id: r for r in load_runs(store)}
    short, cpu_only = runs["short"], runs["cpu only"]
    assert short.sensor_updates == pytest.approx(50.0)
    assert "too short for its sensors: 50 updates of nvml (every 0.1 s) in the window; 100 or " \
           "more are needed" in short.flags  # fmt: skip
    assert cpu_only.sensor_updates == pytest.approx(5000.0) and cpu_only.flags == []


def test_the_sensor_period_the_manifest_recorded_is_the_one_judged(store) -> None:
    """A GPU read through dcgm-exporter, whose period is its configured scrape interval (not
    in the registry), recorded in the run's manifest as 1 s: a 20 s window has 20 updates, too
    few; a run without a manifest has no known period for it, and no such flag."""
    times = [95.0 + 0.5 * i for i in range(60)]
    add_power(store, "lab", "dcgm", "gpu0", times, [250.0] * 60)
    manifest = json.dumps({"sources": [{"name": "dcgm", "cadence_s": 1.0, "update_s": 1.0}]})
    for run_id, start in (("recorded", RunStart(manifest=manifest)), ("unrecorded", RunStart())):
        tags = RunTags(run_id, "net", "tensorflow", "synthetic", "lab")
        write_event(store, tags, start, 100 * S)
        write_event(store, tags, RunEnd(inferences=100, duration_s=20.0), 120 * S)
    store.flush()
    runs = {r.run_id: r for r in load_runs(store)}
    recorded, unrecorded = runs["recorded"], runs["unrecorded"]
    assert steadiness.sensor_period(recorded, "dcgm") == 1.0
    assert recorded.sensor_updates == pytest.approx(20.0)
    assert any(
        f.startswith("too short for its sensors: 20 updates of dcgm") for f in recorded.flags
    )
    assert steadiness.sensor_period(unrecorded, "dcgm") is None
    assert unrecorded.sensor_updates is None
    assert not any(f.startswith("too short") for f in unrecorded.flags)


def test_power_drift_from_the_stored_samples(store) -> None:
    """Power rising from 50 to 70 W over a 10 s window: +20 W over a mean of 60 W."""
    times = [95.0 + 0.5 * i for i in range(41)]
    add_power(store, "lab", "rapl", "package-0", times, [50 + 2 * max(0, min(10, t - 100))
                                                         for t in times])  # fmt: skip
    add_events(store, "ramp", "net", "lab", 100.0, 10.0)
    (run,) = load_runs(store)
    assert run.power_drift_pct == pytest.approx(100 * 20 / 60, rel=1e-9)
    assert "power drift: +33.3% over the window" in " ".join(run.flags)
    assert score_point(run).fields["power_drift_pct"] == pytest.approx(100 * 20 / 60)


def test_steadiness_is_in_runs_json_and_the_score_point(tmp_path, capsys) -> None:
    with SQLiteStore(tmp_path / "s.db") as sqlite:
        _steadiness_in_json(sqlite, capsys)


def _steadiness_in_json(sqlite: SQLiteStore, capsys: pytest.CaptureFixture) -> None:
    add_power(sqlite, "lab", "rapl", "package-0", [98.0 + i for i in range(15)], [30.0] * 15)
    tags = RunTags("steady?", "net", "tensorflow", "synthetic", "lab")
    write_event(sqlite, tags, RunStart(cooldown_s=4.5, cooldown_reached=0), 100 * S)
    end = RunEnd(inferences=800, top1=0.7, duration_s=10.0, latency_p50_s=0.1,
                 latency_p90_s=0.12, latency_p99_s=0.2, stall_s=0.25,
                 throughput_series=json.dumps([80.0] * 9 + [40.0]), other_cpu_s=1.5)  # fmt: skip
    write_event(sqlite, tags, end, 110 * S)
    sqlite.flush()
    assert scoring_main(["runs", "--store", f"sqlite:///{sqlite.path}", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["runs"]
    assert doc["throughput_series"] == [80.0] * 9 + [40.0]
    assert (doc["latency_p99_s"], doc["stall_s"], doc["cooldown_reached"]) == (0.2, 0.25, False)
    assert doc["throughput_cv"] == pytest.approx(12 / 76)  # steady enough
    assert doc["other_cpu_cores"] == pytest.approx(0.15)
    assert doc["flags"] == ["cool-down timed out: power was not back near idle after 4.5 s"]
    (run,) = load_runs(sqlite)
    point = score_point(run).fields
    assert (point["latency_p50_s"], point["cooldown_s"], point["sensor_updates"]) == (
        0.1, 4.5, pytest.approx(10_000.0)
    )  # fmt: skip
    assert "throughput_series" not in point  # the series stays in the end event


@pytest.mark.parametrize("text", ["[1, -2]", '{"a": 1}', "[1, true]", "not json", "[NaN]"])
def test_a_malformed_series_is_no_series(text) -> None:
    assert steadiness.parse_series(text) is None
    assert steadiness.parse_series("[1, 2.5]") == [1.0, 2.5]


def test_the_report_draws_a_throughput_strip_under_the_power_chart(tmp_path) -> None:
    from scoring.charts import throughput_chart
    from scoring.report import write_report

    with SQLiteStore(tmp_path / "s.db") as store:
        add_power(store, "lab", "rapl", "package-0", [98.0 + i for i in range(15)], [30.0] * 15)
        tags = RunTags("strip <run>", "net", "tensorflow", "synthetic", "lab")
        write_event(store, tags, RunStart(), 100 * S)
        series = json.dumps([80.0] * 7 + [0.0] * 2 + [80.0])
        end = RunEnd(inferences=800, duration_s=10.0, latency_p50_s=0.1, latency_p99_s=0.2,
                     stall_s=2.5, throughput_series=series)  # fmt: skip
        write_event(store, tags, end, 110 * S)
        add_events(store, "no series", "net", "lab", 100.0, 10.0)
        runs = load_runs(store)
        write_report(store, tmp_path / "report", runs, title="strips")
    page = (tmp_path / "report" / "index.html").read_text()
    strip = page.index('alt="throughput over time of run strip &lt;run&gt;"')
    assert page.index('alt="power over time of run strip &lt;run&gt;"') < strip
    assert page.count('alt="throughput over time of run') == 1  # none without a series
    assert 'data-images-expected="4"' in page  # Pareto, two power charts, one strip
    by_id = {r.run_id: r for r in runs}
    assert throughput_chart(by_id["strip <run>"]).startswith(b"\x89PNG")
    assert throughput_chart(by_id["no series"]) is None


def test_cooldown_without_an_idle_baseline_is_one_line_and_exit_2(capsys) -> None:
    from benchmark.__main__ import main as benchmark_main

    assert benchmark_main(["run", "--model", "digits_cnn", "--cooldown", "30"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--cooldown" in err and "--idle" in err
    assert "Traceback" not in err
