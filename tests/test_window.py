"""Energy of a window: counters interpolated at the edges, power integrated, coverage, totals."""

from __future__ import annotations

import pytest

from exporters.schema import Point, energy_tags
from exporters.window import counter_energy, power_energy, window_energy

S = 1_000_000_000


def test_counter_energy_interpolates_edges_exactly() -> None:
    times = [0, S, 2 * S, 3 * S]
    totals = [0.0, 10.0, 30.0, 60.0]  # 10 W, 20 W, 30 W
    joules, covered = counter_energy(times, totals, S // 2, 5 * S // 2)
    assert joules == pytest.approx(5 + 20 + 15)
    assert covered == 2 * S


def test_counter_drop_is_an_agent_restart_and_its_gap_is_not_covered() -> None:
    times = [0, S, 2 * S, 5 * S, 6 * S]
    totals = [0.0, 10.0, 20.0, 0.0, 10.0]
    joules, covered = counter_energy(times, totals, 0, 6 * S)
    assert joules == pytest.approx(30.0)
    assert covered == 3 * S


def test_power_energy_is_trapezoid_and_skips_gaps() -> None:
    times = [0, S, 2 * S, 10 * S, 11 * S]
    watts = [10.0, 20.0, 20.0, 5.0, 5.0]
    joules, covered = power_energy(times, watts, 0, 11 * S, gap_ns=3 * S)
    assert joules == pytest.approx(15 + 20 + 5)
    assert covered == 3 * S


def test_power_energy_clips_to_the_window() -> None:
    joules, covered = power_energy([0, 2 * S], [0.0, 20.0], S, 2 * S, gap_ns=3 * S)
    assert joules == pytest.approx(15.0)  # 10 W at 1 s rising to 20 W at 2 s
    assert covered == S


def _series(store, source, domain, times_s, estimated=False, **columns):
    tags = {**energy_tags(source, domain, estimated), "host": "lab1"}
    points = []
    for i, t in enumerate(times_s):
        fields = {name: values[i] for name, values in columns.items()}
        points.append(Point("energy", tags, fields, int(t * S)))
    store.write(points)
    store.flush()


def test_window_totals_count_packages_dram_gpus_not_nested_or_psys(store) -> None:
    ts = [100 + 0.5 * i for i in range(21)]
    _series(store, "rapl", "package-0", ts, joules_total=[20.0 * (t - 100) for t in ts])
    _series(store, "rapl", "core-0", ts, joules_total=[15.0 * (t - 100) for t in ts])
    _series(store, "rapl", "dram-0", ts, joules_total=[2.0 * (t - 100) for t in ts])
    _series(store, "rapl", "psys", ts, joules_total=[40.0 * (t - 100) for t in ts])
    _series(store, "nvml", "gpu0", ts, watts=[100.0] * 21)
    _series(store, "dcgm", "gpu0", ts, watts=[100.0] * 21)
    result = window_energy(store, 102 * S, 108 * S)
    by_domain = {(d.source, d.domain): d for d in result.domains}
    assert by_domain["rapl", "package-0"].joules == pytest.approx(120.0)
    assert by_domain["nvml", "gpu0"].method == "power"
    assert by_domain["nvml", "gpu0"].joules == pytest.approx(600.0)
    assert {(d.source, d.domain) for d in result.counted} == {
        ("rapl", "package-0"),
        ("rapl", "dram-0"),
        ("nvml", "gpu0"),
    }
    assert result.total_joules == pytest.approx(120 + 12 + 600)
    assert result.coverage == 1.0 and not result.estimated
    roles = {(d.source, d.domain): d.role for d in result.domains}
    assert roles == {("rapl", "package-0"): "counted", ("rapl", "core-0"): "nested",
                     ("rapl", "dram-0"): "counted", ("rapl", "psys"): "platform",
                     ("nvml", "gpu0"): "gpu", ("dcgm", "gpu0"): "duplicate"}  # fmt: skip
    doc = {(d["source"], d["domain"]): d for d in result.to_dict()["domains"]}
    assert (doc["dcgm", "gpu0"]["role"], doc["dcgm", "gpu0"]["counted"]) == ("duplicate", False)
    assert (doc["nvml", "gpu0"]["role"], doc["nvml", "gpu0"]["counted"]) == ("gpu", True)


def test_model_estimate_counts_only_without_rapl_and_says_so(store) -> None:
    ts = [i * 0.1 for i in range(101)]
    _series(store, "model", "cpu-estimate", ts, estimated=True, joules_total=[30 * t for t in ts])
    result = window_energy(store, 1 * S, 9 * S)
    assert result.total_joules == pytest.approx(240.0)
    assert result.estimated
    _series(store, "rapl", "package-0", ts, joules_total=[25 * t for t in ts])
    result = window_energy(store, 1 * S, 9 * S)
    assert result.total_joules == pytest.approx(200.0)
    assert not result.estimated
    assert [d.role for d in result.domains] == ["duplicate", "counted"]  # model, rapl


def test_partly_covered_window_reports_its_coverage(store) -> None:
    ts = [10 + 0.1 * i for i in range(51)]  # samples from 10 s to 15 s only
    _series(store, "rapl", "package-0", ts, joules_total=[10 * (t - 10) for t in ts])
    result = window_energy(store, 5 * S, 15 * S)
    assert result.coverage == pytest.approx(0.5)
    assert result.total_joules == pytest.approx(50.0)


def test_counter_and_measured_power_disagreeing_is_flagged(store) -> None:
    ts = [i * 0.1 for i in range(101)]
    _series(store, "nvml", "gpu0", ts, joules_total=[100 * t for t in ts], watts=[100.0] * 101)
    _series(store, "nvml", "gpu1", ts, joules_total=[100 * t for t in ts], watts=[80.0] * 101)
    result = window_energy(store, 1 * S, 9 * S)
    flags = {d.domain: (d.method, d.mismatch) for d in result.domains}
    assert flags == {"gpu0": ("counter", False), "gpu1": ("counter", True)}
    gpu1 = next(d for d in result.domains if d.domain == "gpu1")
    assert gpu1.power_joules == pytest.approx(640.0)


def test_a_stretch_the_sampler_missed_is_no_disagreement(store) -> None:
    """Power sampled every 0.1 s but for a 3 s stall (the sampler starved on a loaded machine):
    power covers 5 of the window's 8 s. Counter and power are compared over those 5 s, where
    they agree; power 20% low over the same stretches is still flagged."""
    ts = [i * 0.1 for i in range(101) if not 30 < i < 60]
    _series(store, "nvml", "gpu0", ts, joules_total=[100 * t for t in ts], watts=[100.0] * len(ts))
    _series(store, "nvml", "gpu1", ts, joules_total=[100 * t for t in ts], watts=[80.0] * len(ts))
    result = window_energy(store, 1 * S, 9 * S)
    by = {d.domain: d for d in result.domains}
    assert by["gpu0"].joules == pytest.approx(800.0)  # the counter knows the stall's energy
    assert by["gpu0"].power_joules == pytest.approx(500.0)  # the power integral does not
    assert (by["gpu0"].mismatch, by["gpu1"].mismatch) == (False, True)


def test_window_must_end_after_start(store) -> None:
    with pytest.raises(ValueError):
        window_energy(store, 5 * S, 5 * S)


def test_read_columns_holds_what_read_holds(store) -> None:
    tags = {"host": "lab1", "domain": "d"}
    store.write(
        [
            Point("m", tags, {"a": 1.5, "b": True}, 10),
            Point("m", tags, {"a": 2.5}, 20),
            Point("m", {**tags, "domain": "e"}, {"b": False}, 15),
        ]
    )
    store.flush()
    cols = {c.tags["domain"]: c for c in store.read_columns("m", 0, 100, fields=("a", "b"))}
    assert cols["d"].times == [10, 20] and cols["d"].values == {"a": [1.5, 2.5], "b": [True, None]}
    assert cols["e"].column("b") == ([15], [False]) and cols["e"].column("a") == ([], [])
    assert store.read_columns("m", 0, 100, tags={"domain": "nope"}, fields=("a",)) == []


@pytest.mark.parametrize(
    "host", ["lab' OR host =~ /.*/ --", 'lab" ; DROP DATABASE x', "a b,c=d\\e", "ü ✓"]
)
def test_a_hostile_host_selects_exactly_its_own_domains(store, host) -> None:
    ts = [0.1 * i for i in range(21)]
    for name in (host, "other"):
        tags = {**energy_tags("rapl", "package-0"), "host": name}
        joules = 10.0 if name == host else 99.0
        store.write(Point("energy", tags, {"joules_total": joules * t}, int(t * S)) for t in ts)
    store.flush()
    result = window_energy(store, S // 2, 3 * S // 2, host=host)
    assert [(d.host, d.domain) for d in result.domains] == [(host, "package-0")]
    assert result.total_joules == pytest.approx(10.0)
    assert {d.host for d in window_energy(store, S // 2, 3 * S // 2).domains} == {host, "other"}
