"""The embedded store: one SQLite file in WAL mode, no server.

``sqlite:///data/tubai.db`` is relative to the working directory, ``sqlite:////abs/tubai.db``
absolute (SQLAlchemy's convention). Each series (measurement plus tags) gets a row in
``series``; its points hold the fields as JSON, so types survive (ints stay ints, bools bools).
Every value reaches SQLite as a bound parameter, never pasted into SQL. Several processes may
share the file (the agent writes samples while a benchmark writes run events).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from exporters.errors import StoreError, UsageError
from exporters.schema import FieldValue, Point
from exporters.stores.base import Store

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
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._initialise()
        except (OSError, sqlite3.Error) as e:
            raise UsageError(
                f"cannot open the SQLite store {self.path}: {e}; choose a writable path "
                "with --store sqlite:///PATH or TUBAI_STORE"
            ) from e
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}

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
        return cls(path[1:])

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

    def write(self, points: Iterable[Point]) -> None:
        with self._lock:
            try:
                with self._db:
                    rows = [
                        (
                            self._series_id(p.measurement, _tags_json(p.tags)),
                            p.time_ns,
                            json.dumps(dict(p.fields), allow_nan=False),
                        )
                        for p in points
                    ]
                    self._db.executemany(
                        "INSERT INTO points (series_id, time_ns, fields) VALUES (?, ?, ?)", rows
                    )
            except (sqlite3.Error, ValueError) as e:
                self._series.clear()
                raise StoreError(f"writing to the SQLite store {self.path} failed: {e}") from e

    def read(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[Point]:
        with self._lock:
            series = self._db.execute(
                "SELECT id, tags FROM series WHERE measurement = ?", (measurement,)
            ).fetchall()
            wanted = {
                sid: json.loads(tj)
                for sid, tj in series
                if not tags or all(json.loads(tj).get(k) == v for k, v in tags.items())
            }
            if not wanted:
                return []
            marks = ",".join("?" * len(wanted))
            rows = self._db.execute(
                f"SELECT series_id, time_ns, fields FROM points WHERE series_id IN ({marks}) "
                "AND time_ns BETWEEN ? AND ? ORDER BY time_ns, rowid",
                (*wanted, start_ns, end_ns),
            ).fetchall()
        points = []
        for sid, time_ns, fields_json in rows:
            values: dict[str, FieldValue] = json.loads(fields_json)
            if fields is not None:
                values = {k: values[k] for k in fields if k in values}
                if not values:
                    continue
            points.append(Point(measurement, wanted[sid], values, time_ns))
        return points

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _tags_json(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":"))
