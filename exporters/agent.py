"""The sampling agent: one loop on monotonic deadlines, batched writes, its own health.

Each source is read on its own cadence (``interval_s`` by kind: power sources fine, system
sources coarse; a source may carry its own ``interval_s``). Deadlines advance from a monotonic
start, so the cadence does not drift and a slow read skips ticks rather than bunching them.
Points carry wall-clock nanoseconds taken at the middle of the read. Counters become monotonic
totals (:mod:`exporters.counters`). A reading whose names the store cannot keep (a control
character in a tag: :meth:`~exporters.stores.base.Store.refusal`) is left out and logged once.
Every ``flush_interval_s`` the batch sampled so far goes to a
:class:`~exporters.writer.StoreWriter`, which writes it on a thread of its own: sampling never
waits on the store, and a slow or stuck store is reported, not waited for. Every ``stats``
period the agent writes its own health: per collector ``duration_s`` and ``ok``; its
``cpu_seconds_total``, the counters' ``counter_wraps_total``, ``counter_resets_total`` and
``counter_glitches_total``, and the writer's ``points_total`` (written), ``store_queue_points``,
``store_stalled_s`` and ``points_dropped_total``; these are also served on ``/metrics``. Sources
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
from exporters.schema import AGENT, Point, Reading
from exporters.sources.base import Source
from exporters.stores.base import Store
from exporters.writer import MAX_QUEUED, STALL_S, StoreWriter

log = logging.getLogger(__name__)

RECHECK_S = 30.0
FINAL_FLUSH_S = 5.0  # after stop: writing what waits, and the store's flush, within this


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
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.store = store
        self.host = host
        self.intervals = {"power": 0.1, "system": 1.0, **(intervals or {})}
        self.flush_interval_s = flush_interval_s
        self.sources = list(sources)
        self.waiting = list(waiting)
        self.latest: dict[tuple, Point] = {}
        self.points_lost = 0
        """Points sampled but never stored: dropped while the store was stuck, or left at stop."""
        self.writer = StoreWriter(
            store, max_points=max_queued, stall_s=max(STALL_S, 2 * flush_interval_s)
        )
        self._totals = CounterTotals()
        self._buffer: list[Point] = []
        self._stats: dict[str, list] = {}
        self._stop = threading.Event()
        self._errors: dict[str, str] = {}
        self._refused: set[tuple] = set()

    @property
    def points_total(self) -> int:
        """Points written to the store so far."""
        return self.writer.written

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
        return self._points(source, readings, stamp, mono)

    def _points(
        self, source: Source, readings: list[Reading], stamp: int, mono: int
    ) -> list[Point]:
        """Points of ``readings`` stamped ``stamp``; a series the store would refuse is left out
        (said once)."""
        points = []
        for r in readings:
            fields = {
                k: v
                for k, v in self._totals.fields(r, mono).items()
                if not (isinstance(v, float) and not math.isfinite(v))
            }
            if not fields:
                continue
            p = Point(r.measurement, {**r.tags, "host": self.host}, fields, stamp)
            key = p.series_key()
            if key not in self.latest:
                why = self.store.refusal(p)
                if why:
                    if key not in self._refused:
                        self._refused.add(key)
                        log.error("%s: a reading left out: %s", source.name, why)
                    continue
            points.append(p)
            self.latest[key] = p
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
            "store_queue_points": self.writer.queued,  # sampled, not yet written
            "store_stalled_s": self.writer.stalled_s(),  # how long the oldest of them waited
            "points_dropped_total": self.writer.dropped,  # lost while the store was stuck
        }
        points.append(Point(AGENT, {**tags, "collector": "agent"}, fields, now))
        for p in points:  # for /metrics
            self.latest[p.series_key()] = p
        return points

    def flush(self) -> None:
        """Hand what was sampled to the writer (it writes it on its own thread)."""
        self.writer.put(self._buffer)
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
        self.writer.start()
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
                self.writer.watch()
                if self.waiting and recheck <= now:
                    recheck = now + int(RECHECK_S * 1e9)
                    if self._recheck():
                        continue  # sample the new sources now
                wake = min([*due.values(), *timers.values(), *([end] if end else [])])
                if self.waiting:
                    wake = min(wake, recheck)
                self._stop.wait(max(0.0, (wake - time.monotonic_ns()) / 1e9))
        finally:
            self._finish()

    def _finish(self) -> None:
        """Write what waits and flush the store, within ``FINAL_FLUSH_S``; close the sources."""
        deadline = time.monotonic() + FINAL_FLUSH_S
        self._buffer.extend(self._health())
        self.flush()
        left = self.writer.close(FINAL_FLUSH_S)
        self.points_lost = self.writer.dropped + left
        if left:
            log.error(
                "%d sampled points were not written: the store %s took none for %.1f s",
                left,
                self.store.url,
                self.writer.stalled_s(),
            )
        try:  # a spooling store keeps what the server has not taken yet for the next start
            self.store.flush(timeout_s=max(0.0, deadline - time.monotonic()))
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
