"""Where written points wait to be sent: the disk spool, or a bounded memory queue while it fails.

Points go to a durable :class:`~exporters.stores.spool.Spool` in the spool directory
(``TUBAI_SPOOL_DIR``, else ``data/spool``, one subdirectory per store). A spool serves one
database: opening one that holds another database's points is refused. ``max_bytes`` (or
``TUBAI_SPOOL_MAX_MB`` in the environment) caps its disk use.

A spool directory that cannot be created or written, or a spool that is full (disk full, or the
cap), does not stop the writer: one error line names the spool, the reason and the fix, and
points wait in a bounded :class:`~exporters.stores.spool.MemorySpool` (the oldest dropped beyond
its bound, counted and logged), to be sent after whatever the disk spool still holds. Writes go
back to the disk spool once the memory queue has drained. What waits in memory is lost if the
process ends.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from exporters.errors import StoreError, UsageError
from exporters.stores.spool import MemorySpool, Queue, Spool, SpoolError

log = logging.getLogger(__name__)

DEFAULT_SPOOL_ROOT = Path("data") / "spool"
DEFAULT_MEMORY_BOUND = 200_000

Marks = list[tuple[Queue, int]]
"""The id of the newest entry of each queue, at one moment."""


def default_spool_dir(name: str) -> Path:
    """``name``'s spool directory under ``TUBAI_SPOOL_DIR`` (else ``data/spool``)."""
    root = Path(os.environ.get("TUBAI_SPOOL_DIR") or DEFAULT_SPOOL_ROOT)
    return root / re.sub(r"[^A-Za-z0-9._-]", "_", name)


def max_bytes_from_env() -> int | None:
    """``TUBAI_SPOOL_MAX_MB`` as bytes; None (no cap) when unset."""
    text = os.environ.get("TUBAI_SPOOL_MAX_MB", "").strip()
    if not text:
        return None
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not (mb > 0 and math.isfinite(mb)):
        raise UsageError(
            f"TUBAI_SPOOL_MAX_MB={text!r} is not a size: give the spool's cap in megabytes (> 0)"
        )
    return int(mb * 1e6)


class Outbox:
    """The disk spool of ``database`` in ``directory``, and the memory queue it fails over to.

    ``spool`` is None when the spool cannot even be read; ``name`` says whose points these are
    in the memory queue's log lines.
    """

    def __init__(
        self,
        directory: Path,
        database: str,
        *,
        max_bytes: int | None = None,
        memory_bound: int = DEFAULT_MEMORY_BOUND,
        name: str = "",
    ) -> None:
        self.directory = directory
        if max_bytes is None:
            max_bytes = max_bytes_from_env()
        self.memory = MemorySpool(memory_bound, directory, name=name)
        self.spool: Spool | None = None
        self._lock = threading.Lock()
        self._to_memory = False  # the disk spool failed: writes wait in memory until it drains
        self._told: set[str] = set()
        self._open(database, max_bytes)

    def _open(self, database: str, max_bytes: int | None) -> None:
        """Open the disk spool and check whose it is; on failure, fail over to memory."""
        try:
            self.spool = Spool(self.directory, max_bytes=max_bytes)
            owner = self.spool.get_meta("database")
            if owner is None:
                self.spool.set_meta("database", database)
        except SpoolError as e:
            if self.spool is not None and e.what == "cannot be read":
                self.spool.close()
                self.spool = None
            self._failed_over(e)
            return
        if owner is not None and owner != database:
            self.spool.close()
            raise StoreError(
                f"spool {self.directory} holds points for database {owner!r}, not "
                f"{database!r}: give this store its own spool directory (TUBAI_SPOOL_DIR or "
                "spool_dir)"
            )

    def append(self, lines: Sequence[str]) -> None:
        """Into the disk spool; into memory while it fails and until what went there is sent."""
        with self._lock:
            if self.spool is not None and not (self._to_memory and len(self.memory)):
                try:
                    self.spool.append(lines)
                except SpoolError as e:
                    self._failed_over(e)
                else:
                    if self._to_memory:
                        self._to_memory = False
                        self._tell(logging.INFO, f"spool {self.spool.path} takes points again")
                    return
            self._to_memory = True
            self.memory.append(lines)

    def _failed_over(self, e: SpoolError) -> None:
        self._to_memory = True
        cap = self.spool.max_bytes if self.spool is not None else None
        fix = f"make {self.directory} a writable directory with free space"
        if cap is not None and "full" in e.reason:
            fix = f"raise the spool's cap ({cap:,} bytes: TUBAI_SPOOL_MAX_MB) or free space"
        self._tell(
            logging.ERROR,
            f"spool {e.path} {e.what} ({e.reason}): points are kept in memory (up to "
            f"{self.memory.bound:,}) and sent directly, and lost if this process ends; {fix}, "
            "or set TUBAI_SPOOL_DIR",
        )

    def _tell(self, level: int, message: str) -> None:
        """Log ``message`` once in this outbox's life."""
        if message not in self._told:
            self._told.add(message)
            log.log(level, "%s", message)

    def __len__(self) -> int:
        """How many entries wait, on disk and in memory."""
        return (len(self.spool) if self.spool is not None else 0) + len(self.memory)

    @property
    def in_memory(self) -> int:
        """How many entries wait in memory (lost if the process ends)."""
        return len(self.memory)

    @property
    def where(self) -> str:
        """Where entries wait, for log lines: ``spooled in DIR`` or ``in memory``."""
        return f"spooled in {self.directory}" if self.spool is not None else "in memory"

    def marks(self) -> Marks:
        """The newest entry of each queue that holds any: everything queued so far."""
        queues = [q for q in (self.spool, self.memory) if q is not None]
        return [(q, tail) for q in queues if (tail := q.tail_id()) is not None]

    @staticmethod
    def passed(marks: Marks) -> bool:
        """Whether every entry up to ``marks`` has left its queue."""
        return all((head := q.head_id()) is None or head > tail for q, tail in marks)

    def close(self) -> None:
        """Close both queues; what the spool holds stays on disk, what memory holds is lost."""
        self.memory.close()
        if self.spool is not None:
            self.spool.close()


__all__ = [
    "DEFAULT_MEMORY_BOUND",
    "DEFAULT_SPOOL_ROOT",
    "Outbox",
    "default_spool_dir",
    "max_bytes_from_env",
]
