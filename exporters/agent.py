"""The sampling agent: one loop on monotonic deadlines, batched writes, its own health.

Each source is read on its own cadence (``interval_s`` by kind: power sources fine, system
sources coarse; a source may carry its own ``interval_s``). Deadlines advance from a monotonic
start, so the cadence does not drift and a slow read skips ticks rather than bunching them.
Points carry wall-clock nanoseconds taken at the middle of the read. Counters become monotonic
totals (:mod:`exporters.counters`). A reading whose names the store cannot keep (a control
character in a tag: :meth:`~exporters.stores.base.Store.refusal`) is left out and logged once.
Every ``flush_interval_s`` (never more often than the power cadence) the batch sampled so far
goes to a :class:`~exporters.writer.StoreWriter`, which writes it on a thread of its own:
sampling never waits on the store, and a slow or stuck store is reported, not waited for. The
loop sleeps until the next deadline of any source, flush or health point, on a lock that
:meth:`Agent.stop` releases: it wakes for nothing else. Every ``stats``
period the agent writes its own health: per collector ``duration_s`` and ``ok``; its
``cpu_seconds_total``, the counters' ``counter_wraps_total``, ``counter_resets_total`` and
``counter_glitches_total``, and the writer's ``points_total`` (written), ``store_queue_points``,
``store_stalled_s`` and ``points_dropped_total``; these are also served on ``/metrics``. Sources
that are not available at start are checked again every ``RECHECK_S`` seconds. A source whose
counters could wrap more than once between two reads at its cadence (a small RAPL range at a
long cadence) also gets *guard reads* in between, which advance the totals and store nothing, so
a long cadence never misses a wrap (:meth:`Agent._guard_step`). When it stops,
the agent calls ``close()`` on every source that has one (:mod:`exporters.sources.base`).

:meth:`Agent.sample_now` reads every power source sampled at the power cadence at once, at any
moment, from any thread (a window's edge: :mod:`exporters.edges`): its points go to the writer
like any sample, their counters advance the same totals (one lock keeps the loop's reads and
these in order), and it returns the totals read. Those points carry no rates (watts stay
measured between periodic samples) and do not replace the latest values ``/metrics`` serves.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Sequence

from exporters import clock
from exporters.counters import CounterTotals, max_unambiguous_s
from exporters.domains import domain_of
from exporters.edges import EdgeReading, EdgeSeries
from exporters.errors import SourceError, StoreError
from exporters.priority import (
    lower_this_thread,
    pin_this_thread,
    restore_this_thread,
    this_thread,
)
from exporters.schema import AGENT, ENERGY, Point, Reading
from exporters.sources.base import Source
from exporters.stores.base import Store
from exporters.writer import MAX_QUEUED, STALL_S, StoreWriter

log = logging.getLogger(__name__)

RECHECK_S = 30.0
GUARD_SHARE = 0.8  # guard reads at this share of the longest interval that tells wraps apart
GUARD_MIN_S = 0.01
FINAL_FLUSH_S = 5.0  # after stop: writing what waits, and the store's flush, within this


def _nonfinite(value: object) -> bool:
    """Whether ``value`` is a float no store can keep (NaN, infinity)."""
    return isinstance(value, float) and not math.isfinite(value)


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
        priority: str = "normal",
        cpus: set[int] | None = None,
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
        self._wakeup = threading.Lock()  # held while the loop sleeps; stop() releases it
        self._wakeup.acquire()
        self._series: dict[tuple, tuple[dict[str, str], tuple]] = {}  # see _series_of
        self._errors: dict[str, str] = {}
        self._refused: set[tuple] = set()
        self._lock = threading.Lock()  # source reads and the totals: the loop's and edges'
        self._closed = False
        self.instance = secrets.token_hex(4)  # names this agent's counter segments
        self.first_round = threading.Event()
        """Set once the loop has read every source once."""
        self._guard_ns: dict[int, int] = {}  # see _guard_step
        self.priority, self.cpus = priority, cpus
        """How :meth:`run`'s thread (and the writer thread it starts) is scheduled:
        :mod:`exporters.priority`."""

    @property
    def points_total(self) -> int:
        """Points written to the store so far."""
        return self.writer.written

    def interval_of(self, source: Source) -> float:
        return getattr(source, "interval_s", None) or self.intervals[source.kind]

    def stop(self) -> None:
        """Ask the loop to finish; it flushes and returns."""
        self._stop.set()
        try:
            self._wakeup.release()  # wakes the loop now
        except RuntimeError:
            pass  # released already: the loop is awake

    def reads_at_edges(self, source: Source) -> bool:
        """Whether :meth:`sample_now` reads ``source``: a power source at the power cadence
        (one with a cadence of its own, a scraped exporter or a slow meter, is left out)."""
        return source.kind == "power" and not getattr(source, "interval_s", None)

    def sample(self, source: Source) -> list[Point]:
        """Read one source once and turn its readings into points (errors are recorded)."""
        with self._lock:
            mono0 = time.monotonic_ns()
            readings = self._read(source)
            mono = (mono0 + time.monotonic_ns()) // 2
            stamp = clock.wall_at(mono)
            points = [self._point(source, r, stamp, mono) for r in readings]
        if id(source) not in self._guard_ns:
            self._guard_ns[id(source)] = self._guard_step(source, readings)
        return [p for p in points if p is not None]

    def _guard_step(self, source: Source, readings: Sequence[Reading]) -> int:
        """How often ``source`` must be read for no wrap of its counters to be missed, in ns
        (0: its cadence is short enough). A counter that can wrap more than once between two
        periodic reads at its ceiling is read in between as well (a *guard read*: the totals
        advance, nothing is stored), so a long cadence stays exact."""
        limit = min(
            (max_unambiguous_s(c) for r in readings for c in r.counters.values()),
            default=math.inf,
        )
        if limit >= self.interval_of(source):
            return 0
        step_s = max(GUARD_MIN_S, GUARD_SHARE * limit)
        log.info("%s: read every %.2f s between samples, so that no wrap is missed", source.name,
                 step_s)  # fmt: skip
        return int(step_s * 1e9)

    def sample_now(self) -> EdgeReading:
        """Read every source :meth:`reads_at_edges` at once, now; store the energy points like
        any sample (without rates, not in :attr:`latest`) and return their totals, with every
        other energy series this agent knows as one without a total. RuntimeError once the
        agent has stopped."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the agent has stopped: nothing to read the edge with")
            edge_sources = [s for s in self.sources if self.reads_at_edges(s)]
            for source in edge_sources:  # read just after the counter updates: see rapl.py
                await_update = getattr(source, "await_update", None)
                if await_update is not None:
                    await_update()
            mono0 = time.monotonic_ns()
            read = [(s, self._read(s)) for s in edge_sources]
            mono1 = time.monotonic_ns()
            mono = (mono0 + mono1) // 2
            stamp = clock.wall_at(mono)  # the middle of the read, exactly
            points, series = [], {}
            for source, readings in read:
                for r in readings:
                    p = self._point(source, r, stamp, mono, periodic=False)
                    if r.measurement == ENERGY and p is not None:
                        points.append(p)
                        series[domain_of(p.tags)] = self._edge_series(r, p)
        for p in list(self.latest.values()):
            if p.measurement == ENERGY and domain_of(p.tags) not in series:
                series[domain_of(p.tags)] = EdgeSeries(p.tags.get("estimated") == "true")
        self.writer.put(points)
        return EdgeReading(stamp, mono1 - mono0, self.host, series)

    def _edge_series(self, reading: Reading, point: Point) -> EdgeSeries:
        total = point.fields.get("joules_total")
        segment = self._totals.segment(reading, "joules_total")
        known = isinstance(total, float) and segment is not None
        return EdgeSeries(
            point.tags.get("estimated") == "true",
            total if known else None,  # type: ignore[arg-type]
            f"{self.instance}.{segment}" if known else None,
        )

    def _read(self, source: Source) -> list[Reading]:
        """``source.read()``; a failure is recorded (and said once) and reads as nothing."""
        mono0 = time.monotonic_ns()
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
        stats = self._stats.setdefault(source.name, [0, 0.0, True])
        stats[0] += 1
        stats[1] += (time.monotonic_ns() - mono0) / 1e9
        stats[2] = stats[2] and ok
        return readings

    def _point(
        self, source: Source, reading: Reading, stamp: int, mono: int, periodic: bool = True
    ) -> Point | None:
        """The point of ``reading`` stamped ``stamp`` (a periodic one becomes the latest of its
        series); None where it has no field left or the store would refuse its series (said
        once)."""
        fields = self._totals.fields(reading, mono, rates=periodic)
        for v in fields.values():
            if isinstance(v, float) and not math.isfinite(v):
                fields = {k: v for k, v in fields.items() if not _nonfinite(v)}
                break
        if not fields:
            return None
        tags, key = self._series_of(reading)
        p = Point(reading.measurement, tags, fields, stamp)
        if key not in self.latest:
            why = self.store.refusal(p)
            if why:
                if key not in self._refused:
                    self._refused.add(key)
                    log.error("%s: a reading left out: %s", source.name, why)
                return None
        if periodic:
            self.latest[key] = p
        return p

    def _series_of(self, reading: Reading) -> tuple[dict[str, str], tuple]:
        """The tags of ``reading``'s points (its own and ``host``) and its series key, made once
        per series: its points share that tags dict, which nothing may change."""
        seen = (reading.measurement, tuple(reading.tags.items()))
        found = self._series.get(seen)
        if found is None:
            tags = {**reading.tags, "host": self.host}
            found = self._series[seen] = (tags, (reading.measurement, tuple(sorted(tags.items()))))
        return found

    def _health(self) -> list[Point]:
        now = clock.wall_ns()
        tags = {"host": self.host}
        with self._lock:
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
        guards: dict[int, int] = {}  # the next guard read of a source with wrap-prone counters
        # never more often than the power cadence: a flush between two samples has nothing new
        flush_step = int(max(self.flush_interval_s, self.intervals["power"]) * 1e9)
        timers = {"flush": start + flush_step}
        timers["health"] = start + int(self.intervals["system"] * 1e9)
        recheck = start + int(RECHECK_S * 1e9)
        saved = this_thread()
        self._schedule()
        self.writer.start()  # inherits the sampling thread's scheduling
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
                        if self._guard_ns.get(key):
                            guards[key] = now + self._guard_ns[key]
                    elif guards.get(key, due[key]) <= now:
                        self.sample(source)  # a guard read: the totals advance, nothing stored
                        guards[key] = now + self._guard_ns[key]
                if not self.first_round.is_set():
                    self.first_round.set()
                now = time.monotonic_ns()
                if timers["health"] <= now:
                    self._buffer.extend(self._health())
                    timers["health"] += int(self.intervals["system"] * 1e9)
                    self.writer.watch()
                if timers["flush"] <= now:  # on the sampling phase: no wake-ups of its own
                    self.flush()
                    timers["flush"] += ((now - timers["flush"]) // flush_step + 1) * flush_step
                if self.waiting and recheck <= now:
                    recheck = now + int(RECHECK_S * 1e9)
                    if self._recheck():
                        continue  # sample the new sources now
                wake = min(
                    [*due.values(), *guards.values(), *timers.values(), *([end] if end else [])]
                )
                if self.waiting:
                    wake = min(wake, recheck)
                self._sleep(wake)
        finally:
            self._finish()
            restore_this_thread(saved)  # the caller's thread goes on as it was

    def _sleep(self, until_ns: int) -> None:
        """Sleep until the monotonic ``until_ns`` or :meth:`stop`, on a lock made once (an
        Event's wait makes a lock per call)."""
        left_s = (until_ns - time.monotonic_ns()) / 1e9
        if left_s > 0 and self._wakeup.acquire(timeout=left_s):
            self._wakeup.release()  # stop() released it: keep it released for the loop's end

    def _schedule(self) -> None:
        """Put the calling (sampling) thread at :attr:`priority` and on :attr:`cpus`; what
        cannot be done is logged, and sampling goes on as it is."""
        for why in (
            lower_this_thread(self.priority),
            pin_this_thread(self.cpus) if self.cpus else None,
        ):
            if why:
                log.warning("agent thread: %s", why)

    def _finish(self) -> None:
        """Write what waits and flush the store, within ``FINAL_FLUSH_S``; close the sources."""
        deadline = time.monotonic() + FINAL_FLUSH_S
        with self._lock:
            self._closed = True  # no more edge reads: the sources close below
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
