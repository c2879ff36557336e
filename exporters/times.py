"""Times on the command line and in output: RFC 3339 or epoch nanoseconds, in and out.

Accepted: ``2026-11-29T10:00:00Z``, ``2026-11-29T10:00:00.123456789+01:00``, a bare epoch in
nanoseconds (``1764410400000000000``), ``now``, and ``now`` minus a duration (``-90s``,
``-15m``, ``-2h``, ``-1d``). Nanosecond fractions are kept, which ``datetime`` cannot do alone.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from exporters import clock
from exporters.errors import UsageError

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now_ns: int | None = None) -> int:
    """Epoch nanoseconds for ``text``; :class:`UsageError` naming the accepted forms otherwise."""
    text = text.strip()
    now_ns = clock.wall_ns() if now_ns is None else now_ns
    if text == "now":
        return now_ns
    if text.isdigit():
        return int(text)
    if m := _RELATIVE.match(text):
        return now_ns - round(float(m.group(1)) * _UNIT_S[m.group(2)] * 1e9)
    if m := _RFC3339.match(text):
        whole, frac, zone = m.groups()
        zone = "+00:00" if zone in ("Z", "z") else zone
        try:
            seconds = datetime.fromisoformat(whole.replace(" ", "T") + zone).timestamp()
        except ValueError:
            seconds = None
        if seconds is not None:
            return int(seconds) * 1_000_000_000 + int((frac or "").ljust(9, "0"))
    raise UsageError(
        f"time {text!r} is not understood: use RFC 3339 (2026-11-29T10:00:00Z), "
        "epoch nanoseconds, 'now' or a relative time such as -15m"
    )


def format_time(time_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, the form :func:`parse_time` reads back exactly."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"
