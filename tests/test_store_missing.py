"""``Store.read(..., missing_ok=True)``: a database that does not exist yet (an InfluxDB one
nothing was written to) holds no points; without it, InfluxDB's "database not found" is
:class:`~exporters.errors.DatabaseNotFound`, and any other store error is raised either way."""

from __future__ import annotations

from pathlib import Path

import pytest
from influxd import InfluxTarget

from exporters.errors import DatabaseNotFound, StoreError
from exporters.schema import RUN, Point
from exporters.stores.base import Store
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.sqlite import SQLiteStore
from scoring.__main__ import main

_ALL_NS = 2**62


def _event(time_ns: int) -> Point:
    return Point(RUN, {"host": "lab", "run_id": "r1"}, {"event": "start"}, time_ns)


@pytest.mark.influxdb
def test_a_database_not_created_yet_reads_as_empty_only_if_asked(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    with InfluxDBStore.from_url(influxd.url, spool_dir=tmp_path / "spool") as store:
        with pytest.raises(DatabaseNotFound, match=f"database '{influxd.database}' not found"):
            store.read(RUN, 0, _ALL_NS)
        assert store.read(RUN, 0, _ALL_NS, missing_ok=True) == []
        assert store.read(RUN, 0, _ALL_NS, {"host": "lab"}, ("event",), missing_ok=True) == []
        store.write([_event(1000), _event(2000)])  # creates the database
        store.flush()
        assert [p.time_ns for p in store.read(RUN, 0, _ALL_NS, missing_ok=True)] == [1000, 2000]
        assert len(store.read(RUN, 0, _ALL_NS)) == 2


def test_missing_ok_reads_the_same_points_where_the_database_exists(store: Store) -> None:
    store.write([_event(1000), _event(2000)])
    store.flush()
    assert store.read(RUN, 0, _ALL_NS, missing_ok=True) == store.read(RUN, 0, _ALL_NS)
    assert len(store.read(RUN, 1500, _ALL_NS, missing_ok=True)) == 1


def test_other_store_errors_are_raised_with_missing_ok(tmp_path: Path) -> None:
    down = InfluxDBStore.from_url("influxdb://127.0.0.1:1/tubai", spool_dir=tmp_path / "spool",
                                  timeout_s=1.0, close_timeout_s=0.5)  # fmt: skip
    with down, pytest.raises(StoreError, match="did not answer") as e:
        down.read(RUN, 0, _ALL_NS, missing_ok=True)
    assert not isinstance(e.value, DatabaseNotFound)


@pytest.mark.influxdb
def test_importing_into_a_database_not_created_yet(
    influxd: InfluxTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scoring import`` reads the target before its first write creates the database."""
    monkeypatch.setenv("TUBAI_SPOOL_DIR", str(tmp_path / "spool"))
    source = tmp_path / "other.db"
    with SQLiteStore(source) as other:
        other.write([_event(1000), _event(2000)])
    assert main(["import", str(source), "--store", influxd.url]) == 0
    with InfluxDBStore.from_url(influxd.url, spool_dir=tmp_path / "s2") as target:
        assert [p.time_ns for p in target.read(RUN, 0, _ALL_NS)] == [1000, 2000]
