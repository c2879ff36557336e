"""95% intervals over passes: the Student-t formula, its coverage, and what rankings, ``scoring
runs``, ``--json`` and the scoring service make of them."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_fixtures import add_run
from scipy import stats

from exporters.schema import SCORE
from exporters.stores.sqlite import SQLiteStore
from scoring.__main__ import main
from scoring.confidence import (
    Interval,
    composite_interval,
    distinguishable,
    group_key,
    groups,
    interval,
)
from scoring.rankings import entries, marks, ranking
from scoring.runs import RunScore, load_runs, repeat_stats
from scoring.scores import composite
from scoring.service import score_pending

finite = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)


@pytest.fixture
def sqlite(tmp_path):
    with SQLiteStore(tmp_path / "s.db") as s:
        yield s


@given(st.lists(finite, min_size=2, max_size=30))
def test_interval_is_scipys_student_t(values: list[float]) -> None:
    got = interval(values)
    sem = stats.sem(values)
    assert got.passes == len(values) and not got.single
    assert got.low <= got.mean <= got.high
    if sem > 0:
        mean = sum(values) / len(values)
        low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
        assert got.low == pytest.approx(low, rel=1e-9, abs=1e-9)
        assert got.high == pytest.approx(high, rel=1e-9, abs=1e-9)


@given(st.lists(finite, min_size=2, max_size=10), finite, st.floats(0.01, 100))
def test_interval_moves_and_scales_with_its_values(values, shift, scale) -> None:
    base = interval(values)
    moved = interval([v * scale + shift for v in values])
    assert moved.low == pytest.approx(base.low * scale + shift, rel=1e-6, abs=1e-6)
    assert moved.high == pytest.approx(base.high * scale + shift, rel=1e-6, abs=1e-6)


def test_interval_covers_the_true_mean_95_percent_of_the_time() -> None:
    """With 3 passes the t quantile is 4.30, a normal one's 1.96 would cover only ~76%."""
    rng = random.Random(13)
    trials = 4000
    covered = sum(
        (ci := interval([rng.gauss(10.0, 1.0) for _ in range(3)])).low <= 10.0 <= ci.high
        for _ in range(trials)
    )
    assert 0.93 < covered / trials < 0.97  # binomial sd at 4000 trials: 0.34%


def test_one_pass_has_no_interval_and_overlaps_say_what_can_be_told() -> None:
    one = interval([5.0])
    assert one.single and one.low is None and one.half_width_share is None
    a, b, c = Interval(10, 9, 11, 3), Interval(10.5, 10.2, 12, 3), Interval(20, 19, 21, 3)
    assert distinguishable(a, b) is False and distinguishable(a, c) is True
    assert distinguishable(one, Interval(5.1, 4, 6, 2)) is False  # inside the other's interval
    assert distinguishable(one, c) is None and distinguishable(one, interval([7.0])) is None
    with pytest.raises(ValueError):
        interval([])


def _lab(store, passes: dict[str, list[float]], host: str = "lab") -> None:
    t = 1000.0
    for model, joules in passes.items():
        for i, j in enumerate(joules):
            add_run(store, f"{host}-{model}.{i}", model, host, t, 10, j)
            t += 20


