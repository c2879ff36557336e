"""The agent's store writer: sampling hands batches over and never waits on the store.

:meth:`StoreWriter.put` queues a batch and returns at once; a thread of the writer's own writes
what waits, oldest first, up to ``WRITE_MAX`` points per write. While the store is slow or stuck
(another process holds the SQLite write lock, a disk stalls), points wait in memory, up to
``max_points``; beyond that the oldest are dropped, counted, and said once per episode. A write
that fails with :class:`StoreError` keeps its points and is tried again every ``retry_s``;
points the store refuses for good (:class:`UsageError`: names no store can keep, which the agent
already leaves out) are dropped with an error.

What it reports, for the agent's health points (and so ``/metrics``): :attr:`~StoreWriter.queued`
(points waiting, the write in flight included), :meth:`~StoreWriter.stalled_s` (how long the
oldest of them has waited for a write to succeed), :attr:`~StoreWriter.dropped` and
:attr:`~StoreWriter.written`. :meth:`~StoreWriter.watch`, called by the sampling loop, says once
per episode that the store has taken no write for ``stall_s``; the writer says when it takes
writes again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from exporters.errors import StoreError, UsageError
from exporters.schema import Point
from exporters.stores.base import Store

log = logging.getLogger(__name__)

MAX_QUEUED = 1_000_000  # points waiting in memory while the store is stuck
WRITE_MAX = 50_000  # points per store write
STALL_S = 2.0  # no write for this long: the store is stuck, said once
RETRY_S = 1.0  # between tries of a write that failed


class StoreWriter:
    """Writes batches to ``store`` on a thread of its own; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        max_points: int = MAX_QUEUED,
        stall_s: float = STALL_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.store = store
        self.max_points, self.stall_s, self.retry_s = max(1, int(max_points)), stall_s, retry_s
        self.written = 0
        self.dropped = 0
        self._waiting: deque[list[Point]] = deque()
        self._in_flight: list[Point] = []
        self._queued = 0  # points in _waiting and _in_flight
        self._since: float | None = None  # monotonic: the oldest waiting point's wait began
        self._cond = threading.Condition()
        self._closing = self._abandoned = False
        self._told_stall = self._told_full = False
        self._error: str | None = None  # why the last write failed, until one succeeds
        self._thread = threading.Thread(target=self._run, name="tubai-store-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def queued(self) -> int:
        """Points waiting to be written, the write in flight included."""
        return self._queued

    def stalled_s(self) -> float:
        """How long the oldest waiting point has waited for a write to succeed; 0 if none."""
        with self._cond:
            return 0.0 if self._since is None else time.monotonic() - self._since

    def put(self, points: list[Point]) -> None:
        """Queue ``points`` (the writer owns the list from now on) and return at once."""
        if not points:
            return
        with self._cond:
            if self._queued == 0:
                self._since = time.monotonic()
            self._waiting.append(points)
            self._queued += len(points)
            dropped = self._trim()
            self._cond.notify_all()
            tell, self._told_full = dropped and not self._told_full, self._told_full or dropped > 0
        if tell:
            log.error(
                "the store %s is stuck: more than %d points wait in memory, so the oldest are "
                "dropped (counted in the agent's points_dropped_total) until it takes writes",
                self.store.url,
                self.max_points,
            )

    def _trim(self) -> int:
        """Drop the oldest waiting points beyond ``max_points`` (never the write in flight)."""
        over, dropped = self._queued - self.max_points, 0
        while over > 0 and self._waiting:
            oldest = self._waiting[0]
            n = min(over, len(oldest))
            del oldest[:n]
            if not oldest:
                self._waiting.popleft()
            over, dropped = over - n, dropped + n
        self._queued -= dropped
        self.dropped += dropped
        return dropped

    def watch(self) -> None:
        """Say, once per episode, that the store has taken no write for ``stall_s``."""
        with self._cond:
            stalled = 0.0 if self._since is None else time.monotonic() - self._since
            if stalled < self.stall_s or self._told_stall:
                return
            self._told_stall, queued = True, self._queued
        log.warning(
            "the store %s has taken no write for %.1f s (another process holding the SQLite "
            "write lock? a slow or full disk?): sampling goes on, %d points wait in memory "
            "(beyond %d the oldest are dropped)",
            self.store.url,
            stalled,
            queued,
            self.max_points,
        )

    def close(self, timeout_s: float) -> int:
        """Write what waits, for up to ``timeout_s``, and stop; return how many points were left
        unwritten (lost: a write still stuck then ends with the process)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout_s))
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()
            return self._queued

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._in_flight or self._closing):
                    self._cond.wait()
                if self._abandoned or not (self._waiting or self._in_flight):
                    return  # closed, and everything written (or given up on)
                if not self._in_flight:
                    self._in_flight = self._take()
                batch = self._in_flight
            try:
                self.store.write(batch)
            except UsageError as e:  # refused for good: trying again would hold up the rest
                log.error(
                    "the store %s refused %d points for good: %s", self.store.url, len(batch), e
                )
                self._done(batch, written=False)
            except Exception as e:  # StoreError, or a bug: keep the points, never die
                self._failed(e)
                with self._cond:
                    self._cond.wait_for(lambda: self._abandoned, self.retry_s)
            else:
                self._done(batch, written=True)

    def _take(self) -> list[Point]:
        """The oldest waiting batches, merged up to ``WRITE_MAX`` points (at least one batch)."""
        batch = self._waiting.popleft()
        while self._waiting and len(batch) + len(self._waiting[0]) <= WRITE_MAX:
            batch.extend(self._waiting.popleft())
        return batch

    def _done(self, batch: list[Point], written: bool) -> None:
        with self._cond:
            self._in_flight = []
            self._queued -= len(batch)
            if written:
                self.written += len(batch)
            else:
                self.dropped += len(batch)
            now = time.monotonic()
            stalled = 0.0 if self._since is None else now - self._since
            self._since = now if self._queued else None
            recovered = self._told_stall or self._error is not None
            self._told_stall = self._told_full = False
            self._error, queued = None, self._queued
        if recovered:
            log.warning(
                "the store %s takes writes again, after %.1f s; %d points still wait",
                self.store.url,
                stalled,
                queued,
            )

    def _failed(self, e: Exception) -> None:
        """Log a failed write once per reason (and a bug with its traceback)."""
        why = str(e) if isinstance(e, StoreError) else f"{type(e).__name__}: {e}"
        with self._cond:
            if why == self._error:
                return
            self._error, queued = why, self._queued
        log.error(
            "%s; %d points wait in memory, tried again every %g s",
            why,
            queued,
            self.retry_s,
            exc_info=not isinstance(e, StoreError),
        )
