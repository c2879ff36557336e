"""Wall-clock nanoseconds that never jump: the timestamps of every point and every window.

The system clock can be stepped (by NTP at boot, by hand, by a VM resuming): samples taken
after a step backwards would carry times before those taken earlier, and a window marked
across the step would end before it starts. :class:`SteadyWallClock` reads the wall clock once,
when the process starts, and advances it with the monotonic clock after that: steps do not
move it, while NTP's gradual corrections do, since they slew the monotonic clock too.

Every stamp in a process comes from :func:`wall_ns`, so the agent and a benchmark in the same
process (``make bench``) always agree. Separate processes agree too, unless the system clock
was stepped between their starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyWallClock:
    """``wall()`` at creation plus the ``mono()`` time elapsed since: nanoseconds."""

    def __init__(
        self,
        wall: Callable[[], int] = time.time_ns,
        mono: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._mono = mono
        self._mono0 = mono()
        self._wall0 = wall()

    def __call__(self) -> int:
        return self._wall0 + (self._mono() - self._mono0)

    def at(self, mono_ns: int) -> int:
        """The wall-clock time of the monotonic instant ``mono_ns`` (from ``mono``)."""
        return self._wall0 + (mono_ns - self._mono0)

    def mono_at(self, wall_ns: int) -> int:
        """The monotonic instant (of ``mono``) of this clock's time ``wall_ns``: :meth:`at`'s
        inverse."""
        return self._mono0 + (wall_ns - self._wall0)


CLOCK = SteadyWallClock()


def wall_ns() -> int:
    """Now, as epoch nanoseconds, from the process's steady wall clock."""
    return CLOCK()


def wall_at(mono_ns: int) -> int:
    """The process's steady wall clock at ``time.monotonic_ns()`` instant ``mono_ns``: a stamp
    for the middle of something timed on the monotonic clock, with no second reading."""
    return CLOCK.at(mono_ns)


def monotonic_at(wall: int) -> float:
    """The :func:`time.monotonic` seconds of the process's steady wall-clock time ``wall``
    (epoch ns): something timed on the monotonic clock from an instant stamped by it."""
    return CLOCK.mono_at(wall) / 1e9
