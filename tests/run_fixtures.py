"""Runs with known energy, written into a store as the agent and the benchmark would.

:func:`add_run` writes a whole run (package samples and events); :func:`add_events` only the
run's events (through :func:`benchmark.records.write_event`, as the benchmark writes them),
:func:`add_power` an energy series of given watts (with the counter the agent would derive from
them), :func:`add_samples` any other series (``gpu``, ``cpu``), so that a test can build a window
sample by sample. :func:`add_raw` writes a point past every check of the event schema and of the
stores (a control character in a tag, a top-1 above 1), as another program or an older version
could have: for the tests of malformed runs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import requests
from influxdb_client import Point as LinePoint
from influxdb_client import WritePrecision

from benchmark.records import RunEnd, RunFail, RunStart, RunTags, write_event
from exporters.schema import FieldValue, Point, energy_tags
from exporters.stores.base import Store
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.sqlite import SQLiteStore

S = 1_000_000_000


def add_run(
    store: Store,
    run_id: str,
    model: str,
    host: str,
    start_s: float,
    seconds: float,
    joules: float,
    inferences: int = 1000,
    top1: float = 0.75,
    params: float | None = 5e6,
    macs: float | None = 3e8,
    idle_watts: float | None = None,
    covered: float = 1.0,
    fail: str | None = None,
    interval_s: float = 0.5,
) -> None:
    """A run of ``seconds`` drawing ``joules`` at constant power on ``host``'s package-0.

    Samples start 2 s before the window and end 2 s after it, unless ``covered`` < 1, when
    they stop at that fraction of the window. A ``fail`` reason writes a fail event, no end.
    """
    watts = joules / seconds
    t0, t1 = start_s, start_s + seconds
    last = t0 + covered * seconds if covered < 1 else t1 + 2
    tags = {**energy_tags("rapl", "package-0"), "host": host}
    points, t, k = [], t0 - 2, 0
    while t <= last + 1e-9:
        points.append(Point("energy", tags, {"joules_total": watts * (t - t0 + 2), "watts": watts},
                            round(t * S)))  # fmt: skip
        k += 1
        t = t0 - 2 + k * interval_s
    store.write(points)
    add_events(store, run_id, model, host, start_s, seconds, inferences, top1, params, macs,
               idle_watts, fail)  # fmt: skip


def add_events(
    store: Store,
    run_id: str,
    model: str,
    host: str,
    start_s: float,
    seconds: float,
    inferences: int = 1000,
    top1: float = 0.75,
    params: float | None = 5e6,
    macs: float | None = 3e8,
    idle_watts: float | None = None,
    fail: str | None = None,
) -> None:
    """The run's ``start`` event and its ``end`` (or, with a ``fail`` reason, ``fail``)."""
    tags = RunTags(run_id, model, "tensorflow", "synthetic", host)
    write_event(store, tags, RunStart(), round(start_s * S))
    end_ns = round((start_s + seconds) * S)
    if fail:
        write_event(store, tags, RunFail(reason=fail), end_ns)
    else:
        end = RunEnd(inferences=inferences, top1=top1, top5=min(1, top1 + 0.15),
                     accuracy_source="measured", batch_size=32, weights="imagenet",
                     duration_s=seconds, params=params, macs=macs,
                     idle_watts=idle_watts)  # fmt: skip
        write_event(store, tags, end, end_ns)
    store.flush()


def add_raw(store: Store, point: Point) -> None:
    """Write ``point`` as it is, past the store's checks: into the SQLite file's tables, or as
    line protocol to InfluxDB's ``/write`` (numbers as floats, as the store writes them)."""
    if isinstance(store, SQLiteStore):
        db = sqlite3.connect(store.path)
        with db:
            tags = json.dumps(dict(sorted(point.tags.items())), separators=(",", ":"))
            db.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)",
                       (point.measurement, tags))  # fmt: skip
            (sid,) = db.execute("SELECT id FROM series WHERE measurement = ? AND tags = ?",
                                (point.measurement, tags)).fetchone()  # fmt: skip
            db.execute("INSERT INTO points (series_id, time_ns, fields) VALUES (?, ?, ?)",
                       (sid, point.time_ns, json.dumps(dict(point.fields))))  # fmt: skip
        db.close()
        return
    assert isinstance(store, InfluxDBStore)
    store.flush()  # what was written before is there first
    line = LinePoint(point.measurement)
    for k, v in point.tags.items():
        line.tag(k, v)
    for k, v in point.fields.items():
        line.field(k, v if isinstance(v, bool | str) else float(v))
    create = f'CREATE DATABASE "{store.database}"'
    r = requests.post(f"{store.base_url}/query", params={"q": create}, timeout=10)
    assert r.status_code == 200, r.text
    data = line.time(point.time_ns, WritePrecision.NS).to_line_protocol()
    r = requests.post(f"{store.base_url}/write", params={"db": store.database}, data=data,
                      timeout=10)  # fmt: skip
    assert r.status_code == 204, r.text


def add_power(
    store: Store,
    host: str,
    source: str,
    domain: str,
    times_s: Sequence[float],
    watts: Sequence[float],
    counter: bool = True,
) -> None:
    """An ``energy`` series: ``watts`` at ``times_s`` and, with ``counter``, ``joules_total``
    integrating them by the trapezoid rule (power and counter then agree exactly)."""
    tags = {**energy_tags(source, domain), "host": host}
    points, total = [], 0.0
    for i, (t, w) in enumerate(zip(times_s, watts)):
        if i:
            total += (watts[i - 1] + w) / 2 * (t - times_s[i - 1])
        fields: dict[str, FieldValue] = {"watts": float(w)}
        if counter:
            fields["joules_total"] = total
        points.append(Point("energy", tags, fields, round(t * S)))
    store.write(points)
    store.flush()


def add_samples(
    store: Store,
    measurement: str,
    tags: dict[str, str],
    times_s: Sequence[float],
    **columns: Sequence[FieldValue | None],
) -> None:
    """One series of ``measurement``: at each of ``times_s`` the fields of ``columns`` (each a
    sequence as long as ``times_s``; a None leaves that field out of that point)."""
    points = []
    for i, t in enumerate(times_s):
        fields = {k: v[i] for k, v in columns.items() if v[i] is not None}
        points.append(Point(measurement, tags, fields, round(t * S)))
    store.write(points)
    store.flush()
