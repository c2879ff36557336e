"""Per-run statistics (the paper's Table I), throttling and wall energy, from samples written
one by one: every figure is known exactly, in RunScore, `scoring runs`, the score point and the
report's CSV."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from run_fixtures import add_events, add_power, add_samples

from exporters.stores.sqlite import SQLiteStore
from scoring.report import COLUMNS, write_report
from scoring.runs import load_runs
from scoring.service import score_pending, score_point
from scoring.stats import peak_of_sum

GIB = 2**30
HOST = "gpu-box"
START, SECONDS, INFERENCES, TOP1 = 100.0, 10.0, 5000, 0.8
EDGES = [98.0 + i for i in range(15)]  # energy samples every second, 98 s .. 112 s
MIDS = [99.5 + i for i in range(12)]  # gpu/cpu samples at 99.5 .. 110.5: 10 inside the window


def _bump(peak_at: float, base: float, peak: float) -> list[float]:
    return [peak if t == peak_at else base for t in EDGES]


# Exact figures of the window [100 s, 110 s] (the trapezoid over one-second steps):
PACKAGE_J = 50.0 * 10 + 30.0  # 50 W with an 80 W sample at 105 s: a triangle of 30 J
GPU0_J = 200.0 * 10 + 60.0  # 200 W with 260 W at 103 s
WALL_J = 400.0 * 10 + 50.0  # 400 W with 450 W at 107 s
OUTSIDE = 999.0  # what every series reads just outside the window: never counted
SWPOWERCAP, HWTHERMAL, GPUIDLE = 0x4, 0x40, 0x1


def _gpu(util, mem_util, used_gib, reasons) -> dict:
    throttled = [None if r is None else float(bool(r & 0xEC)) for r in reasons]
    return dict(
        util_pct=[OUTSIDE, *util, OUTSIDE],
        mem_util_pct=[OUTSIDE, *mem_util, OUTSIDE],
        mem_used_bytes=[80.0 * GIB, *(g * GIB for g in used_gib), 80.0 * GIB],
        mem_total_bytes=[80.0 * GIB] * 12,
        clock_event_reasons=[float(SWPOWERCAP), *(None if r is None else float(r)
                                                   for r in reasons), float(SWPOWERCAP)],
        throttled=[1.0, *throttled, 1.0],
    )  # fmt: skip


def build(store, host: str = HOST, run_id: str = "r1") -> None:
    """One run with two GPUs, a package, a nested core, a wall meter and the CPU."""
    add_power(store, host, "rapl", "package-0", EDGES, _bump(105.0, 50.0, 80.0))
    add_power(store, host, "rapl", "core-0", EDGES, [30.0] * 15)  # nested: never counted
    add_power(store, host, "nvml", "gpu0", EDGES, _bump(103.0, 200.0, 260.0))
    add_power(store, host, "ipmi", "wall", EDGES, _bump(107.0, 400.0, 450.0), counter=False)
    tags = {"host": host, "uuid": "GPU-a", "name": "NVIDIA H200"}
    gpu0 = _gpu([80.0] * 5 + [100.0] * 5, [40.0] * 10, [60.0] * 10,
                [0, SWPOWERCAP, SWPOWERCAP, SWPOWERCAP, 0, 0, 0, 0, 0, 0])  # fmt: skip
    gpu1 = _gpu([50.0] * 10, [20.0] * 10, [20.0] * 10,
                [HWTHERMAL, GPUIDLE, 0, 0, 0, 0, 0, 0, 0, 0])  # fmt: skip
    add_samples(store, "gpu", {**tags, "gpu": "0"}, MIDS, **gpu0)
    add_samples(store, "gpu", {**tags, "gpu": "1", "uuid": "GPU-b"}, MIDS, **gpu1)
    usage = [OUTSIDE, *(5.0 + i for i in range(10)), OUTSIDE]  # 5 .. 14: mean 9.5
    add_samples(store, "cpu", {"host": host, "cpu": "total"}, MIDS, usage_pct=usage)
    add_samples(store, "cpu", {"host": host, "cpu": "0"}, MIDS, usage_pct=[100.0] * 12)
    add_events(store, run_id, "resnet50", host, START, SECONDS, INFERENCES, TOP1)


EXPECTED = {
    "energy_j": PACKAGE_J + GPU0_J,
    "energy_wh": (PACKAGE_J + GPU0_J) / 3600,
    "duration_s": 10.0,
    "images_per_s": 500.0,
    "avg_power_w": PACKAGE_J / 10 + GPU0_J / 10,  # 53 + 206
    "peak_power_w": 50.0 + 260.0,  # the sum peaks at 103 s, not at the package's 105 s
    "gpu_power_w": 206.0,
    "gpu_util_pct": (90.0 + 50.0) / 2,
    "gpu_mem_util_pct": (40.0 + 20.0) / 2,
    "gpu_mem_used_bytes": 40.0 * GIB,
    "gpu_mem_used_pct": (75.0 + 25.0) / 2,
    "cpu_util_pct": 9.5,
    "throttled_share": 0.3,  # gpu0: 3 of its 10 samples; gpu1: 1 of 10
    "wall_energy_j": WALL_J,
    "wall_coverage": 1.0,
    "wall_power_w": 405.0,
    "wall_peak_w": 450.0,
    "uwh_per_inference": (PACKAGE_J + GPU0_J) / 3.6e-3 / INFERENCES,
    "wall_uwh_per_inference": WALL_J / 3.6e-3 / INFERENCES,
    "composite": TOP1**2 / ((PACKAGE_J + GPU0_J) / 3.6 / INFERENCES),
    "wall_composite": TOP1**2 / (WALL_J / 3.6 / INFERENCES),
}
FLAG = "GPU 0 throttled 30% of the window (power cap)"


def test_every_figure_of_a_known_run(store) -> None:
    build(store)
    build(store, host="elsewhere", run_id="other")  # another host's samples change nothing
    run = next(r for r in load_runs(store) if r.run_id == "r1")
    for name, want in EXPECTED.items():
        assert getattr(run, name) == pytest.approx(want, rel=1e-12), name
    assert run.flags == [FLAG]
    power = {f"{d.source}:{d.domain}": d for d in run.stats.power}
    assert (power["rapl:package-0"].avg_w, power["rapl:package-0"].peak_w) == pytest.approx(
        (53.0, 80.0)
    )
    assert (power["nvml:gpu0"].avg_w, power["nvml:gpu0"].peak_w) == pytest.approx((206.0, 260.0))
    assert (power["rapl:core-0"].avg_w, power["rapl:core-0"].counted) == (
        pytest.approx(30.0),
        False,
    )
    assert not power["ipmi:wall"].counted and power["ipmi:wall"].samples == 11
    gpus = {g.gpu: g for g in run.stats.gpus}
    assert gpus["0"].util_pct == 90.0 and gpus["1"].util_pct == 50.0
    assert gpus["0"].mem_used_pct == 75.0 and gpus["1"].mem_used_pct == 25.0
    assert gpus["0"].throttled_share == 0.3 and gpus["0"].throttle_labels == ["power cap"]
    assert gpus["1"].throttled_share == 0.1 and gpus["1"].throttle_labels == ["thermal"]
    assert gpus["0"].samples == gpus["1"].samples == 10

    point = score_point(run)
    for name, want in EXPECTED.items():
        if name not in ("composite", "uwh_per_inference"):  # there as before
            assert point.fields[name] == pytest.approx(want, rel=1e-12), name
            assert type(point.fields[name]) is float, name
    assert point.fields["throttle_reasons"] == "power cap"
    assert FLAG in point.fields["flags"]
    domains = json.loads(point.fields["domain_power"])
    assert domains["ipmi:wall"] == {"avg_w": 405.0, "peak_w": 450.0, "counted": False}
    gpu_stats = json.loads(point.fields["gpu_stats"])
    assert gpu_stats["1"]["throttle"] == ["thermal"] and gpu_stats["0"]["util_pct"] == 90.0

    score_pending(store, now_ns=10**12)  # the service writes it, and reads it back the same
    (stored,) = [p for p in store.read("score", 0, 2**62) if p.tags["run_id"] == "r1"]
    assert stored.fields["throttled_share"] == pytest.approx(0.3)
    assert stored.fields["wall_composite"] == pytest.approx(EXPECTED["wall_composite"])


def test_roles_decide_the_totals_the_figures_and_the_chart_series(store) -> None:
    """dcgm reading the GPU NVML reads too changes nothing; counting the wall moves it into
    the total; the power chart draws the counted series and, dashed, the wall."""
    build(store)
    add_power(store, HOST, "dcgm", "gpu0", EDGES, [300.0] * 15)  # NVML reads it: counted once
    (run,) = load_runs(store)
    for name in ("energy_j", "avg_power_w", "peak_power_w", "gpu_power_w", "wall_power_w"):
        assert getattr(run, name) == pytest.approx(EXPECTED[name], rel=1e-12), name
    roles = {f"{d.source}:{d.domain}": d.role for d in run.domains}
    assert roles == {"rapl:package-0": "counted", "rapl:core-0": "nested", "nvml:gpu0": "gpu",
                     "dcgm:gpu0": "duplicate", "ipmi:wall": "wall"}  # fmt: skip
    assert {f"{d.source}:{d.domain}": d.role for d in run.stats.power} == roles

    charts = pytest.importorskip("scoring.charts")
    samples = charts.run_samples(store, run)  # 2 s either side: every sample, 98 s .. 112 s
    assert list(charts.power_series(run, samples)) == ["nvml:gpu0", "rapl:package-0"]
    (wall,) = charts.power_series(run, samples, wall=True).items()
    assert wall[0] == "ipmi:wall" and list(wall[1][0]) == [t - START for t in EDGES]
    assert list(wall[1][1]) == _bump(107.0, 400.0, 450.0)

    (counted,) = load_runs(store, counted=("package-*", "gpu*", "wall"))
    assert counted.energy_j == pytest.approx(PACKAGE_J + GPU0_J + WALL_J)
    assert counted.wall_energy_j is None and counted.wall_power_w is None
    assert {d.domain: d.role for d in counted.domains}["wall"] == "counted"


def test_a_run_without_gpu_or_wall_has_none_of_their_figures(store) -> None:
    """The score points of both kinds of run land in one store: no field changes type."""
    build(store)
    add_power(store, "cpu-box", "rapl", "package-0", EDGES, [20.0] * 15)
    add_events(store, "cpu-only", "resnet50", "cpu-box", START, SECONDS, INFERENCES, TOP1)
    scored = {r.run_id: r for r in score_pending(store, now_ns=10**12)}
    cpu_only = scored["cpu-only"]
    assert cpu_only.energy_j == pytest.approx(200.0) and cpu_only.avg_power_w == pytest.approx(20)
    assert cpu_only.peak_power_w == 20.0 and cpu_only.flags == []
    for name in ("gpu_util_pct", "gpu_power_w", "cpu_util_pct", "throttled_share",
                 "wall_energy_j", "wall_uwh_per_inference", "wall_composite"):  # fmt: skip
        assert getattr(cpu_only, name) is None, name
    points = {p.tags["run_id"]: p for p in store.read("score", 0, 2**62)}
    assert set(points) == {"r1", "cpu-only"}
    assert "gpu_stats" not in points["cpu-only"].fields
    assert "wall_energy_j" not in points["cpu-only"].fields
    assert points["r1"].fields["gpu_util_pct"] == 70.0


def test_wall_is_beside_the_components_never_added(tmp_path) -> None:
    """A package and an IPMI wall meter: the score on either, the total on the package only."""
    with SQLiteStore(tmp_path / "w.db") as store:
        add_power(store, "lab", "rapl", "package-0", EDGES, [60.0] * 15)
        add_power(store, "lab", "ipmi", "wall", EDGES, [150.0] * 15, counter=False)
        add_events(store, "w", "net", "lab", START, SECONDS, inferences=1000, top1=0.5)
        (run,) = load_runs(store)
    assert run.energy_j == pytest.approx(600.0)  # the package alone
    assert run.wall_energy_j == pytest.approx(1500.0) and run.wall_coverage == 1.0
    assert run.uwh_per_inference == pytest.approx(600 / 3.6)
    assert run.wall_uwh_per_inference == pytest.approx(1500 / 3.6)
    assert run.composite == pytest.approx(0.25 / (600 / 3600))
    assert run.wall_composite == pytest.approx(0.25 / (1500 / 3600))
    assert run.gpu_util_pct is None and run.throttled_share is None


def test_wall_samples_that_stop_early_are_flagged(tmp_path) -> None:
    with SQLiteStore(tmp_path / "w.db") as store:
        add_power(store, "lab", "rapl", "package-0", EDGES, [60.0] * 15)
        add_power(store, "lab", "ipmi", "wall", EDGES[:8], [150.0] * 8, counter=False)
        add_events(store, "w", "net", "lab", START, SECONDS)
        (run,) = load_runs(store)
    assert run.wall_coverage == pytest.approx(0.5)
    assert run.flags == ["wall samples cover 50.0% of the window"]


def test_runs_command_and_report_show_the_figures(tmp_path) -> None:
    with SQLiteStore(tmp_path / "c.db") as store:
        build(store)
        runs = load_runs(store)
        write_report(store, tmp_path / "out", runs)
    url = f"sqlite:///{tmp_path}/c.db"
    text = subprocess.run([sys.executable, "-m", "scoring", "runs", "--store", url],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    header, row = text.splitlines()[:2]
    for column in ("avg W", "peak W", "GPU%", "GPUmem%", "CPU%", "thrott", "wall uWh"):
        assert column in header, column
    cells = row.split()
    for value in (
        "259.0",
        "310.0",
        "70",
        "50",
        "10",
        "30%",
        f"{EXPECTED['wall_uwh_per_inference']:.4f}",
    ):
        assert value in cells, (value, row)
    assert FLAG in row
    doc = json.loads(subprocess.run(
        [sys.executable, "-m", "scoring", "runs", "--store", url, "--json"],
        capture_output=True, text=True, check=True).stdout)  # fmt: skip
    (entry,) = doc["runs"]
    for name, want in EXPECTED.items():
        assert entry[name] == pytest.approx(want, rel=1e-12), name
    assert entry["throttle_reasons"] == ["power cap"]
    assert {g["gpu"]: g["throttled_share"] for g in entry["gpus"]} == {"0": 0.3, "1": 0.1}
    assert {f"{p['source']}:{p['domain']}" for p in entry["power"]} == {
        "rapl:package-0", "rapl:core-0", "nvml:gpu0", "ipmi:wall"}  # fmt: skip

    with (tmp_path / "out" / "scores.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert list(row) == [c.header for c in COLUMNS]
    csv_columns = {
        "Wh": "energy_wh", "avg W": "avg_power_w", "peak W": "peak_power_w",
        "GPU W": "gpu_power_w", "GPU util %": "gpu_util_pct",
        "GPU mem util %": "gpu_mem_util_pct", "GPU mem used %": "gpu_mem_used_pct",
        "GPU mem used bytes": "gpu_mem_used_bytes", "CPU util %": "cpu_util_pct",
        "throttled": "throttled_share", "wall joules": "wall_energy_j",
        "wall coverage": "wall_coverage", "wall W": "wall_power_w",
        "wall uWh/inference": "wall_uwh_per_inference", "wall composite": "wall_composite",
    }  # fmt: skip
    for header, name in csv_columns.items():
        assert float(row[header]) == pytest.approx(EXPECTED[name], rel=1e-12), header
    assert row["throttle reasons"] == "power cap"
    assert row["power by domain"] == (
        "ipmi:wall 405.0/450.0 W; nvml:gpu0 206.0/260.0 W; rapl:package-0 53.0/80.0 W"
    )
    page = (tmp_path / "out" / "index.html").read_text()
    for header in ("avg W", "GPU util %", "CPU util %", "throttled", "wall uWh/inference"):
        assert f"<th>{header}</th>" in page, header
    assert "<th>GPU mem used bytes</th>" not in page  # CSV only


def test_peak_of_a_sum_interpolates_between_samples() -> None:
    a = ([0, 10, 20], [10.0, 30.0, 10.0])
    b = ([5, 15], [100.0, 50.0])  # at 10: 75 interpolated
    assert peak_of_sum([a, b], 0, 20) == pytest.approx(max(20 + 100, 30 + 75, 20 + 50))
    assert peak_of_sum([a, b], 11, 20) == pytest.approx(20 + 50)
    assert peak_of_sum([a, ([], [])], 0, 20) is None
    assert peak_of_sum([], 0, 20) is None
