"""``scoring import`` (:mod:`scoring.importer`): another machine's SQLite store or a bundle,
merged into any store once (importing twice adds nothing), another machine of the same host
name kept apart by its machine id."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_fixtures import S, add_power

from benchmark.records import write_event
from exporters.schema import ENERGY, Point
from exporters.stores.base import Store
from exporters.stores.sqlite import SQLiteStore
from scoring.__main__ import main
from scoring.events import RunEnd, RunStart, RunTags
from scoring.importer import MEASUREMENTS, import_file, list_chunks, sqlite_chunks
from scoring.runs import load_runs

MACHINE_A = "aaaa1111" + "0" * 24
MACHINE_B = "bbbb2222" + "0" * 24


def _run(store: Store, run_id: str, host: str, machine_id: str, start_s: float, watts: float):
    """A 10 s run at constant ``watts`` on ``host``'s package, sampled from 2 s before to 2 s
    after, its ``start`` event carrying ``machine_id``."""
    times = [start_s - 2 + 0.5 * i for i in range(29)]
    add_power(store, host, "rapl", "package-0", times, [watts] * len(times))
    tags = RunTags(run_id, "mobilenet", "tensorflow", "synthetic", host)
    write_event(store, tags, RunStart(machine_id=machine_id), round(start_s * S))
    end = RunEnd(inferences=1000, top1=0.7, accuracy_source="measured", params=4e6, macs=3e8)
    write_event(store, tags, end, round((start_s + 10) * S))
    store.flush()


def _count(store: Store) -> dict[str, int]:
    return {m: len(store.read(m, 0, 2**62)) for m in MEASUREMENTS}


def _energy(store: Store) -> dict[tuple[str, str], float | None]:
    return {(r.run_id, r.host): r.energy_j for r in load_runs(store)}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Another machine's SQLite store: host "lab" (machine B), two runs."""
    path = tmp_path / "other.db"
    with SQLiteStore(path) as other:
        _run(other, "b1", "lab", MACHINE_B, 1000.0, 20.0)
        _run(other, "b2", "lab", MACHINE_B, 1100.0, 30.0)
    return path


@pytest.fixture(autouse=True)
def _spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUBAI_SPOOL_DIR", str(tmp_path / "spool"))


def _import(path: Path, store: Store, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["import", str(path), "--store", store.url]) == 0
    return capsys.readouterr().out


def test_importing_a_store_twice_adds_nothing(
    source: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    first = _import(source, store, capsys)
    with SQLiteStore(source) as other:
        want_counts, want_energy = _count(other), _energy(other)
    assert _count(store) == want_counts
    assert _energy(store) == want_energy == {("b1", "lab"): 200.0, ("b2", "lab"): 300.0}
    assert f"imported {sum(want_counts.values())} points" in first
    second = _import(source, store, capsys)
    assert "imported 0 points" in second and f"{sum(want_counts.values())} already" in second
    assert _count(store) == want_counts
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # only read


def test_importing_a_bundle_twice_adds_nothing(
    source: Path, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b1.tar.gz"
    assert main(["export", "b1", "--out", str(bundle), "--store", f"sqlite:///{source}"]) == 0
    _import(bundle, store, capsys)
    counts = _count(store)
    assert counts["run"] == 2 and counts["energy"] == 29  # b1's events and samples, no b2
    assert _energy(store) == {("b1", "lab"): 200.0}
    assert "imported 0 points" in _import(bundle, store, capsys)
    assert _count(store) == counts


def test_another_machine_of_the_same_name_is_kept_apart(
    source: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """Here "lab" is machine A; the import's "lab" (machine B) ran at the same times: mixed,
    each window would hold both machines' samples of one series."""
    _run(store, "a1", "lab", MACHINE_A, 1000.0, 50.0)
    out = _import(source, store, capsys)
    assert "host 'lab' imported as 'lab~bbbb2222'" in out
    assert _energy(store) == {("a1", "lab"): 500.0, ("b1", "lab~bbbb2222"): 200.0,
                              ("b2", "lab~bbbb2222"): 300.0}  # fmt: skip
    counts = _count(store)
    assert "imported 0 points" in _import(source, store, capsys)
    assert _count(store) == counts


def test_the_same_machine_is_merged_under_its_name(
    source: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(store, "b0", "lab", MACHINE_B, 900.0, 10.0)
    out = _import(source, store, capsys)
    assert "imported as" not in out
    assert {host for _, host in _energy(store)} == {"lab"}


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_bad_input_is_one_line_and_2(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a store\n")
    other = tmp_path / "other-app.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    cases = {
        str(tmp_path / "missing.db"): "no file",
        str(tmp_path): "no file",
        str(text): "neither a SQLite store nor an export bundle",
        str(other): "holds no tubai points",
    }
    for path, says in cases.items():
        capsys.readouterr()
        assert main(["import", path, "--store", store.url]) == 2, path
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err, (path, err)
    assert sum(_count(store).values()) == 0


def test_a_source_larger_than_a_chunk_imports_whole_and_once(
    source: Path, store: Store, tmp_path: Path
) -> None:
    """Chunks of 5 points: the target already holds b1 (from its bundle) and a machine A of
    the same name; b2 is written whole, b1 not again, and "lab" (B) kept apart chunk by chunk."""
    _run(store, "a1", "lab", MACHINE_A, 1000.0, 50.0)
    bundle = tmp_path / "b1.tar.gz"
    assert main(["export", "b1", "--out", str(bundle), "--store", f"sqlite:///{source}"]) == 0
    first = import_file(bundle, store, chunk_points=5)
    store.flush()
    assert first.renamed == {"lab": "lab~bbbb2222"} and first.written == 31  # 29 samples, 2 events
    with SQLiteStore(source) as other:
        assert len(list(sqlite_chunks(other, ENERGY, 5))) == 12  # 58 samples
        total = sum(_count(other).values())
    done = import_file(source, store, chunk_points=5)
    store.flush()
    assert (done.written, done.present, done.refused) == (total - 31, 31, 0)
    assert _energy(store) == {("a1", "lab"): 500.0, ("b1", "lab~bbbb2222"): 200.0,
                              ("b2", "lab~bbbb2222"): 300.0}  # fmt: skip
    counts = _count(store)
    again = import_file(source, store, chunk_points=3)
    assert (again.written, again.present) == (0, total)
    assert _count(store) == counts


def _points(times: list[int]) -> list[Point]:
    return [Point(ENERGY, {"host": "h", "domain": f"d{i % 2}"}, {"energy_uj": i}, t)
            for i, t in enumerate(times)]  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=40), st.integers(1, 8))
def test_chunks_cover_each_point_once_in_disjoint_windows(times: list[int], n: int) -> None:
    """Chunks of a list and of a SQLite store are the same windows: each point once, no time
    in two chunks, at most ``n`` points plus those sharing a chunk's first time."""
    points = _points(times)
    chunks = list(list_chunks(points, n))
    assert sorted(p.fields["energy_uj"] for c in chunks for p in c) == list(range(len(times)))
    for before, after in itertools.pairwise(chunks):
        assert before[-1].time_ns < after[0].time_ns
    count = Counter(times)
    assert all(0 < len(c) <= n + count[c[0].time_ns] - 1 for c in chunks)
    with tempfile.TemporaryDirectory() as tmp, SQLiteStore(Path(tmp) / "s.db") as db:
        db.write(points)
        from_db = [[p.time_ns for p in c] for c in sqlite_chunks(db, ENERGY, n)]
    assert from_db == [[p.time_ns for p in c] for c in chunks]
