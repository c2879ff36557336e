"""The sampling agent: one loop on monotonic deadlines, batched writes, its own health.

Each source is read on its own cadence (``interval_s`` by kind: power sources fine, system
sources coarse; a source may carry its own ``interval_s``). Deadlines advance from a monotonic
start, so the cadence does not drift and a slow read skips ticks rather than bunching them.
Points carry wall-clock nanoseconds taken at the middle of the read. Counters become monotonic
totals (:mod:`exporters.counters`). Points are written in batches every ``flush_interval_s``;
a failed write keeps the batch for the next try. Every ``stats`` period the agent writes its
own health: per collector ``duration_s`` and ``ok``; its ``cpu_seconds_total``, and the
counters' ``counter_wraps_total``, ``counter_resets_total`` and ``counter_glitches_total``. Sources
that are not available at start are checked again every ``RECHECK_S`` seconds. When it stops,
the agent calls ``close()`` on every source that has one (:mod:`exporters.sources.base`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence

from exporters import clock
from exporters.counters import CounterTotals
from exporters.errors import SourceError, StoreError
from exporters.schema import AGENT, Point
from exporters.sources.base import Source
from exporters.stores.base import Store

log = logging.getLogger(__name__)

RECHECK_S = 30.0
MAX_BUFFERED = 1_000_000
FINAL_FLUSH_S = 5.0


class Agent:
    """Samples sources into a store until stopped or for a fixed duration."""

    def __init__(
        self,
        sources: Sequence[Source],
        store: Store,
        host: str,
        intervals: dict[str, float] | None = None,
        flush_interval_s: float = 1.0,
        waiting: Sequence[Source] = (),
    ) -> None:
        self.store = store
        self.host = host
        self.intervals = {"power": 0.1, "system": 1.0, **(intervals or {})}
        self.flush_interval_s = flush_interval_s
        self.sources = list(sources)
        self.waiting = list(waiting)
        self.latest: dict[tuple, Point] = {}
        self.points_total = 0
        self._totals = CounterTotals()
        self._buffer: list[Point] = []
        self._stats: dict[str, list] = {}
        self._stop = threading.Event()
        self._errors: dict[str, str] = {}

    def interval_of(self, source: Source) -> float:
        return getattr(source, "interval_s", None) or self.intervals[source.kind]

    def stop(self) -> None:
        """Ask the loop to finish; it flushes and returns."""
        self._stop.set()

    def sample(self, source: Source) -> list[Point]:
        """Read one source once and turn its readings into points (errors are recorded)."""
        mono0, wall0 = time.monotonic_ns(), clock.wall_ns()
        try:
            readings = source.read()
            ok = True
        except Exception as e:  # a broken source must not stop the others
            readings, ok = [], False
            message = str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"
            if self._errors.get(source.name) != message:
                log.warning("%s: %s", source.name, message, exc_info=not isinstance(e, SourceError))
            self._errors[source.name] = message
        else:
            self._errors.pop(source.name, None)
        mono1 = time.monotonic_ns()
        stamp, mono = wall0 + (mono1 - mono0) // 2, (mono0 + mono1) // 2
        stats = self._stats.setdefault(source.name, [0, 0.0, True])
        stats[0] += 1
        stats[1] += (mono1 - mono0) / 1e9
        stats[2] = stats[2] and ok
        points = []
        for r in readings:
            fields = {
                k: v
                for k, v in self._totals.fields(r, mono).items()
                if not (isinstance(v, float) and not math.isfinite(v))
            }
            if fields:
                p = Point(r.measurement, {**r.tags, "host": self.host}, fields, stamp)
                points.append(p)
                self.latest[p.series_key()] = p
        return points

    def _health(self) -> list[Point]:
        now = clock.wall_ns()
        tags = {"host": self.host}
        points = [
            Point(AGENT, {**tags, "collector": name}, {"duration_s": d / n, "ok": ok}, now)
            for name, (n, d, ok) in self._stats.items()
            if n
        ]
        self._stats.clear()
        fields = {
            "cpu_seconds_total": time.process_time(),
            "points_total": self.points_total,
            "counter_wraps_total": self._totals.wraps,
            "counter_resets_total": self._totals.resets,
            "counter_glitches_total": self._totals.glitches,  # bad readings skipped, never energy
        }
        points.append(Point(AGENT, {**tags, "collector": "agent"}, fields, now))
        return points

    def flush(self) -> None:
        """Write what is buffered; on a store error keep it (bounded) for the next flush."""
        if not self._buffer:
            return
        try:
            self.store.write(self._buffer)
        except StoreError as e:
            log.error("%s; keeping %d points for the next try", e, len(self._buffer))
            del self._buffer[:-MAX_BUFFERED]
            return
        self.points_total += len(self._buffer)
        self._buffer = []

    def _recheck(self) -> bool:
        """Move sources that became available to the sampled ones; True if any did."""
        found = False
        for source in list(self.waiting):
            ok, why = source.available()
            if ok:
                log.info("%s is available now: %s", source.name, why)
                self.waiting.remove(source)
                self.sources.append(source)
                found = True
        return found

    def run(self, duration_s: float | None = None) -> None:
        """Sample until :meth:`stop` (or ``duration_s``), then flush everything."""
        start = time.monotonic_ns()
        end = start + int(duration_s * 1e9) if duration_s is not None else None
        due: dict[int, int] = {}
        timers = {"flush": start + int(self.flush_interval_s * 1e9)}
        timers["health"] = start + int(self.intervals["system"] * 1e9)
        recheck = start + int(RECHECK_S * 1e9)
        try:
            while not self._stop.is_set():
                now = time.monotonic_ns()
                if end is not None and now >= end:
                    break
                for source in self.sources:
                    key = id(source)
                    if due.setdefault(key, start) <= now:
                        self._buffer.extend(self.sample(source))
                        step = int(self.interval_of(source) * 1e9)
                        due[key] += step
                        late = time.monotonic_ns() - due[key]
                        if late >= 0:  # skip missed ticks, keep the phase
                            due[key] += (late // step + 1) * step
                now = time.monotonic_ns()
                if timers["health"] <= now:
                    self._buffer.extend(self._health())
                    timers["health"] += int(self.intervals["system"] * 1e9)
                if timers["flush"] <= now:  # on the sampling phase: no wake-ups of its own
                    self.flush()
                    step = int(self.flush_interval_s * 1e9)
                    timers["flush"] += ((now - timers["flush"]) // step + 1) * step
                if self.waiting and recheck <= now:
                    recheck = now + int(RECHECK_S * 1e9)
                    if self._recheck():
                        continue  # sample the new sources now
                wake = min([*due.values(), *timers.values(), *([end] if end else [])])
                if self.waiting:
                    wake = min(wake, recheck)
                self._stop.wait(max(0.0, (wake - time.monotonic_ns()) / 1e9))
        finally:
            self._buffer.extend(self._health())
            self.flush()
            try:  # a spooling store keeps what the server has not taken yet for the next start
                self.store.flush(timeout_s=FINAL_FLUSH_S)
            except StoreError as e:
                log.warning("%s", e)
            self.close_sources()

    def close_sources(self) -> None:
        """Call ``close()`` on every source that has one, sampled or still awaited."""
        for source in [*self.sources, *self.waiting]:
            close = getattr(source, "close", None)
            if not callable(close):
                continue
            try:
                close()
            except Exception as e:  # one source's failure must not keep the others open
                log.warning("%s: close() failed: %s: %s", source.name, type(e).__name__, e)
