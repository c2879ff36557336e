"""The statistics of ``make perf``'s inference slowdown (perf/slowdown_stats.py), on simulated
blocks whose cost is known: batch times drifting as this VM's do (a slow random walk and 10%
noise a block), plus exactly ``k`` seconds for each second the watched threads ran."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "perf"))

from slowdown_stats import Block, dose_response, paired

BASE_S = 0.15  # a batch, nothing beside it
BATCHES = 3


def simulate(k: float, shares: dict[str, float], rounds: int, seed: int) -> dict[str, list[Block]]:
    """``rounds`` rounds of a block of each arm; an arm's threads run ``share`` of each batch's
    base time (as slow as the machine is then), and each of their seconds adds ``k`` seconds to
    the batch. The machine's speed drifts from round to round and wanders 10% a batch."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Block]] = {a: [] for a in ("off", *shares)}
    speed = 1.0
    for _ in range(rounds):
        speed *= float(np.exp(rng.normal(0, 0.02)))
        for arm, share in (("off", 0.0), *shares.items()):
            noise = np.exp(rng.normal(0, 0.1, BATCHES))
            cpu = np.full(BATCHES, share * BASE_S * speed)  # a slower machine, slower threads
            out[arm].append(Block(BASE_S * speed * noise + k * cpu, cpu, float(cpu.sum())))
    return out


@pytest.mark.parametrize("k", [0.3, 1.0, 3.0])
def test_dose_response_scales_a_known_cost_down_from_larger_doses(k: float) -> None:
    shares = {"agent": 0.01, "agent*4": 0.04, "agent*16": 0.16}
    data = simulate(k, shares, rounds=80, seed=round(10 * k))
    fitted = dose_response({a: data[a] for a in shares}, data["off"], "agent")
    true_pct = 100 * k * 0.01
    lo, hi = fitted["ci95_pct"]
    # the interval is a few tenths of a point wide where the one arm alone is several points
    assert hi - lo < 0.4
    assert abs(fitted["slowdown_pct"] - true_pct) < hi - lo
    assert fitted["doses"]["agent*16"]["dose_pct"] == pytest.approx(16, rel=0.15)
    alone = paired(data["agent"], data["off"])["ci95_pct"]
    assert alone[1] - alone[0] > 3 * (hi - lo)


def test_dose_response_covers_the_true_slowdown_about_95_times_in_100() -> None:
    shares = {"agent": 0.01, "agent*8": 0.08}
    hits = 0
    for seed in range(100):
        data = simulate(1.0, shares, rounds=40, seed=seed)
        lo, hi = dose_response({a: data[a] for a in shares}, data["off"], "agent")["ci95_pct"]
        hits += lo <= 1.0 <= hi
    assert 85 <= hits <= 100


def test_dose_response_sees_no_cost_where_there_is_none() -> None:
    shares = {"agent": 0.01, "agent*16": 0.16}
    data = simulate(0.0, shares, rounds=60, seed=7)
    fitted = dose_response({a: data[a] for a in shares}, data["off"], "agent")
    assert fitted["ci95_pct"][0] < 0 < fitted["ci95_pct"][1]
    assert abs(fitted["k"]) < 0.5


def test_the_doses_of_an_arm_are_found_by_name() -> None:
    # inference_slowdown imports Keras models: read its families() without running anything
    from inference_slowdown import families

    names = ["off", "agent", "agent:normal", "agent*4", "agent*16", "load:0.5", "load:10"]
    assert families(names) == {
        "load:0.5": ["load:0.5", "load:10"],
        "agent": ["agent", "agent*4", "agent*16"],
    }
    assert families(["off", "agent:normal*4", "load:0.5"]) == {}  # no base arm, one load
