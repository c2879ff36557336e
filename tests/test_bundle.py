"""``scoring export`` and ``scoring verify`` (:mod:`scoring.bundle`, :mod:`scoring.verify`): a
bundle round trips, and one changed number, in a sample or a score, is refused naming it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_fixtures import S, add_run, add_samples

from benchmark.records import write_event
from exporters.errors import UsageError
from exporters.schema import Point
from exporters.stores.base import Store
from scoring.__main__ import main
from scoring.bundle import (
    EVENTS,
    SAMPLES,
    SCORES,
    SUMS,
    BundleTampered,
    point_doc,
    point_of,
    read_bundle,
    sha256sums,
    write_files,
)
from scoring.events import RunFail, RunStart, RunTags
from scoring.figures import FIGURES
from scoring.runs import load_runs

START_S, SECONDS = 1000.0, 10.0


def _fill(store: Store) -> None:
    """Two runs on one host, one on another, and CPU samples: figures beyond the energy."""
    add_run(store, "r1", "mobilenet", "lab", START_S, SECONDS, 500.0)
    add_run(store, "r2", "resnet50", "lab", START_S + 30, SECONDS, 900.0, top1=0.8)
    add_run(store, "r3", "mobilenet", "edge", START_S, 5.0, 40.0)
    times = [START_S - 200, START_S - 59, *(START_S + i for i in range(-1, 12))]
    add_samples(store, "cpu", {"host": "lab", "cpu": "total"}, times,
                usage_pct=[10.0 + i for i in range(len(times))])  # fmt: skip
    store.flush()


@pytest.fixture
def exported(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundle of r1 and r2 exported from each kind of store."""
    monkeypatch.setenv("TUBAI_SPOOL_DIR", str(tmp_path / "spool"))
    _fill(store)
    out = tmp_path / "runs.tar.gz"
    assert main(["export", "r1", "r2", "--out", str(out), "--store", store.url]) == 0
    return out


def _files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _rewrite(path: Path, name: str, edit, resum: bool) -> None:
    """Edit one file's JSON lines in place; with ``resum``, write SHA256SUMS anew to match."""
    files = _files(path)
    docs = [json.loads(line) for line in files[name].decode().splitlines()]
    edit(docs)
    files[name] = "".join(json.dumps(d) + "\n" for d in docs).encode()
    if resum:
        files[SUMS] = sha256sums({k: v for k, v in files.items() if k != SUMS})
    write_files(files, path)


def test_export_then_verify_round_trips(
    exported: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["verify", str(exported)]) == 0
    assert "OK" in capsys.readouterr().out
    bundle = read_bundle(exported)
    assert sorted(s["run_id"] for s in bundle.scores) == ["r1", "r2"]
    assert {p.tags["host"] for p in bundle.samples} == {"lab"}  # r3 (edge) is not exported
    assert all(set(doc["figures"]) == {f.name for f in FIGURES} for doc in bundle.scores)
    stored = {r.run_id: r for r in load_runs(store)}
    for doc in bundle.scores:
        run = stored[doc["run_id"]]
        assert doc["figures"]["energy_j"] == pytest.approx(run.energy_j, rel=1e-12)
        assert doc["figures"]["composite"] == pytest.approx(run.composite, rel=1e-12)
        assert doc["figures"]["cpu_util_pct"] == run.cpu_util_pct
    assert stored["r1"].cpu_util_pct is not None  # r1's window has CPU samples
    # the samples reach the margin (60 s) before each window, and no further
    times = sorted(p.time_ns for p in bundle.samples if p.measurement == "cpu")
    assert times[0] == round((START_S - 59) * S)
    energy = [p.time_ns for p in bundle.samples if p.measurement == "energy"]
    assert len(energy) == len(set(energy))  # r1's and r2's margins overlap: read once


def test_sums_check_without_tubai(exported: Path, tmp_path: Path) -> None:
    files = _files(exported)
    for line in files[SUMS].decode().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256(files[name]).hexdigest() == digest
    if shutil.which("sha256sum"):
        unpacked = tmp_path / "unpacked"
        unpacked.mkdir()
        with tarfile.open(exported, "r:gz") as tar:
            tar.extractall(unpacked, filter="data")
        subprocess.run(["sha256sum", "--quiet", "-c", SUMS], cwd=unpacked, check=True)


