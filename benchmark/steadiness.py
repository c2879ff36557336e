"""What a pass records about its own steadiness, and the wait for a cool machine before it.

- :class:`BatchTimer`: the time between consecutive finished batches (a batch's latency as the
  pass sees it: the input pipeline's wait included), in bounded memory whatever the pass's
  length. Latency percentiles come from a histogram of log-spaced bins (each
  :data:`LATENCY_RATIO` wide: a percentile is exact to within half a bin, 0.5%); throughput from
  fine time bins (:data:`FINE_BIN_S`, merged pairwise to twice their width whenever there are
  more than :data:`MAX_FINE_BINS`), each batch's images spread evenly over the time it took.
  At the end the throughput is resampled to equal bins of about :data:`SERIES_BIN_S` (at most
  :data:`MAX_SERIES_BINS`) spanning the whole pass: ``throughput_series`` lists images/s per
  bin, and a bin lasts the pass's duration over the number of bins. ``stall_s`` is the longest
  time without a finished batch (the window's start to the first batch included).
- :class:`CpuClock`: CPU time of every other process during a window, from ``/proc/stat``'s
  busy time (:func:`exporters.sources.procfs.busy_seconds`) less this process's own
  (``/proc/<pid>/stat``: user and system time of all its threads); the procfs root is a
  parameter. Steal time counts as busy: another guest of the hypervisor took the CPU.
- :func:`cool_down`: before a pass, wait until the host's power is back within
  :data:`COOLDOWN_TOLERANCE` of the idle baseline (Zeus's thermally stable profiling: a pass
  that starts on a hot machine pays for the previous one), for at most the given seconds; what
  it waited and whether it got there go in the pass's ``start`` event.
- :func:`window_watts`: the host's power over some seconds of doing nothing, as stored (the idle
  baseline before and after the passes, and each cool-down probe).

Judging these figures (a stall, a busy machine, ...) is :mod:`scoring.steadiness`'s.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.errors import UsageError
from exporters.sources.procfs import CLOCK_TICKS, busy_seconds, cpu_times, read_file

LATENCY_RATIO = 1.01  # width of a latency histogram bin, as the ratio of its edges
LATENCY_MIN_S = 1e-6  # the first bin's lower edge; shorter latencies land in it
LATENCY_BINS = 2400  # 1 µs .. about 22 000 s
FINE_BIN_S = 0.25  # throughput is gathered at this resolution, coarser for very long passes
MAX_FINE_BINS = 4096
SERIES_BIN_S = 1.0  # the throughput series' resolution
MAX_SERIES_BINS = 600  # the series of a pass longer than 10 minutes has longer bins
SERIES_DIGITS = 4  # significant digits kept of each images/s in the JSON
COOLDOWN_TOLERANCE = 0.10  # power back within 10% of the idle baseline ends the cool-down
COOLDOWN_PROBE_S = 1.0  # power is measured over windows this long while cooling down


class BatchTimer:
    """The latency and throughput of one pass's batches (see the module's docstring)."""

    def __init__(self) -> None:
        self._counts = np.zeros(LATENCY_BINS, dtype=np.int64)
        self._images = np.zeros(MAX_FINE_BINS + 1, dtype=np.float64)  # images per fine bin
        self._bin_s = FINE_BIN_S
        self.batches = 0
        self.stall_s = 0.0
        self._t0 = self._last = time.monotonic()
        self.span_s = 0.0

    def start(self, at: float | None = None) -> None:
        """The pass starts at ``at`` (a :func:`time.monotonic` instant: its window's opening
        edge), else now."""
        self._t0 = self._last = time.monotonic() if at is None else at

    def batch(self, images: int, now: float | None = None) -> None:
        """A batch of ``images`` finished now (``now``: a :func:`time.monotonic` instant)."""
        now = time.monotonic() if now is None else now
        latency = max(0.0, now - self._last)
        index = math.floor(math.log(max(latency, LATENCY_MIN_S) / LATENCY_MIN_S, LATENCY_RATIO))
        self._counts[min(index, LATENCY_BINS - 1)] += 1
        self.stall_s = max(self.stall_s, latency)
        self._spread(self._last - self._t0, now - self._t0, images)
        self._last = now
        self.batches += 1
        self.span_s = now - self._t0

    def _spread(self, a_s: float, b_s: float, images: float) -> None:
        """``images`` spread evenly over ``[a_s, b_s]`` (seconds from the start) into bins."""
        while b_s >= MAX_FINE_BINS * self._bin_s:  # too long for the bins: halve the resolution
            merged = self._images[:MAX_FINE_BINS].reshape(-1, 2).sum(axis=1)
            self._images[:] = 0.0
            self._images[: MAX_FINE_BINS // 2] = merged
            self._bin_s *= 2
        edges = np.arange(math.floor(a_s / self._bin_s), math.floor(b_s / self._bin_s) + 2)
        if b_s <= a_s:
            self._images[int(edges[0])] += images
            return
        lo = np.clip(edges[:-1] * self._bin_s, a_s, b_s)
        hi = np.clip(edges[1:] * self._bin_s, a_s, b_s)
        self._images[edges[:-1].astype(int)] += images * (hi - lo) / (b_s - a_s)

    def finish(self, at: float | None = None) -> None:
        """The pass ends at ``at`` (its window's closing edge), else now: the time since the
        last batch counts as a gap too, and the series spans the window."""
        now = time.monotonic() if at is None else at
        self.stall_s = max(self.stall_s, now - self._last)
        self.span_s = now - self._t0

    def latency_s(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the batch latencies: the middle of its bin, geometric."""
        if not self.batches:
            return None
        rank = max(1, math.ceil(q * self.batches))
        index = int(np.searchsorted(np.cumsum(self._counts), rank))
        return LATENCY_MIN_S * LATENCY_RATIO ** (index + 0.5)

    def series(self) -> list[float]:
        """Images/s in equal bins of about :data:`SERIES_BIN_S` over the whole pass."""
        if self.span_s <= 0 or not self.batches:
            return []
        n = min(MAX_SERIES_BINS, max(1, round(self.span_s / SERIES_BIN_S)))
        m = min(max(1, math.ceil(self.span_s / self._bin_s)), len(self._images))
        cumulative = np.concatenate([[0.0], np.cumsum(self._images[:m])])
        knots = np.arange(m + 1) * self._bin_s
        knots[-1] = min(knots[-1], self.span_s)  # the last fine bin ends with the pass
        edges = np.linspace(0.0, self.span_s, n + 1)
        per_bin = np.diff(np.interp(edges, knots, cumulative))
        return [float(f"{v:.{SERIES_DIGITS}g}") for v in per_bin / (self.span_s / n)]

    def fields(self) -> dict[str, float | str | None]:
        """The ``end`` event's fields of steadiness (:class:`scoring.events.RunEnd`)."""
        series = self.series()
        return {
            "latency_p50_s": self.latency_s(0.50),
            "latency_p90_s": self.latency_s(0.90),
            "latency_p99_s": self.latency_s(0.99),
            "throughput_series": json.dumps(series, separators=(",", ":")) if series else None,
            "stall_s": self.stall_s if self.batches else None,
        }


def process_cpu_seconds(stat: bytes) -> float:
    """User plus system CPU-seconds of all threads of a process, from its ``/proc/<pid>/stat``.

    The command name (field 2, in parentheses) may hold spaces and parentheses itself: the
    fields are counted after its last ``)``; utime and stime are fields 14 and 15, in clock
    ticks. Raises ValueError for anything else."""
    end = stat.rfind(b")")
    rest = stat[end + 1 :].split() if end >= 0 else []
    if len(rest) < 13 or not rest[11].isdigit() or not rest[12].isdigit():
        raise ValueError("not a /proc/<pid>/stat line")
    return (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


@dataclass
class CpuClock:
    """Busy CPU-seconds of the machine and of one process (this one), read from ``procfs_root``.

    ``other_s()`` after ``start()``: what every other process used since (None where ``/proc``
    cannot be read: not Linux)."""

    procfs_root: Path = Path("/proc")
    pid: int = field(default_factory=os.getpid)
    _start: tuple[float, float] | None = field(default=None, init=False)

    def read(self) -> tuple[float, float] | None:
        """(the machine's busy CPU-seconds, this process's), or None where unreadable."""
        try:
            machine = busy_seconds(cpu_times(read_file(str(self.procfs_root / "stat")))[0])[0]
            own = process_cpu_seconds(read_file(str(self.procfs_root / str(self.pid) / "stat")))
        except (OSError, ValueError):
            return None
        return machine, own

    def start(self) -> None:
        self._start = self.read()

    def other_s(self) -> float | None:
        """CPU-seconds other processes used since :meth:`start` (0 or more)."""
        now = self.read()
        if now is None or self._start is None:
            return None
        return max(0.0, round((now[0] - self._start[0]) - (now[1] - self._start[1]), 6))


def window_watts(sampler, seconds: float) -> float:
    """The host's counted power over ``seconds`` from now, from its stored energy (the same
    window energy every score reads), as :class:`~benchmark.sampling.Sampler` marks windows."""
    from exporters.window import window_energy

    start, _ = sampler.mark()
    time.sleep(seconds)
    end, _ = sampler.mark()
    sampler.wait_past(end)
    energy = window_energy(sampler.store, start, end, host=sampler.host)
    return energy.total_joules / ((end - start) / 1e9)


@dataclass(frozen=True)
class Cooldown:
    """A cool-down before a pass: seconds waited, and whether power got back near idle."""

    waited_s: float
    reached: bool
    watts: float | None  # the last power measured


def cool_down(sampler, idle_watts: float, timeout_s: float,
              tolerance: float = COOLDOWN_TOLERANCE) -> Cooldown:  # fmt: skip
    """Wait until the host's power, measured over :data:`COOLDOWN_PROBE_S` windows, is within
    ``tolerance`` of ``idle_watts``, or ``timeout_s`` has passed (never less than one probe)."""
    began = time.monotonic()
    watts = None
    while True:
        probe_s = min(COOLDOWN_PROBE_S, max(0.1, timeout_s - (time.monotonic() - began)))
        watts = window_watts(sampler, probe_s)
        waited = time.monotonic() - began
        if watts <= idle_watts * (1 + tolerance):
            return Cooldown(waited, True, watts)
        if waited >= timeout_s:
            return Cooldown(waited, False, watts)


def check_cooldown(cooldown_s: float, idle_s: float) -> None:
    """A cool-down needs the idle baseline it waits for: :class:`UsageError` without one."""
    if cooldown_s > 0 and idle_s <= 0:
        raise UsageError(
            "--cooldown waits for power back at the idle baseline: give --idle SECONDS too "
            "(e.g. --idle 10 --cooldown 60)"
        )
