"""The InfluxDB store: line protocol to ``/write``, InfluxQL to ``/query`` (the v1 HTTP API).

The store puts together four parts, each in its own module:

- :mod:`~exporters.stores.influxdb_url`: the store URL and the credentials (constructor or
  environment, never the URL, never in ``repr``, log lines or error messages), and the CA file
  that verifies a TLS server's certificate (``ca_file``, the URL's ``?ca=`` or
  ``TUBAI_INFLUXDB_CA``);
- :mod:`~exporters.stores.outbox`: where written points wait, durably in an on-disk spool, or in
  a bounded memory queue while the spool directory is unusable or full
  (``spool_max_bytes``/``TUBAI_SPOOL_MAX_MB`` caps the spool, ``memory_bound`` the queue);
- :mod:`~exporters.stores.sender`: the background thread that drains them in order, in
  batches, retrying with capped exponential backoff while the server is down, answers 5xx or
  refuses the credentials; points refused for good (HTTP 400) are kept, with the server's
  reason, in ``rejected.lp`` in the spool directory;
- :mod:`~exporters.stores.influxdb_api`: the HTTP client, the one place that translates the
  server's and requests' errors.

:meth:`InfluxDBStore.write` spools and returns; a store opened on a spool that still holds
points (after a crash, or a close while the server was down) sends those first.
:meth:`~InfluxDBStore.read` returns what the server has: call :meth:`~InfluxDBStore.flush` first
to read your own writes. :meth:`~InfluxDBStore.close` says how many points waiting in memory it
loses.

Types: every number (int or float, not bool) is written as a float, so that a field never gets
two types in InfluxDB; :meth:`~InfluxDBStore.read` returns numbers as floats (the SQLite store
keeps ints, so readers treat numbers as numbers). Strings and bools are kept. NaN and infinity
cannot be stored and are left out; a point left with no field is skipped with a warning.
Line protocol cannot carry everything: :meth:`~InfluxDBStore.write` refuses, with
:class:`~exporters.errors.UsageError` and before spooling any of the batch, what
:mod:`~exporters.stores.lineprotocol` cannot write. Tag values are otherwise stored verbatim;
string fields too, newlines included. An empty tag value means "no such tag".
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from exporters.errors import DatabaseNotFound, StoreError, UsageError
from exporters.schema import FieldValue, Point
from exporters.stores import influxql
from exporters.stores.base import Columns, Store
from exporters.stores.influxdb_api import InfluxDBAPI
from exporters.stores.influxdb_url import Credentials, Endpoint
from exporters.stores.influxdb_url import ca_file as tls_ca_file
from exporters.stores.lineprotocol import line as line_protocol
from exporters.stores.outbox import DEFAULT_MEMORY_BOUND, Outbox, default_spool_dir
from exporters.stores.sender import Sender

log = logging.getLogger(__name__)

SENDER_STOP_S = 0.5  # at close, how long a delivery in flight is waited for

SeriesKey = tuple[tuple[str, str], ...]


class InfluxDBStore(Store):
    """Points in one InfluxDB database, written through a durable spool; see the module doc."""

    def __init__(
        self,
        base_url: str,
        database: str,
        *,
        spool_dir: Path | str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        create_database: bool = True,
        batch_size: int = 5000,
        timeout_s: float = 10.0,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
        flush_timeout_s: float = 30.0,
        close_timeout_s: float = 5.0,
        spool_max_bytes: int | None = None,
        memory_bound: int = DEFAULT_MEMORY_BOUND,
    ) -> None:
        endpoint = Endpoint.parse(base_url, database)
        endpoint = dataclasses.replace(endpoint, ca_file=tls_ca_file(endpoint, ca_file))
        self.base_url, self.database, self.url = endpoint.base_url, database, endpoint.url
        self.spool_dir = Path(default_spool_dir(endpoint.name) if spool_dir is None else spool_dir)
        self.flush_timeout_s = flush_timeout_s
        self.close_timeout_s = close_timeout_s
        self._closed = False
        self._api = InfluxDBAPI(  # first: an unusable CA file is refused before the spool opens
            endpoint,
            Credentials.resolve(token, username, password),
            timeout_s=timeout_s,
            create_database=create_database,
        )
        self._outbox = Outbox(
            self.spool_dir,
            database,
            max_bytes=spool_max_bytes,
            memory_bound=memory_bound,
            name=f"InfluxDB store {self.url}",
        )
        self._sender = Sender(
            self._outbox,
            self._api.write,
            server=f"InfluxDB at {self.base_url}",
            thread_name=f"tubai-influxdb-sender {database}",
            batch_size=batch_size,
            retry_min_s=retry_min_s,
            retry_max_s=retry_max_s,
        )
        self._sender.start()

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> InfluxDBStore:
        """A store for ``influxdb://host[:port]/DBNAME`` (``influxdb+https://`` for TLS, with
        ``?ca=PATH`` for a server whose certificate a private CA signed)."""
        endpoint = Endpoint.from_url(url)
        kwargs.setdefault("ca_file", endpoint.ca_file)
        return cls(endpoint.base_url, endpoint.database, **kwargs)  # type: ignore[arg-type]

    # -- writing ------------------------------------------------------------------------------

    def write(self, points: Iterable[Point]) -> None:
        """Spool ``points`` durably and return; the sender thread delivers them in order."""
        self._check_open()
        lines, skipped = [], 0
        for point in points:
            line = line_protocol(point)
            if line:
                lines.append(line)
            else:
                skipped += 1
        if skipped:
            log.warning("skipped %d point(s) with no storable field (NaN, inf or none)", skipped)
        if lines:
            self._outbox.append(lines)
            self._sender.wake()

    def refusal(self, point: Point) -> str | None:
        """Why :meth:`write` would refuse ``point``: what line protocol cannot carry."""
        try:
            line_protocol(point)
        except UsageError as e:
            return str(e)
        return None

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until the server acknowledged every point written so far.

        Raises :class:`StoreError` after ``timeout_s`` (default: ``flush_timeout_s``) with how many
        points are still spooled and where; they stay there and are sent later.
        """
        self._check_open()
        timeout_s = self.flush_timeout_s if timeout_s is None else timeout_s
        if self._sender.drain(timeout_s):
            return
        error = self._sender.last_error
        why = f": {error}" if error else ""
        in_memory = self._outbox.in_memory
        memory = f" ({in_memory} of them in memory, lost if this process ends)" if in_memory else ""
        raise StoreError(
            f"{len(self._outbox)} point(s) still spooled in {self.spool_dir}{memory} after "
            f"{timeout_s:g} s, not yet stored in InfluxDB at {self.base_url}{why}; they are sent "
            "when it answers"
        )

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then stop, all within ``timeout_s`` (default ``close_timeout_s``); unsent
        points stay in the spool (those waiting in memory are lost, and an error says how many).
        A delivery still in flight then (a server that hangs) is not waited for: what it
        carries stays in the spool too, and is sent again by the next store."""
        if self._closed:
            return
        budget = self.close_timeout_s if timeout_s is None else max(0.0, timeout_s)
        try:
            self.flush(max(0.0, budget - SENDER_STOP_S))
        except StoreError as e:
            log.warning("%s", e)
        self._closed = True
        self._sender.stop(min(budget, SENDER_STOP_S))
        if self._outbox.in_memory:
            log.error(
                "%d point(s) waiting in memory were not stored in InfluxDB at %s and are lost",
                self._outbox.in_memory,
                self.base_url,
            )
        self._outbox.close()
        self._api.close()

    def pending(self) -> int:
        """How many points wait to be sent, in the spool and in memory."""
        self._check_open()
        return len(self._outbox)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"InfluxDB store {self.url} is closed: open a new one")

    # -- reading ------------------------------------------------------------------------------

    def read(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
        *,
        missing_ok: bool = False,
    ) -> list[Point]:
        """Points the server holds (see :meth:`flush`), oldest first; numbers come back float."""
        self._check_open()
        if fields is not None and not fields:
            return []
        series: dict[SeriesKey, list[Point]] = {}
        try:
            for key, s in self._series(measurement, start_ns, end_ns, tags, fields):
                series.setdefault(key, []).extend(_points(measurement, dict(key), s))
        except DatabaseNotFound:
            if not missing_ok:
                raise
            return []
        merged = heapq.merge(*series.values(), key=lambda p: p.time_ns)
        return list(merged)

    def read_columns(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] = (),
    ) -> list[Columns]:
        self._check_open()
        if not fields:
            return []
        out: dict[SeriesKey, Columns] = {}
        for key, s in self._series(measurement, start_ns, end_ns, tags, fields):
            columns = s.get("columns") or []
            rows = s.get("values") or []
            cols = out.setdefault(key, Columns.empty(dict(key), fields))
            t = columns.index("time")
            cols.times.extend(int(row[t]) for row in rows)
            for f in fields:
                i = columns.index(f) if f in columns else None
                cols.values[f].extend(_number(row[i]) if i is not None else None for row in rows)
        return list(out.values())

    def _series(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None,
        fields: Sequence[str] | None,
    ) -> Iterator[tuple[SeriesKey, dict]]:
        """(tags, series) of one query, chunk by chunk, in the server's order; empty tags out."""
        q = influxql.select(measurement, start_ns, end_ns, tags, fields)
        for s in self._api.series(q):
            yield tuple(sorted((k, v) for k, v in (s.get("tags") or {}).items() if v)), s

    def __repr__(self) -> str:
        return f"InfluxDBStore({self.url!r}, spool_dir={str(self.spool_dir)!r})"


def _points(measurement: str, tags: dict[str, str], series: dict) -> list[Point]:
    columns = series.get("columns") or []
    if "time" not in columns:
        return []
    t = columns.index("time")
    named = [(i, c) for i, c in enumerate(columns) if i != t]
    out = []
    for row in series.get("values") or []:
        fields = {c: _number(v) for i, c in named if (v := row[i]) is not None}
        if fields:
            out.append(Point(measurement, tags, fields, int(row[t])))
    return out


def _number(value: FieldValue) -> FieldValue:
    """A value as read: JSON ints come back as floats, as every number was written."""
    return float(value) if type(value) is int else value


__all__ = ["InfluxDBStore"]
