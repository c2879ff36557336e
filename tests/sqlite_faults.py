"""SQLite stores in trouble, made with real files and processes: another process holding the
write lock (:func:`write_lock`), a file SQLite reads as read-only (:func:`read_only`) or one
damaged past its schema (:func:`damaged`); :func:`wait_for` polls for what they cause."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exporters.schema import Point
from exporters.stores.sqlite import SQLiteStore

# A process that takes the SQLite write lock, says so, holds it, commits and says so.
HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
print("released", flush=True)
"""


@contextmanager
def write_lock(db: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``db``'s write lock for ``seconds`` from when this enters."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def released(holder: subprocess.Popen[str]) -> None:
    """Wait until the holder committed."""
    assert holder.stdout is not None and holder.stdout.readline() == "released\n"


def wait_for(what: str, ok, timeout_s: float = 120.0) -> None:
    """Poll ``ok()`` until true; the timeout only ends a hang (a busy machine is slow)."""
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def read_only(db: Path) -> None:
    """Mark ``db`` read-only the way SQLite reads it (write version 3 in the header): root,
    which these tests may run as, ignores file permissions."""
    with open(db, "r+b") as f:
        f.seek(18)
        f.write(bytes([3]))


def damaged(db: Path) -> None:
    """Overwrite every page after the first (the schema) with garbage: it opens, reads its
    schema, and fails on the first write."""
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(4096)
        f.write(b"\xff" * (size - 4096))


def tubai_db(path: Path) -> Path:
    """A tubai store file with some points, checkpointed into the main file."""
    with SQLiteStore(path) as store:
        store.write(
            [Point("energy", {"host": "h"}, {"joules_total": float(i)}, i) for i in range(3000)]
        )
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path
