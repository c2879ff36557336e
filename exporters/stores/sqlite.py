"""The embedded store: one SQLite file in WAL mode, no server.

``sqlite:///data/tubai.db`` is relative to the working directory, ``sqlite:////abs/tubai.db``
absolute (SQLAlchemy's convention). Each series (measurement plus tags) gets a row in
``series``; its points hold the fields as JSON, so types survive (ints stay ints, bools bools).
Every value reaches SQLite as a bound parameter, never pasted into SQL. Several processes may
share the file (the agent writes samples while a benchmark writes run events): a write waits up
to ``BUSY_S`` for another process's write transaction to end. :meth:`SQLiteStore.check_writable`
writes (and rolls back) a probe row, so that a read-only or damaged file is found at start.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from exporters.errors import StoreError, UsageError
from exporters.schema import FieldValue, Point, check_names
from exporters.stores.base import Columns, Store

log = logging.getLogger(__name__)

BUSY_S = 30.0  # how long a write waits for another process's write transaction
PROBE_BUSY_S = 1.0  # how long check_writable waits for it: a busy store is writable, just busy

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    UNIQUE (measurement, tags)
);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL REFERENCES series(id),
    time_ns INTEGER NOT NULL,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_by_series_time ON points (series_id, time_ns);
"""


class SQLiteStore(Store):
    """Points in a local SQLite database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_S, check_same_thread=False)
            self._initialise()
        except (OSError, sqlite3.Error, ValueError) as e:  # ValueError: a NUL in the path
            raise UsageError(
                f"cannot open the SQLite store {self.path}: {e}; choose a writable path "
                "with --store sqlite:///PATH or TUBAI_STORE"
            ) from e
        self._lock = threading.Lock()
        # Each series' id, found once: by (measurement, tags JSON), and by (measurement, tag
        # items in the point's order), so that a point of a known series needs neither sorting
        # nor JSON for its tags. Both are emptied when a write rolls back (a new series with it).
        self._series: dict[tuple[str, str], int] = {}
        self._seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._fields: set[str] = set()  # field names checked already

    def _initialise(self) -> None:
        """WAL mode and schema; another process creating the file at once may hold it briefly
        (switching to WAL does not wait on SQLite's busy timeout), so retry for a while."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        path = url.removeprefix("sqlite://")
        if not path.startswith("/") or path == "/":
            raise UsageError(
                f"store URL {url!r} names no file: use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        if "?" in path:
            raise UsageError(
                f"store URL {url!r} has a query ({path[path.index('?') :]!r}), which a SQLite "
                "store URL does not take: give the path alone, sqlite:///PATH"
            )
        return cls(path[1:])

    def check_writable(self) -> None:
        """Write a probe row into both tables and roll it back: a read-only or damaged file
        fails here with a :class:`UsageError`. Another process's write lock is waited on for
        ``PROBE_BUSY_S`` only, and then logged: that store is writable, just busy."""
        with self._lock:
            try:
                self._db.execute(f"PRAGMA busy_timeout = {int(PROBE_BUSY_S * 1000)}")
                try:
                    self._probe()
                finally:
                    self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_S * 1000)}")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e):
                    raise self._unwritable(e) from e
                log.warning(
                    "the SQLite store %s is locked by another process's write: points wait "
                    "until it ends",
                    self.path,
                )
            except sqlite3.Error as e:
                raise self._unwritable(e) from e

    def _probe(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT INTO series (measurement, tags) VALUES ('', '')")
            self._db.execute("INSERT INTO points (series_id, time_ns, fields) VALUES (0, 0, '{}')")
        finally:
            if self._db.in_transaction:
                self._db.rollback()

    def _unwritable(self, e: sqlite3.Error) -> UsageError:
        return UsageError(
            f"the SQLite store {self.path} cannot be written ({e}): choose a writable file "
            "with --store sqlite:///PATH or TUBAI_STORE (move a damaged one aside)"
        )

    def _series_id(self, measurement: str, tags_json: str) -> int:
        key = (measurement, tags_json)
        sid = self._series.get(key)
        if sid is None:
            self._db.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", key)
            (sid,) = self._db.execute(
                "SELECT id FROM series WHERE measurement = ? AND tags = ?", key
            ).fetchone()
            self._series[key] = sid
        return sid

    def _row(self, p: Point) -> tuple[int, int, str]:
        """The ``points`` row of ``p``; its names are checked once per series and field name."""
        seen = (p.measurement, tuple(p.tags.items()))
        sid = self._seen.get(seen)
        if sid is None or not self._fields.issuperset(p.fields):
            key = (p.measurement, _tags_json(p.tags))
            if key not in self._series or not self._fields.issuperset(p.fields):
                check_names(p)
                self._fields.update(p.fields)
            sid = self._seen[seen] = self._series_id(*key)
        fields = p.fields if type(p.fields) is dict else dict(p.fields)
        return sid, p.time_ns, _FIELDS_JSON(fields)

    def write(self, points: Iterable[Point]) -> None:
        """Store ``points`` in one transaction, all or none.

        Raises :class:`UsageError` for a point no store can keep (:func:`check_names`), and
        :class:`StoreError` when SQLite fails (after waiting ``BUSY_S`` for another process's
        lock, say)."""
        with self._lock:
            try:
                with self._db:
                    rows = [self._row(p) for p in points]
                    self._db.executemany(
                        "INSERT INTO points (series_id, time_ns, fields) VALUES (?, ?, ?)", rows
                    )
            except UsageError:
                self._forget_series()  # rolled back with the transaction
                raise
            except (sqlite3.Error, ValueError) as e:
                self._forget_series()
                why = str(e)
                if "locked" in why:
                    why = f"another process held its write lock for over {BUSY_S:g} s"
                raise StoreError(f"writing to the SQLite store {self.path} failed: {why}") from e

    def _forget_series(self) -> None:
        """Forget the series ids known: a write rolled back, maybe with a series it added."""
        self._series.clear()
        self._seen.clear()

    def _wanted(self, measurement: str, tags: Mapping[str, str] | None) -> dict[int, dict]:
        """Series ids of ``measurement`` whose tags match, with their tags."""
        found = {}
        for sid, tags_json in self._db.execute(
            "SELECT id, tags FROM series WHERE measurement = ?", (measurement,)
        ):
            series_tags = json.loads(tags_json)
            if not tags or all(series_tags.get(k) == v for k, v in tags.items()):
                found[sid] = series_tags
        return found

    def _select(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None,
        picks: str,
        order: str,
    ) -> tuple[dict[int, dict], list[tuple]]:
        """The matching series (id: tags) and their rows ``(series_id, time_ns, *picks)`` in the
        window, sorted by ``order``; ``picks`` and ``order`` are SQL written here, never user
        strings."""
        with self._lock:
            wanted = self._wanted(measurement, tags)
            if not wanted:
                return {}, []
            rows = self._db.execute(
                f"SELECT series_id, time_ns{picks} FROM points WHERE series_id IN "
                f"({','.join('?' * len(wanted))}) AND time_ns BETWEEN ? AND ? ORDER BY {order}",
                (*wanted, start_ns, end_ns),
            ).fetchall()
        return wanted, rows

    def read(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
        *,
        missing_ok: bool = False,  # an SQLite store's database always exists
    ) -> list[Point]:
        simple = fields is not None and all(_PLAIN.match(f) for f in fields)
        picks = _picks(fields) if simple else ", fields"
        wanted, rows = self._select(measurement, start_ns, end_ns, tags, picks, "time_ns, rowid")
        points = []
        for sid, time_ns, *values in rows:
            if simple:
                found = _picked(fields, values)
            else:
                found = json.loads(values[0])
                if fields is not None:
                    found = {k: found[k] for k in fields if k in found}
            if found:
                points.append(Point(measurement, wanted[sid], found, time_ns))
        return points

    def read_columns(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] = (),
    ) -> list[Columns]:
        if not fields or not all(_PLAIN.match(f) for f in fields):
            return super().read_columns(measurement, start_ns, end_ns, tags, fields)
        wanted, rows = self._select(
            measurement, start_ns, end_ns, tags, _picks(fields), "series_id, time_ns, rowid"
        )
        out: dict[int, Columns] = {}
        for sid, time_ns, *values in rows:
            cols = out.get(sid)
            if cols is None:
                cols = out[sid] = Columns.empty(wanted[sid], fields)
            cols.times.append(time_ns)
            for i, f in enumerate(fields):
                cols.values[f].append(_JSON_BOOLS.get(values[2 * i + 1], values[2 * i]))
        return list(out.values())

    def every_nth_time(self, measurement: str, n: int) -> list[int]:
        """Every ``n``-th time of ``measurement``'s points, oldest first (the first included):
        where windows of about ``n`` points each start. SQLite sorts the times (spilling to
        disk where it must); only every ``n``-th comes back."""
        q = (
            "SELECT time_ns FROM (SELECT p.time_ns, row_number() OVER (ORDER BY p.time_ns) AS n "
            "FROM points p JOIN series s ON s.id = p.series_id WHERE s.measurement = ?) "
            "WHERE (n - 1) % ? = 0 ORDER BY time_ns"
        )
        with self._lock:
            return [t for (t,) in self._db.execute(q, (measurement, n))]

    def close(self, timeout_s: float | None = None) -> None:
        """Close the file; a write still waiting on another process's lock after ``timeout_s``
        (default ``BUSY_S``) is left to end with the process, and said so."""
        if not self._lock.acquire(timeout=BUSY_S if timeout_s is None else max(0.0, timeout_s)):
            log.warning(
                "the SQLite store %s is left open: a write still waits for its lock", self.path
            )
            return
        try:
            self._db.close()
        finally:
            self._lock.release()


# A point's fields as JSON, as json.dumps(fields, allow_nan=False) writes them, without building
# an encoder per point.
_FIELDS_JSON = json.JSONEncoder(allow_nan=False).encode
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A json_extract value by its json_type: SQLite gives 1 and 0 for JSON's booleans, so these two
# come back as bools; any other value (None where the field is absent) as it is.
_JSON_BOOLS = {"true": True, "false": False}


def _picks(fields: Sequence[str]) -> str:
    """SQL that lets SQLite pick plain-named fields out of the JSON: several times faster than
    decoding it in Python. Only names matching ``_PLAIN`` get here, never user strings."""
    return "".join(f", json_extract(fields, '$.{f}'), json_type(fields, '$.{f}')" for f in fields)


def _picked(names: Sequence[str], values: list) -> dict[str, FieldValue]:
    """Fields from ``json_extract``/``json_type`` pairs; JSON booleans come back as bools."""
    out: dict[str, FieldValue] = {}
    for i, name in enumerate(names):
        value, kind = values[2 * i], values[2 * i + 1]
        if kind is not None:
            out[name] = _JSON_BOOLS.get(kind, value)
    return out


def _tags_json(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":"))
