"""A durable, ordered on-disk queue of line-protocol entries: the InfluxDB store's spool.

The queue is one SQLite file, ``spool.db``, in the spool directory (WAL journal,
``synchronous=FULL``): an :meth:`Spool.append` that returned has survived a process kill and a
power cut; a kill during an append loses at most that append, never part of it. Entries leave
the queue in the order they entered: the consumer :meth:`~Spool.peek` s a batch, delivers it and
:meth:`~Spool.ack` s it. Entries that the server refuses for good are copied to ``rejected.lp``
in the same directory with the reason (:meth:`~Spool.reject`), so nothing is lost silently.

One object may be shared by threads (a writer and a sender). Several processes may append to one
spool; :meth:`~Spool.claim_consumer` lets only one of them drain it at a time.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from exporters.errors import StoreError

SPOOL_FILE = "spool.db"
REJECTED_FILE = "rejected.lp"
LOCK_FILE = "consumer.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Spool:
    """An ordered queue of strings in ``directory/spool.db``; see the module docstring."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / SPOOL_FILE
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise self._error("cannot be created", e) from e
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            # A real write, so that a read-only or full directory fails here and not later.
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?)",
                (str(time.time()),),
            )
        except sqlite3.Error as e:
            self._db.close()
            raise self._error("is not writable", e) from e

    def _error(self, what: str, e: BaseException) -> StoreError:
        reason = getattr(e, "strerror", None) or str(e)
        return StoreError(
            f"spool {self.path} {what} ({reason}): make {self.directory} writable with free "
            "space, or set TUBAI_SPOOL_DIR to a directory that is"
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
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def reject(self, lines: Sequence[str], reason: str) -> Path:
        """Append ``lines`` to ``rejected.lp`` after a ``# <time> <reason>`` comment; fsync it."""
        path = self.directory / REJECTED_FILE
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        note = " ".join(reason.split())
        text = f"# {stamp} {note}\n" + "".join(line + "\n" for line in lines)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise self._error("cannot keep rejected points", e) from e
        return path

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


__all__ = ["REJECTED_FILE", "SPOOL_FILE", "Spool"]
