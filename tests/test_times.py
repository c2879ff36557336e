"""Times on the command line: RFC 3339 with nanoseconds, epoch ns, relative."""

from __future__ import annotations

import pytest

from exporters.errors import UsageError
from exporters.times import format_time, parse_time


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
