"""Counter totals: wraparound, resets and rates, as the agent applies them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporters.counters import CounterTotals, counter_step
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


def test_reset_starts_a_new_segment_once_the_next_reading_confirms_it() -> None:
    totals = CounterTotals()
    totals.fields(reading(100_000_000_000), 0)  # a rollover would imply > half the range
    assert "joules_total" not in totals.fields(reading(4_000_000), 1_000_000_000)  # held
    out = totals.fields(reading(6_000_000), 2_000_000_000)  # goes on from the held value
    assert out["joules_total"] == 0.0  # a new segment: the energy across the reset is unknown
    assert "watts" not in out
    assert (totals.wraps, totals.resets, totals.glitches) == (0, 1, 0)
    nxt = totals.fields(reading(7_000_000), 3_000_000_000)
    assert nxt["joules_total"] == pytest.approx(1.0)


def test_counter_without_range_holds_every_drop_for_judgement() -> None:
    assert counter_step(100, 40, None) == (0.0, "suspect")
    assert counter_step(100, 140, None) == (40, "ok")
    assert counter_step(WRAP - 10, 5, WRAP) == (15, "wrap")


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


# -- bad readings never become energy ---------------------------------------------------------

RANGE = 100_000_000  # a 100 J counter (microjoules), as on small RAPL zones
CEILING_UW = 200_000_000  # 200 W: the zone's max power, in raw units per second


def rapl(raw: float) -> Reading:
    counter = Counter(raw=raw, scale=1e-6, wrap=RANGE, rate_field="watts", max_rate=CEILING_UW)
    return Reading("energy", {"domain": "package-0"}, counters={"joules_total": counter})


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), RANGE + 1, "garbage"])
def test_one_bad_read_adds_no_energy(bad) -> None:
    totals = CounterTotals()
    totals.fields(rapl(50_000_000), 0)
    totals.fields(rapl(55_000_000), 100_000_000)  # 50 W
    assert "joules_total" not in totals.fields(rapl(bad), 200_000_000)
    out = totals.fields(rapl(65_000_000), 300_000_000)  # the counter goes on
    assert out["joules_total"] == pytest.approx(15.0)
    assert totals.glitches == 1 and totals.resets == 0


def test_a_rise_beyond_the_ceiling_is_a_glitch_not_energy() -> None:
    totals = CounterTotals()
    totals.fields(rapl(10_000_000), 0)
    assert totals.fields(rapl(90_000_000), 100_000_000) == {}  # 800 W for 0.1 s: impossible
    out = totals.fields(rapl(12_000_000), 200_000_000)
    assert out["joules_total"] == pytest.approx(2.0)
    assert totals.glitches == 1


def test_a_wrap_is_told_from_the_ceiling_even_past_half_the_range() -> None:
    # 1.5 s at 60 W: 90 J, most of the 100 J range. Half-range rules take it for a reset.
    totals = CounterTotals()
    totals.fields(rapl(80_000_000), 0)
    out = totals.fields(rapl(70_000_000), 1_500_000_000)
    assert out["joules_total"] == pytest.approx(90.0)
    assert (totals.wraps, totals.resets) == (1, 0)


def test_sampling_too_slowly_to_tell_wraps_apart_is_warned(caplog) -> None:
    totals = CounterTotals()
    totals.fields(rapl(0), 0)
    totals.fields(rapl(10_000_000), 600_000_000)  # 0.6 s apart: 120 J possible, range 100 J
    assert "sample it more often" in caplog.text


@st.composite
def histories(draw):
    """A true power trace read at random intervals, with wraps, glitches and resets."""
    n = draw(st.integers(2, 60))
    steps = []
    for _ in range(n):
        dt = draw(st.floats(0.001, 0.45))  # < range / ceiling: at most one wrap apart
        watts = draw(st.floats(0.0, CEILING_UW / 1e6))
        event = draw(st.sampled_from(["read"] * 8 + ["glitch", "reset"]))
        bad = draw(st.sampled_from([0, -1, RANGE * 3, float("nan"), 12_345_678]))
        steps.append((dt, watts, event, bad))
    return steps


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, RANGE))
def test_energy_is_never_negative_nor_above_the_ceiling_and_exact_without_faults(
    steps, start
) -> None:
    totals, raw, t_ns, true_j = CounterTotals(), float(start), 0, 0.0
    totals.fields(rapl(raw), 0)
    last_total, last_t = 0.0, 0
    faulty = False
    for dt, watts, event, bad in steps:
        t_ns += round(dt * 1e9)
        joules = watts * dt
        true_j += joules
        raw = (raw + joules * 1e6) % RANGE
        if event == "reset":
            raw, faulty = 0.0, True
        value = bad if event == "glitch" else raw
        faulty = faulty or event == "glitch"
        out = totals.fields(rapl(value), t_ns)
        if "joules_total" not in out:
            continue
        total = out["joules_total"]
        if total < last_total:  # a new segment after a reset
            assert total == 0.0
        else:
            elapsed = (t_ns - last_t) / 1e9
            assert total - last_total <= CEILING_UW / 1e6 * (elapsed + 0.005) + 1e-6
        last_total, last_t = total, t_ns
    if not faulty:
        assert last_total == pytest.approx(true_j, rel=1e-9, abs=1e-6)
