"""A durable, ordered on-disk queue of line-protocol entries: the InfluxDB store's spool.

The queue is one SQLite file, ``spool.db``, in the spool directory (WAL journal,
``synchronous=FULL``): an :meth:`Spool.append` that returned has survived a process kill and a
power cut; a kill during an append loses at most that append, never part of it. Entries leave
the queue in the order they entered: the consumer :meth:`~Spool.peek` s a batch, delivers it and
:meth:`~Spool.ack` s it. Entries that the server refuses for good are copied to ``rejected.lp``
in the same directory with the reason (:meth:`~Spool.reject`), so nothing is lost silently.

One object may be shared by threads (a writer and a sender). Several processes may append to one
spool; :meth:`~Spool.claim_consumer` lets only one of them drain it at a time.

``max_bytes`` caps the spool's disk use (SQLite's ``max_page_count``; the WAL journal adds up to
about 4 MB while it waits for a checkpoint): a full spool refuses appends with the same
:class:`SpoolError` as a full disk ("database or disk is full").

:class:`MemorySpool` has the same interface in memory, bounded: what the InfluxDB store falls
back on when the spool directory is unusable or full. It keeps the newest ``bound`` entries and
drops the oldest beyond, counted and logged (an error at the first and at every 10,000th).
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from exporters.errors import StoreError

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.db"
REJECTED_FILE = "rejected.lp"
LOCK_FILE = "consumer.lock"
DROP_REPORT_EVERY = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SpoolError(StoreError):
    """The spool cannot do what was asked: ``path``, ``what`` went wrong and ``reason`` (OS or
    SQLite's words, e.g. "Permission denied", "database or disk is full")."""

    def __init__(self, message: str, path: Path, what: str, reason: str) -> None:
        super().__init__(message)
        self.path, self.what, self.reason = path, what, reason


class Spool:
    """An ordered queue of strings in ``directory/spool.db``; see the module docstring."""

    def __init__(self, directory: Path | str, max_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / SPOOL_FILE
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except FileExistsError as e:
            e.strerror = f"{self.directory} exists and is not a directory"
            raise self._error("cannot be created", e) from e
        except (OSError, sqlite3.Error) as e:
            raise self._error("cannot be created", e) from e
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if max_bytes is not None:
                page = self._db.execute("PRAGMA page_size").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count={max(1, int(max_bytes) // page)}")
            self._db.executescript(_SCHEMA)
            # A real write, so that a read-only or full directory fails here and not later.
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?)",
                (str(time.time()),),
            )
        except sqlite3.Error as e:
            self._db.close()
            raise self._error("is not writable", e) from e

    def _error(self, what: str, e: BaseException) -> SpoolError:
        reason = getattr(e, "strerror", None) or str(e)
        return SpoolError(
            f"spool {self.path} {what} ({reason}): make {self.directory} writable with free "
            "space, or set TUBAI_SPOOL_DIR to a directory that is",
            self.path,
            what,
            reason,
        )

    def append(self, lines: Sequence[str]) -> int:
        """Add ``lines`` at the end, all or none; return the id of the last one (0 if none)."""
        if not lines:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO lines (line) VALUES (?)", ((line,) for line in lines)
                    )
                    last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite already rolled back a full database
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise self._error("cannot take more points", e) from e
        return int(last)

    def peek(self, n: int) -> tuple[int, list[str]]:
        """The oldest ``n`` entries and the id of the last of them; ``(0, [])`` when empty."""
        rows = self._query("SELECT id, line FROM lines ORDER BY id LIMIT ?", (n,))
        if not rows:
            return 0, []
        return int(rows[-1][0]), [line for _, line in rows]

    def ack(self, last_id: int) -> int:
        """Remove every entry up to and including ``last_id``; return how many went."""
        with self._lock:
            try:
                return self._db.execute("DELETE FROM lines WHERE id <= ?", (last_id,)).rowcount
            except sqlite3.Error as e:
                raise self._error("cannot be updated", e) from e

    def head_id(self) -> int | None:
        """Id of the oldest entry, ``None`` when empty."""
        return self._query("SELECT MIN(id) FROM lines")[0][0]

    def tail_id(self) -> int | None:
        """Id of the newest entry, ``None`` when empty."""
        return self._query("SELECT MAX(id) FROM lines")[0][0]

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM lines")[0][0])

    def get_meta(self, key: str) -> str | None:
        """A value stored with :meth:`set_meta`, ``None`` when absent."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Remember ``value`` under ``key`` in the spool file."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                )
            except sqlite3.Error as e:
                raise self._error("cannot be updated", e) from e

    def reject(self, lines: Sequence[str], reason: str) -> Path:
        """Append ``lines`` to ``rejected.lp`` after a ``# <time> <reason>`` comment; fsync it."""
        try:
            return _keep_rejected(self.directory, lines, reason)
        except OSError as e:
            raise self._error("cannot keep rejected points", e) from e

    def claim_consumer(self) -> bool:
        """Try to become the only consumer of this spool (across processes); True on success.

        The claim lasts until :meth:`close` (or the process ends).
        """
        if self._lock_fd is not None:
            return True
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def close(self) -> None:
        """Close the file and give up a consumer claim; the entries stay on disk."""
        with self._lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._db.close()

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise self._error("cannot be read", e) from e

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"


class MemorySpool:
    """:class:`Spool`'s interface in memory, at most ``bound`` entries; see the module docstring.

    ``name`` says whose entries these are in log lines; rejected entries still go to
    ``directory/rejected.lp`` where that can be written, and into the log where it cannot.
    """

    def __init__(self, bound: int, directory: Path | str | None = None, name: str = "") -> None:
        if int(bound) < 1:
            raise ValueError(f"the memory bound must be at least 1, not {bound!r}")
        self.bound = int(bound)
        self.directory = Path(directory) if directory is not None else None
        self.name = name or "in-memory spool"
        self.dropped = 0
        self._reported = 0
        self._lock = threading.Lock()
        self._entries: deque[tuple[int, str]] = deque()
        self._ids = itertools.count(1)

    def append(self, lines: Sequence[str]) -> int:
        """Add ``lines`` at the end, dropping the oldest beyond the bound; return the last id."""
        if not lines:
            return 0
        with self._lock:
            self._entries.extend((i, line) for line, i in zip(lines, self._ids))
            last = self._entries[-1][0]
            over = len(self._entries) - self.bound
            if over > 0:
                for _ in range(over):
                    self._entries.popleft()
                before, self.dropped = self.dropped, self.dropped + over
                if before == 0 or before // DROP_REPORT_EVERY != self.dropped // DROP_REPORT_EVERY:
                    self._report_drops()
        return last

    def _report_drops(self) -> None:
        log.error(
            "%s: more than %d point(s) wait in memory: dropped the oldest, %d so far; they are "
            "lost (bring the server back, or fix the spool directory so that points wait on disk)",
            self.name,
            self.bound,
            self.dropped,
        )
        self._reported = self.dropped

    def peek(self, n: int) -> tuple[int, list[str]]:
        """The oldest ``n`` entries and the id of the last of them; ``(0, [])`` when empty."""
        with self._lock:
            batch = list(itertools.islice(self._entries, n))
        if not batch:
            return 0, []
        return batch[-1][0], [line for _, line in batch]

    def ack(self, last_id: int) -> int:
        """Remove every entry up to and including ``last_id``; return how many went."""
        gone = 0
        with self._lock:
            while self._entries and self._entries[0][0] <= last_id:
                self._entries.popleft()
                gone += 1
        return gone

    def head_id(self) -> int | None:
        """Id of the oldest entry, ``None`` when empty."""
        with self._lock:
            return self._entries[0][0] if self._entries else None

    def tail_id(self) -> int | None:
        """Id of the newest entry, ``None`` when empty."""
        with self._lock:
            return self._entries[-1][0] if self._entries else None

    def __len__(self) -> int:
        return len(self._entries)

    def reject(self, lines: Sequence[str], reason: str) -> Path | None:
        """Keep ``lines`` in ``rejected.lp`` like :meth:`Spool.reject`, else in the log."""
        if self.directory is not None:
            try:
                return _keep_rejected(self.directory, lines, reason)
            except OSError:
                pass
        shown = " | ".join(lines[:20]) + (
            f" | ... ({len(lines) - 20} more)" if len(lines) > 20 else ""
        )
        log.error(
            "%s: %d point(s) refused for good (%s), not kept on disk (the spool directory is "
            "unusable): %s",
            self.name,
            len(lines),
            " ".join(reason.split()),
            shown,
        )
        return None

    def close(self) -> None:
        """Report drops not reported yet; the entries stay (they are lost with the process)."""
        with self._lock:
            if self.dropped > self._reported:
                self._report_drops()

    def __repr__(self) -> str:
        return f"MemorySpool(bound={self.bound}, entries={len(self._entries)})"


Queue = Spool | MemorySpool
"""Either queue: the sender drains both the same way."""


def _keep_rejected(directory: Path, lines: Sequence[str], reason: str) -> Path:
    """Append ``lines`` to ``directory/rejected.lp`` after a ``# <time> <reason>`` line; fsync."""
    path = directory / REJECTED_FILE
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    note = " ".join(reason.split())
    text = f"# {stamp} {note}\n" + "".join(line + "\n" for line in lines)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


__all__ = ["REJECTED_FILE", "SPOOL_FILE", "MemorySpool", "Queue", "Spool", "SpoolError"]