@pytest.mark.parametrize("resum", [False, True], ids=["sums-stale", "sums-rewritten"])
def test_a_changed_sample_is_refused(
    exported: Path, resum: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    end_ns = round((START_S + SECONDS) * S)

    def edit(docs: list[dict]) -> None:
        (doc,) = [d for d in docs if d["measurement"] == "energy" and d["time_ns"] == end_ns]
        doc["fields"]["joules_total"] += 1.0

    _rewrite(exported, SAMPLES, edit, resum)
    capsys.readouterr()
    assert main(["verify", str(exported)]) == 1
    out, err = capsys.readouterr()
    if not resum:
        assert SAMPLES in err and "SHA-256" in err and len(err.splitlines()) == 1
        return
    lines = out.splitlines()
    energy = [line for line in lines if "'r1'" in line and ": energy_j:" in line]
    assert len(energy) == 1 and "stored 500.0" in energy[0] and "recomputed 501.0" in energy[0]
    assert not [line for line in lines if "'r2'" in line]  # r2's window is untouched
    assert "REFUSED" in lines[-1]


def test_a_changed_score_is_refused(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def edit(docs: list[dict]) -> None:
        docs[1]["figures"]["composite"] *= 1.000001

    _rewrite(exported, SCORES, edit, resum=True)
    capsys.readouterr()
    assert main(["verify", str(exported)]) == 1
    (line, verdict) = capsys.readouterr().out.splitlines()
    assert "'r2'" in line and ": composite: stored" in line and "REFUSED" in verdict


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_an_added_or_dropped_file_is_refused(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(exported)
    write_files(files | {"extra.jsonl": b"{}\n"}, exported)
    with pytest.raises(BundleTampered, match=r"extra\.jsonl is not listed"):
        read_bundle(exported)
    write_files({k: v for k, v in files.items() if k != EVENTS}, exported)
    capsys.readouterr()
    assert main(["verify", str(exported)]) == 1
    assert f"{EVENTS}, listed in {SUMS}, is missing" in capsys.readouterr().err


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_the_same_runs_make_the_same_bytes(exported: Path, store: Store) -> None:
    again = exported.with_name("again.tar.gz")
    assert main(["export", "r1", "r2", "--out", str(again), "--store", store.url]) == 0
    assert again.read_bytes() == exported.read_bytes()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_manifests_and_failed_runs_travel(store: Store, tmp_path: Path) -> None:
    tags = RunTags("m1", "mobilenet", "tensorflow", "synthetic", "lab")
    manifest = {"python": "3.11", "cpu": "Xeon"}
    write_event(store, tags, RunStart(machine_id="ab" * 16, manifest=json.dumps(manifest)),
                round(START_S * S))  # fmt: skip
    write_event(store, tags, RunFail(reason="out of memory"), round((START_S + 1) * S))
    out = tmp_path / "m.tar.gz"
    assert main(["export", "m1", "--out", str(out), "--store", store.url]) == 0
    bundle = read_bundle(out)
    assert bundle.manifests == [{"run_id": "m1", "start_ns": round(START_S * S), "host": "lab",
                                 "machine_id": "ab" * 16, "manifest": manifest}]  # fmt: skip
    (doc,) = bundle.scores
    assert doc["figures"]["status"] == "failed" and doc["figures"]["energy_j"] is None
    assert main(["verify", str(out)]) == 0


def test_bad_input_is_one_line_and_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.tar.gz"
    text.write_text("not a bundle\n")
    empty = tmp_path / "empty.tar.gz"
    write_files({"a.txt": b"x"}, empty)
    db = f"sqlite:///{tmp_path}/s.db"
    cases = {
        ("verify", str(tmp_path / "missing.tar.gz")): "no bundle",
        ("verify", str(text)): "is not a bundle",
        ("verify", str(empty)): "has no SHA256SUMS",
        ("export", "nope", "--out", str(tmp_path / "o.tar.gz"), "--store", db): "has no run",
        ("export", "r", "--out", str(tmp_path / "no" / "o.tar.gz"), "--store", db): "--out",
    }
    for argv, says in cases.items():
        capsys.readouterr()
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and says in err, (argv, err)


NAMES = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)
VALUES = st.one_of(st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False,
                   allow_infinity=False), st.text(max_size=12))  # fmt: skip
POINTS = st.builds(
    Point,
    NAMES.filter(bool),
    st.dictionaries(NAMES.filter(bool), NAMES, max_size=3),
    st.dictionaries(NAMES.filter(bool), VALUES, min_size=1, max_size=3),
    st.integers(0, 2**63 - 1),
)


@settings(max_examples=200, deadline=None)
@given(point=POINTS)
def test_a_point_round_trips_through_its_line_with_its_types(point: Point) -> None:
    again = point_of(json.loads(json.dumps(point_doc(point))))
    assert again == point
    assert [type(v) for v in again.fields.values()] == [type(v) for v in point.fields.values()]


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=10,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    doc=st.one_of(
        JSON,
        POINTS.map(point_doc).flatmap(
            lambda d: st.sampled_from(list(d)).flatmap(lambda k: JSON.map(lambda v: d | {k: v}))
        ),
    )
)
def test_any_line_is_a_point_or_a_value_error(doc: object) -> None:  # fmt: skip
    try:
        point = point_of(doc)
    except ValueError:
        return
    assert point_doc(point) == doc


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=200), name=st.sampled_from([SAMPLES, EVENTS, SCORES]))
def test_any_listed_content_is_read_or_one_usage_error(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, name: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "b.tar.gz"
    files = {SAMPLES: b"", EVENTS: b"", SCORES: b"", "manifests.jsonl": b"",
             "version.json": b'{"format": 1}\n'} | {name: content}  # fmt: skip
    write_files(files | {SUMS: sha256sums(files)}, path)
    try:
        read_bundle(path)
    except UsageError as e:
        assert "\n" not in str(e)
