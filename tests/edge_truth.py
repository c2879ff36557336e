"""The truth of a window whose edges were read, from the RAPL fixture writer's log.

The writer (tests/rapl_writer.py) logs every value it puts in a counter file: the profile instant
it stands for (taken before writing) and the instant it was shown (taken after the rename), so
value ``k`` was in the file from some instant between those two until value ``k + 1`` came. An
edge reading (:class:`~exporters.edges.EdgeReading`) reports the middle of its read and the
read's span: what it read is one of the values the file held during that span, however busy
the machine. :func:`window_truth` gives, for a window between two edge readings, every energy
those values allow (the measured one must be among them), the energy the file showed between
the two edge instants (the truth), and how much the file changed during the two reads (what a
read's span may add to the error, nothing when the reads are not interrupted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rapl_writer import ProfileWriter, Writes

from exporters import clock
from exporters.edges import EdgeReading

SLACK_NS = 20_000  # the two steady clocks, compared (clock_shift): well under this apart


def clock_shift(writer: ProfileWriter) -> int:
    """Agent time minus writer time: both are a wall clock at start plus the monotonic clock,
    started apart. Each sample is the clock less the monotonic clock read just after; a late
    one is only smaller, so the largest of a few is the offset."""

    def offset(now) -> int:
        return max(now() - time.monotonic_ns() for _ in range(20))

    return offset(clock.wall_ns) - offset(writer.now_ns)


def held(log: Writes, lo_ns: int, hi_ns: int) -> range:
    """Indices of the values the file may have held at some instant of ``[lo, hi]``."""
    first = next(k for k in range(len(log.total_uj) - 1, -1, -1) if log.shown_ns[k] <= lo_ns)
    last = max(k for k in range(len(log.total_uj)) if k == 0 or log.profile_ns[k] <= hi_ns)
    return range(min(first, last), last + 1)


def logged_past(writer: ProfileWriter, domain: str, t_ns: int, timeout_s: float = 60.0) -> Writes:
    """The writer's log once it holds a value shown after ``t_ns`` (writer time): it logs each
    value after writing it, so the last one read may not be in the log yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = writer.writes(domain)
        if log.shown_ns[-1] > t_ns + SLACK_NS or time.monotonic() > deadline:
            return log
        time.sleep(0.005)


@dataclass(frozen=True)
class WindowTruth:
    possible_uj: set[int]  # every energy the values held during the two reads allow
    joules: float  # what the file showed between the two edge instants
    during_j: float  # how much the file changed during the two reads


def window_truth(
    writer: ProfileWriter, domain: str, start: EdgeReading, end: EdgeReading, shift: int
) -> WindowTruth:
    """The truth of ``domain`` in the window between two edge readings (agent time less
    ``shift`` is writer time: :func:`clock_shift`)."""
    log = logged_past(writer, domain, end.time_ns - shift + end.read_ns)
    spans = [
        held(log, r.time_ns - shift - h, r.time_ns - shift + h)
        for r in (start, end)
        for h in [r.read_ns // 2 + SLACK_NS]
    ]
    total = log.total_uj
    at = [held(log, r.time_ns - shift, r.time_ns - shift)[0] for r in (start, end)]
    return WindowTruth(
        {total[b] - total[a] for a in spans[0] for b in spans[1]},
        (total[at[1]] - total[at[0]]) / 1e6,
        sum(total[s[-1]] - total[s[0]] for s in spans) / 1e6,
    )