@pytest.mark.influxdb
def test_runs_intervals_and_rankings_marks(store, capsys) -> None:
    _lab(store, {"close_a": [100, 104, 98], "close_b": [101, 99], "far": [300, 302, 301],
                 "once": [500]})  # fmt: skip
    runs = load_runs(store)
    by_model = {r.model: r for r in runs}
    joules = [100, 104, 98]
    uwh = interval([j / 3.6e-3 / 1000 for j in joules])  # J to uWh, per 1000 inferences
    a = by_model["close_a"]
    assert a.passes == 3 and a.uwh_ci_low == pytest.approx(uwh.low)
    assert a.uwh_ci_high == pytest.approx(uwh.high)
    assert a.uwh_ci_share == pytest.approx((uwh.high - uwh.low) / 2 / uwh.mean)
    assert a.composite_ci_low < a.composite < a.composite_ci_high
    assert by_model["once"].passes == 1 and by_model["once"].uwh_ci_low is None
    ranked = ranking(entries(runs))["lab"]
    assert [e.model for e in ranked] == ["close_b", "close_a", "far", "once"]
    notes = dict(zip([e.model for e in ranked], marks(ranked), strict=True))
    assert notes["close_b"] == ["not distinguishable from #2"]
    assert notes["close_a"] == ["not distinguishable from #1"]
    assert notes["far"] == [] and notes["once"] == ["one pass: no interval"]
    assert marks(ranking(entries(runs), "accuracy")["lab"], "accuracy") == [[]] * 4

    assert main(["runs", "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "not distinguishable from #2" in out and "one pass: no interval" in out
    assert f"[{a.composite_ci_low:.4g}, {a.composite_ci_high:.4g}]" in out
    assert main(["runs", "--store", store.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first = doc["ranked"]["lab"][0]
    assert first["model"] == "close_b" and first["marks"] == ["not distinguishable from #2"]
    assert first["uwh_ci"]["passes"] == 2 and doc["ranked"]["lab"][3]["uwh_ci"]["single"]
    json_a = next(r for r in doc["runs"] if r["run_id"] == "lab-close_a.0")
    assert json_a["uwh_ci_low"] == pytest.approx(uwh.low) and json_a["passes"] == 3


@pytest.mark.influxdb
def test_service_points_carry_the_interval_over_the_passes_scored_so_far(store) -> None:
    _lab(store, {"m": [100, 110]})
    assert len(score_pending(store, now_ns=2**62)) == 2  # one pass: both over both
    add_run(store, "late", "m", "lab", 5000, 10, 95)
    (late,) = score_pending(store, now_ns=2**62)  # the two before from their score points
    points = {p.tags["run_id"]: p.fields for p in store.read(SCORE, 0, 2**62)}
    three, two = interval([j / 3.6 for j in (100, 110, 95)]), interval([100 / 3.6, 110 / 3.6])
    assert points["late"]["passes"] == 3 and late.passes == 3
    assert points["late"]["uwh_ci_low"] == pytest.approx(three.low)
    assert points["late"]["uwh_ci_high"] == pytest.approx(three.high)
    assert points["lab-m.0"]["passes"] == 2  # as of its scoring
    assert points["lab-m.0"]["uwh_ci_high"] == pytest.approx(two.high)
    assert math.isfinite(points["late"]["composite_ci_low"])


@given(st.lists(finite, min_size=2, max_size=10), st.floats(0.01, 1.0))
def test_composite_interval_is_the_energy_interval_turned_over(values, accuracy) -> None:
    uwh = interval(values)
    got = composite_interval(accuracy, uwh)
    assert got.mean == composite(accuracy, uwh.mean) and got.passes == uwh.passes
    assert got.low == pytest.approx(composite(accuracy, uwh.high))
    if uwh.low > 0:
        assert got.high == pytest.approx(composite(accuracy, uwh.low))
    else:  # energy could be near 0: the composite is unbounded above
        assert got.high == math.inf
    assert got.low <= got.mean <= got.high
    assert composite_interval(accuracy, interval(values[:1])).single


def test_entries_composite_sits_in_its_interval_derived_from_the_energys(sqlite, capsys) -> None:
    _lab(sqlite, {"m": [100, 104, 98], "wide": [100, 300]})
    runs = load_runs(sqlite)
    by_model = {e.model: e for e in entries(runs)}
    m, wide = by_model["m"], by_model["wide"]
    assert m.composite_ci.mean == m.composite  # the same centre, not a mean of composites
    assert m.composite_ci.low == pytest.approx(composite(0.75, m.uwh_ci.high))
    assert m.composite_ci.high == pytest.approx(composite(0.75, m.uwh_ci.low))
    run = next(r for r in runs if r.model == "m")
    assert (run.composite_ci_low, run.composite_ci_high) == (m.composite_ci.low,
                                                             m.composite_ci.high)  # fmt: skip
    assert wide.uwh_ci.low < 0 and wide.composite_ci.high == math.inf
    assert wide.composite_ci.low == pytest.approx(composite(0.75, wide.uwh_ci.high))
    assert main(["runs", "--store", sqlite.url, "--json"]) == 0
    ranked = {e["model"]: e for e in json.loads(capsys.readouterr().out)["ranked"]["lab"]}
    assert ranked["wide"]["composite_ci"]["high"] is None  # strict JSON: no Infinity
    assert ranked["m"]["composite_ci"]["mean"] == pytest.approx(m.composite)


def test_service_leaves_an_unbounded_composite_high_out_of_the_point(sqlite) -> None:
    _lab(sqlite, {"wide": [100, 300]})
    score_pending(sqlite, now_ns=2**62)
    fields = [p.fields for p in sqlite.read(SCORE, 0, 2**62)]
    assert all("composite_ci_high" not in f and f["composite_ci_low"] > 0 for f in fields)


def _pass(run_id: str, precision: str, joules: float) -> RunScore:
    return RunScore(run_id=run_id, model="m", host="lab", backend="tensorflow",
                    dataset="synthetic", status="finished", start_ns=0, end_ns=10**10,
                    inferences=1000, top1=0.7, energy_j=joules, precision=precision,
                    batch_size=32)  # fmt: skip


def test_repeats_are_grouped_like_intervals_so_precisions_stay_apart() -> None:
    runs = [_pass("a", "fp32", 100), _pass("b", "fp16", 50), _pass("c", "fp32", 110),
            _pass("d", "fp16", 52)]  # fmt: skip
    stats = repeat_stats(runs)
    assert [(s.precision, s.runs) for s in stats] == [("fp16", 2), ("fp32", 2)]
    keys = [(s.host, s.model, s.dataset, s.backend, s.precision, s.jit, s.batch_size)
            for s in stats]  # fmt: skip
    assert keys == sorted(groups(runs), key=lambda k: tuple(map(str, k)))
    assert stats[0].uwh_mean == pytest.approx(51 / 3.6) and not stats[0].flagged
    assert group_key(runs[0]) != group_key(runs[1])
