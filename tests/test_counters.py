"""Counter totals: wraparound, resets and rates, as the agent applies them."""

from __future__ import annotations

import pytest

from exporters.counters import CounterTotals, counter_delta
from exporters.schema import Counter, Reading

WRAP = 262_143_328_850  # a real Intel package's max_energy_range_uj


def reading(raw: float, wrap: float | None = WRAP) -> Reading:
    counter = Counter(raw=raw, scale=1e-6, wrap=wrap, rate_field="watts")
    return Reading("energy", {"domain": "package-0"}, counters={"joules_total": counter})


def test_first_reading_starts_at_zero_without_rate() -> None:
    assert CounterTotals().fields(reading(5_000_000), 0) == {"joules_total": 0.0}


def test_total_and_rate_follow_the_counter() -> None:
    totals = CounterTotals()
    totals.fields(reading(1_000_000), 0)
    out = totals.fields(reading(3_000_000), 100_000_000)  # 2 J in 0.1 s
    assert out["joules_total"] == pytest.approx(2.0)
    assert out["watts"] == pytest.approx(20.0)


def test_wraparound_counts_the_energy_across_the_rollover() -> None:
    totals = CounterTotals()
    totals.fields(reading(WRAP - 1_000_000), 0)
    out = totals.fields(reading(2_000_000), 1_000_000_000)
    assert out["joules_total"] == pytest.approx(3.0)
    assert (totals.wraps, totals.resets) == (1, 0)


def test_reset_counts_from_zero_and_is_recorded() -> None:
    totals = CounterTotals()
    totals.fields(reading(100_000_000_000), 0)  # a rollover would imply > half the range
    out = totals.fields(reading(4_000_000), 1_000_000_000)
    assert out["joules_total"] == pytest.approx(4.0)
    assert (totals.wraps, totals.resets) == (0, 1)


def test_counter_without_range_treats_every_drop_as_reset() -> None:
    assert counter_delta(100, 40, None) == (40, "reset")
    assert counter_delta(100, 140, None) == (40, "ok")
    assert counter_delta(WRAP - 10, 5, WRAP) == (15, "wrap")


def test_totals_stay_monotonic_over_many_wraps() -> None:
    totals, raw, last, expected = CounterTotals(), 0, -1.0, 0.0
    totals.fields(reading(raw, wrap=1_000_000), 0)
    for step in range(1, 200):
        raw = (raw + 300_000) % 1_000_000
        expected += 0.3
        value = totals.fields(reading(raw, wrap=1_000_000), step * 10**8)["joules_total"]
        assert value > last
        last = value
    assert last == pytest.approx(expected)


def test_series_are_kept_apart() -> None:
    totals = CounterTotals()
    other = Reading("energy", {"domain": "dram-0"}, counters={"joules_total": Counter(raw=10.0)})
    totals.fields(reading(0), 0)
    totals.fields(other, 0)
    assert totals.fields(reading(1_000_000), 10**9)["joules_total"] == pytest.approx(1.0)
    second = Reading("energy", {"domain": "dram-0"}, counters={"joules_total": Counter(raw=15.0)})
    assert totals.fields(second, 10**9)["joules_total"] == pytest.approx(5.0)


def test_float_noise_is_not_a_reset() -> None:
    totals = CounterTotals()
    busy = Reading("cpu", {"cpu": "1"}, counters={"busy_seconds_total": Counter(raw=2269.01)})
    wobble = Reading(
        "cpu", {"cpu": "1"}, counters={"busy_seconds_total": Counter(raw=2269.0099999999993)}
    )
    totals.fields(busy, 0)
    assert totals.fields(wobble, 10**9)["busy_seconds_total"] == 0.0
    assert totals.resets == 0
