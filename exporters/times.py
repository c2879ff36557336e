"""Times on the command line and in output: RFC 3339 or epoch nanoseconds, in and out.

Accepted: ``2026-11-29T10:00:00Z``, ``2026-11-29T10:00:00.123456789+01:00``, a bare epoch in
nanoseconds (``1764410400000000000``), ``now``, and ``now`` minus a duration (``-90s``,
``-15m``, ``-2h``, ``-1d``). Nanosecond fractions are kept, which ``datetime`` cannot do alone.
Digits are ASCII digits, and a time must be one a store can hold: from the epoch
(1970-01-01T00:00:00Z) to :data:`MAX_TIME_NS` (2262-04-11T23:47:16.854775807Z, the last
nanosecond a signed 64-bit integer holds).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from fractions import Fraction

from exporters import clock
from exporters.errors import UsageError, shown

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$", re.ASCII
)
_RELATIVE = re.compile(r"^-(\d+)(?:\.(\d+))?(s|m|h|d)$", re.ASCII)
_EPOCH = re.compile(r"^\d+$", re.ASCII)
_DIGITS = 30  # a whole number with more digits is far out of range (and int() limits digits)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EPOCH_START = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME_NS = 2**63 - 1
_FORMS = (
    "use RFC 3339 (2026-11-29T10:00:00Z), epoch nanoseconds, 'now' or a relative time such as -15m"
)


def parse_time(text: str, now_ns: int | None = None) -> int:
    """Epoch nanoseconds for ``text``; :class:`UsageError` naming the accepted forms otherwise,
    or the range a store holds where ``text`` is outside it."""
    now_ns = clock.wall_ns() if now_ns is None else now_ns
    time_ns = _parse(text.strip(), now_ns)
    if time_ns is None:
        raise UsageError(f"time {shown(text)} is not understood: {_FORMS}")
    if not 0 <= time_ns <= MAX_TIME_NS:
        raise UsageError(
            f"time {shown(text)} is outside what a store can hold: give a time from "
            "1970-01-01T00:00:00Z to 2262-04-11T23:47:16Z"
        )
    return time_ns


def _parse(text: str, now_ns: int) -> int | None:
    """Epoch nanoseconds for ``text`` in any of the forms, in range or not; None: no form."""
    if text == "now":
        return now_ns
    if _EPOCH.match(text):
        return _whole(text)
    if m := _RELATIVE.match(text):
        whole, frac, unit = m.groups()
        frac = (frac or "")[:_DIGITS]  # finer than a nanosecond of a day long before
        ago = _whole(whole) + Fraction(int(frac or "0"), 10 ** len(frac))
        return now_ns - round(ago * _UNIT_S[unit] * 1_000_000_000)
    if m := _RFC3339.match(text):
        whole, frac, zone = m.groups()
        zone = "+00:00" if zone in ("Z", "z") else zone
        try:
            moment = datetime.fromisoformat(whole.replace(" ", "T") + zone)
        except ValueError:
            return None
        seconds = (moment - _EPOCH_START) // timedelta(seconds=1)
        return seconds * 1_000_000_000 + int((frac or "").ljust(9, "0"))
    return None


def _whole(digits: str) -> int:
    """The number ``digits`` (ASCII) writes, or one past :data:`MAX_TIME_NS` for a huge one."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _DIGITS else MAX_TIME_NS + 1


def format_time(time_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, the form :func:`parse_time` reads back exactly."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"
