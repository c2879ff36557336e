"""Times on the command line: RFC 3339 with nanoseconds, epoch ns, relative."""

from __future__ import annotations

import pytest

from exporters.errors import UsageError
from exporters.times import MAX_TIME_NS, format_time, parse_time


def test_rfc3339_keeps_nanoseconds_and_zones() -> None:
    assert parse_time("2026-11-29T10:00:00.123456789Z") == 1_795_946_400_123_456_789
    assert parse_time("2026-11-29T11:00:00+01:00") == 1_795_946_400_000_000_000


def test_round_trip_is_exact() -> None:
    t = 1_795_946_400_000_000_042
    assert parse_time(format_time(t)) == t


def test_epoch_now_and_relative() -> None:
    assert parse_time("1700000000000000000") == 1_700_000_000_000_000_000
    assert parse_time("now", now_ns=5 * 10**18) == 5 * 10**18
    assert parse_time("-15m", now_ns=5 * 10**18) == 5 * 10**18 - 900 * 10**9


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-29", "-5y", ""])
def test_bad_times_name_the_accepted_forms(bad: str) -> None:
    with pytest.raises(UsageError, match="RFC 3339"):
        parse_time(bad)


def test_the_store_s_range_is_accepted_to_the_last_nanosecond() -> None:
    assert parse_time("1970-01-01T00:00:00Z") == 0
    assert parse_time("2262-04-11T23:47:16.854775807Z") == MAX_TIME_NS == 2**63 - 1
    assert parse_time(str(MAX_TIME_NS)) == MAX_TIME_NS
    assert parse_time("-1.5s", now_ns=2 * 10**9) == 5 * 10**8


@pytest.mark.parametrize(
    "outside",
    [
        "1969-12-31T23:59:59Z",  # before the epoch
        "2262-04-11T23:47:16.854775808Z",  # one past a signed 64-bit integer
        "2263-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",  # an offset that takes it further out
        str(2**63),
        "9" * 5000,  # more digits than int() takes
        "-99999999999d",
        "-" + "9" * 400 + "d",  # a float would overflow to inf
        "-2s",  # now is 1 s after the epoch
    ],
)
def test_a_time_outside_what_a_store_holds_is_a_usage_error(outside: str) -> None:
    with pytest.raises(UsageError, match="outside what a store can hold: give a time from 1970"):
        parse_time(outside, now_ns=10**9)


@pytest.mark.parametrize(
    "odd",
    ["١٢", "²", "１２", "2026-11-29T10:00:00.١Z", "٢٠٢٦-١١-٢٩T10:00:00Z", "-١m", "+5m",
     "2026-11-29T10:00:00+99:99"],
)  # fmt: skip
def test_odd_digits_and_offsets_are_not_understood(odd: str) -> None:
    """Digits are ASCII digits: ``int()`` reads ``١٢`` as 12, and fails on ``²``."""
    with pytest.raises(UsageError, match="not understood: use RFC 3339"):
        parse_time(odd)
