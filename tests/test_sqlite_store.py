"""The embedded store: round trips with types, filters, hostile strings, several processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exporters.errors import UsageError
from exporters.schema import Point
from exporters.stores import open_store
from exporters.stores.sqlite import SQLiteStore

HOSTILE = [
    "it's",
    'say "hi"',
    "a b,c=d",
    "back\\slash\\",
    "'; DROP TABLE points; --",
    "x' OR '1'='1",
    "ünïcødé ✓",
    "",
]


def test_round_trip_keeps_types_and_order(tmp_path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.write(
            [
                Point("run", {"run_id": "r1"}, {"event": "end", "n": 5, "ok": True}, 20),
                Point("run", {"run_id": "r1"}, {"event": "start", "x": 1.5}, 10),
            ]
        )
        points = store.read("run", 0, 100)
    assert [p.time_ns for p in points] == [10, 20]
    assert points[1].fields == {"event": "end", "n": 5, "ok": True}
    assert isinstance(points[1].fields["n"], int) and points[0].fields["x"] == 1.5


def test_time_range_tag_and_field_filters(tmp_path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.write(
            Point("energy", {"domain": d}, {"joules_total": float(t), "watts": 2.0}, t)
            for t in range(10)
            for d in ("package-0", "dram-0")
        )
        points = store.read("energy", 3, 5, tags={"domain": "dram-0"}, fields=["joules_total"])
        assert [(p.time_ns, dict(p.fields)) for p in points] == [
            (3, {"joules_total": 3.0}),
            (4, {"joules_total": 4.0}),
            (5, {"joules_total": 5.0}),
        ]
        assert store.read("energy", 0, 9, fields=["nothing"]) == []
        assert store.read("gpu", 0, 9) == []


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_round_trip_and_filter_exactly(tmp_path, value: str) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        note = value + "\nline two\x00"  # a string field may hold any text
        store.write([Point("run", {"run_id": value, "model": "m"}, {"note": note}, 1)])
        store.write([Point("run", {"run_id": "other", "model": "m"}, {"note": "x"}, 2)])
        points = store.read("run", 0, 10, tags={"run_id": value})
        assert [(p.tags["run_id"], p.fields["note"]) for p in points] == [(value, note)]
        assert len(store.read("run", 0, 10)) == 2


def test_two_processes_share_the_file(tmp_path) -> None:
    path = tmp_path / "shared.db"
    code = (
        "import sys; from exporters.stores.sqlite import SQLiteStore; "
        "from exporters.schema import Point; s = SQLiteStore(sys.argv[1]); "
        "[s.write([Point('m', {'p': sys.argv[2]}, {'i': i}, i)]) for i in range(200)]"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), tag]) for tag in ("a", "b")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with SQLiteStore(path) as store:
        assert len(store.read("m", 0, 1000, tags={"p": "a"})) == 200
        assert len(store.read("m", 0, 1000, tags={"p": "b"})) == 200


def test_store_urls(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///data/rel.db") as store:
        assert store.path.resolve() == (tmp_path / "data" / "rel.db").resolve()
    with open_store(f"sqlite:///{tmp_path}/abs.db") as store:
        assert store.path == tmp_path / "abs.db"
    for bad, words in [
        ("sqlite://", "names no file"),
        ("data/tubai.db", "no scheme"),
        ("postgres://x/y", "unknown scheme"),
        ("sqlite:///data/x.db?mode=ro", "does not take"),  # not a file named x.db?mode=ro
    ]:
        with pytest.raises(UsageError, match=words):
            open_store(bad)


def test_unwritable_location_is_a_usage_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="choose a writable path"):
        SQLiteStore(blocker / "sub" / "x.db")


def test_a_series_is_one_whatever_its_tag_order_and_a_rollback_forgets_new_ones(tmp_path) -> None:
    # Series ids are remembered per order of the tags, and forgotten when a write rolls back:
    # a series added by a refused batch is gone with it, and the next write adds it again.
    with SQLiteStore(tmp_path / "s.db") as store:
        store.write([Point("m", {"a": "1", "b": "2"}, {"v": 1.0}, 1)])
        store.write([Point("m", {"b": "2", "a": "1"}, {"v": 2.0}, 2)])
        with pytest.raises(UsageError):
            store.write([Point("m", {"a": "new"}, {"v": 3.0}, 3), Point("m", {"a": "\x00"}, {}, 4)])
        store.write([Point("m", {"a": "new"}, {"v": 5.0}, 5)])
        points = store.read("m", 0, 10)
        (series,) = store._db.execute("SELECT COUNT(*) FROM series").fetchone()
    assert [(p.tags, p.fields) for p in points] == [
        ({"a": "1", "b": "2"}, {"v": 1.0}),
        ({"a": "1", "b": "2"}, {"v": 2.0}),
        ({"a": "new"}, {"v": 5.0}),
    ]
    assert series == 2
