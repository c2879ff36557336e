"""The energy-optimal point, the Pareto front and rankings at the best point (scoring.sweep),
as properties over random sweeps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scoring.runs import RunScore
from scoring.sweep import SweepPoint, at_best_points, best_point, pareto_front, sweeps

ENERGY = st.one_of(st.floats(0.001, 1000.0), st.sampled_from([0.5, 1.0, 2.0]))
LATENCY = st.one_of(st.none(), st.floats(0.0, 10.0), st.sampled_from([0.01, 0.02]))


@st.composite
def sweep_points(draw: st.DrawFn, hosts: int = 1, models: int = 1) -> list[SweepPoint]:
    n = draw(st.integers(0, 12))
    return [
        SweepPoint(
            "sw", f"r{i}", f"h{draw(st.integers(0, hosts - 1))}",
            f"m{draw(st.integers(0, models - 1))}", "tensorflow", "fp32", "",
            draw(st.sampled_from([1, 8, 32])), draw(ENERGY), draw(st.floats(1, 1e4)),
            draw(LATENCY),
        )
        for i in range(n)
    ]  # fmt: skip


def dominates(a: SweepPoint, b: SweepPoint) -> bool:
    no_worse = a.uwh_per_inference <= b.uwh_per_inference and a.latency_p99_s <= b.latency_p99_s
    better = a.uwh_per_inference < b.uwh_per_inference or a.latency_p99_s < b.latency_p99_s
    return no_worse and better


@given(sweep_points())
def test_the_front_is_exactly_the_non_dominated_points(points: list[SweepPoint]) -> None:
    front = pareto_front(points)
    timed = [p for p in points if p.latency_p99_s is not None]
    assert {p.run_id for p in front} == {
        p.run_id for p in timed if not any(dominates(q, p) for q in timed)
    }
    energies = [p.uwh_per_inference for p in front]
    assert energies == sorted(energies)
    latencies = [p.latency_p99_s for p in front]  # the trade-off: latency falls as energy rises
    assert latencies == sorted(latencies, reverse=True)


@given(sweep_points())
def test_the_best_point_has_the_least_energy_and_is_on_the_front(points) -> None:
    best = best_point(points)
    if not points:
        assert best is None
        return
    assert best.uwh_per_inference == min(p.uwh_per_inference for p in points)
    ties = [p for p in points if p.uwh_per_inference == best.uwh_per_inference]
    timed = [p.latency_p99_s for p in ties if p.latency_p99_s is not None]
    assert best.latency_p99_s == (min(timed) if timed else None)
    if best.latency_p99_s is not None:
        assert best in pareto_front(points)


@given(sweep_points(hosts=2, models=3))
def test_each_model_on_each_machine_has_its_own_best_and_front(points) -> None:
    groups = sweeps(points)
    assert sum(len(s.points) for s in groups) == len(points)
    for s in groups:
        assert all((p.host, p.model) == (s.host, s.model) for p in s.points)
        assert s.best == best_point(s.points) and s.front == pareto_front(s.points)


def _run(run_id: str, host: str, model: str) -> RunScore:
    return RunScore(run_id, model, host, "tensorflow", "synthetic", "finished", 0, 1)


@given(sweep_points(hosts=2, models=3), st.integers(0, 3))
def test_a_ranking_at_best_points_keeps_each_swept_models_best_run_only(points, others) -> None:
    runs = [_run(p.run_id, p.host, p.model) for p in points]
    runs += [_run(f"fixed{i}", "h0", f"unswept{i}") for i in range(others)]
    kept = at_best_points(runs, points)
    best = {(s.host, s.model): s.best.run_id for s in sweeps(points)}
    assert sorted(r.run_id for r in kept) == sorted(
        [*best.values(), *(f"fixed{i}" for i in range(others))]
    )


def test_a_point_without_latency_is_never_on_the_front_but_can_be_best_unlike_one_unscored(
) -> None:  # fmt: skip
    fast = SweepPoint("s", "a", "h", "m", "torch", "fp16", "on", 128, 1.0, 900.0, None)
    slow = SweepPoint("s", "b", "h", "m", "torch", "fp32", "", 1, 3.0, 90.0, 0.004)
    unscored = SweepPoint("s", "c", "h", "m", "torch", "fp32", "", 8, None, 500.0, 0.001)
    assert best_point([fast, slow, unscored]) is fast
    assert pareto_front([fast, slow, unscored]) == [slow]
    assert fast.setting == "torch fp16 jit on, batch 128"
    assert fast.as_dict()["setting"] == fast.setting
