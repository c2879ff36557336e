"""The background thread that drains an :class:`~exporters.stores.outbox.Outbox` to a server.

It sends the oldest batch first, from the disk spool while that holds any, then from memory, and
acknowledges a batch (removes it from its queue) only once the server took it. A ``deliver``
function sends one batch: it returns the lines the server refused for good, each with the
server's reason (those are kept aside with :meth:`~exporters.stores.spool.Spool.reject`, never
retried), or raises :class:`Retry` when the whole batch must wait (server down, 5xx, credentials
refused, no database); then the thread retries with capped exponential backoff. Any other error
is logged and retried too: the thread never dies, and the points stay queued.

Several stores (maybe in several processes) may share a spool directory; only the one that
claims the disk spool (:meth:`~exporters.stores.spool.Spool.claim_consumer`) drains it, the others
send only what waits in their memory, and keep asking every :data:`UNCLAIMED_POLL_S`.

The thread sleeps while there is nothing to send: :meth:`Sender.wake` (called after every
write) wakes it, a failed delivery waits out its backoff, and the disk spool is looked at every
:data:`SPOOL_POLL_S` only for what other processes sharing it appended (an idle store costs no
wake-ups between).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exporters.stores.outbox import Outbox
from exporters.stores.spool import Queue, SpoolError

log = logging.getLogger(__name__)

SPOOL_POLL_S = 5.0  # the spool's consumer: how often it looks for other processes' points
UNCLAIMED_POLL_S = 0.5  # another store drains the spool: how often to ask for it again

Deliver = Callable[[list[str]], list[tuple[str, str]]]
"""Send a batch of lines; return ``(line, reason)`` for each refused for good; raise Retry."""


class Retry(Exception):
    """A delivery failed for a reason that may pass (server down, 5xx, auth, no database)."""


class Sender:
    """Drains ``outbox`` with ``deliver`` on a daemon thread; see the module docstring.

    ``server`` names the destination in log lines (``InfluxDB at http://host:8086``).
    """

    def __init__(
        self,
        outbox: Outbox,
        deliver: Deliver,
        *,
        server: str,
        thread_name: str,
        batch_size: int,
        retry_min_s: float,
        retry_max_s: float,
    ) -> None:
        self._outbox = outbox
        self._deliver = deliver
        self.server = server
        self.batch_size = max(1, int(batch_size))
        self.retry_min_s = retry_min_s
        self.retry_max_s = max(retry_min_s, retry_max_s)
        self.last_error: str | None = None
        """Why the last delivery failed; None once one succeeded."""
        self._stop = threading.Event()
        self._woken = False  # wake() since the thread last looked for work
        self._work = threading.Condition()
        self._acked = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look for work now (something was queued): the thread sleeps until then."""
        with self._work:
            self._woken = True
            self._work.notify()

    def _idle(self, timeout_s: float) -> None:
        """Sleep until :meth:`wake` (at once if it was called since the last look for work),
        :meth:`stop`, or ``timeout_s``."""
        with self._work:
            if not self._woken and not self._stop.is_set():
                self._work.wait(timeout_s)

    def drain(self, timeout_s: float) -> bool:
        """Wait until every entry queued so far was delivered; False after ``timeout_s``."""
        marks = self._outbox.marks()
        if not marks:
            return True
        deadline = time.monotonic() + timeout_s
        self.wake()
        with self._acked:
            while not self._outbox.passed(marks):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acked.wait(min(left, 0.1))
        return True

    def stop(self, join_timeout_s: float) -> None:
        """Stop the thread (after the delivery in flight, if any, up to ``join_timeout_s``)."""
        self._stop.set()
        self.wake()  # after _stop: the thread checks _stop once awake, no wake-up is lost
        self._thread.join(join_timeout_s)

    def _run(self) -> None:
        backoff = self.retry_min_s
        claimed = False
        while not self._stop.is_set():
            claimed = claimed or self._claim()
            with self._work:
                self._woken = False
            if self._stop.is_set():
                break
            try:
                sent = self._send_next(claimed)
            except Retry as e:
                self._failed(str(e))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            except Exception as e:  # never let the thread die: the spool keeps the points
                if self._stop.is_set():
                    break
                log.exception("sender for %s failed; retrying", self.server)
                self._failed(f"sender error ({type(e).__name__})")
                self._stop.wait(self.retry_max_s)
                continue
            if not sent:
                self._idle(SPOOL_POLL_S if claimed else UNCLAIMED_POLL_S)
                continue
            backoff = self.retry_min_s
            if self.last_error is not None:
                log.warning("%s answers again; sending spooled points", self.server)
                self.last_error = None
            with self._acked:
                self._acked.notify_all()

    def _claim(self) -> bool:
        """Become the disk spool's only consumer (True without one); False while another store
        drains it: then send only what waits in memory, and ask again."""
        spool = self._outbox.spool
        if spool is None:
            return True
        try:
            return spool.claim_consumer()
        except OSError as e:
            self._failed(f"cannot lock the spool ({e.strerror})")
            return False

    def _send_next(self, claimed: bool) -> bool:
        """Deliver and acknowledge the oldest batch; False when there is none."""
        queue, last_id, lines = self._next_batch(claimed)
        if not lines:
            return False
        rejected = self._deliver(lines)
        if rejected:
            self._keep_rejected(queue, rejected)
        queue.ack(last_id)
        return True

    def _next_batch(self, claimed: bool) -> tuple[Queue, int, list[str]]:
        """The oldest batch: from the disk spool while it holds any, then from memory."""
        spool = self._outbox.spool
        if claimed and spool is not None:
            try:
                last_id, lines = spool.peek(self.batch_size)
            except SpoolError as e:  # an unreadable spool must not hold back what is in memory
                self._failed(str(e))
            else:
                if lines:
                    return spool, last_id, lines
        last_id, lines = self._outbox.memory.peek(self.batch_size)
        return self._outbox.memory, last_id, lines

    def _keep_rejected(self, queue: Queue, rejected: list[tuple[str, str]]) -> None:
        """Keep the lines refused for good aside, grouped by reason, and say where."""
        kept: Path | None = None
        for reason, group in itertools.groupby(rejected, key=lambda r: r[1]):
            kept = queue.reject([line for line, _ in group], reason)
        log.error(
            "%s refused %d point(s) for good (%s); kept in %s",
            self.server,
            len(rejected),
            rejected[0][1],
            kept or "the log above",
        )

    def _failed(self, error: str) -> None:
        if error != self.last_error:
            where = self._outbox.where
            log.warning("%s: %s; points stay %s, retrying", self.server, error, where)
        self.last_error = error


__all__ = ["Deliver", "Retry", "Sender"]
