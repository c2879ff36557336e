"""One bad run never takes scoring down: malformed ``run`` events, unusable energy and a run id
used twice, in real stores beside a good run.

Each kind of malformed event (accuracy above 1, a negative or non-numeric count, parameters of
0, a missing field or event kind, a control character in a tag) is written as another program
could have, past the checks of the writer and the stores (``run_fixtures.add_raw``). ``scoring
runs``, ``report`` and ``serve --once`` then exit 0, score the good run, and list each bad one as
``invalid`` with its reason; the service logs it once, not on every pass. A run with zero or
negative energy is flagged and never ranked, and every JSON output is strict JSON.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from run_fixtures import S, add_events, add_power, add_raw, add_run

from benchmark.records import RunStart, RunTags, read_events, write_event
from benchmark.runner import claim_run_id
from exporters.errors import UsageError
from exporters.schema import Point
from exporters.stores.base import Store
from exporters.stores.sqlite import SQLiteStore
from scoring import jsonout
from scoring.__main__ import runs_text
from scoring.rankings import entries, ranking
from scoring.runs import RunScore, load_runs
from scoring.service import ScoringService, score_pending

END = {"event": "end", "inferences": 1000, "top1": 0.75, "params": 5e6, "macs": 3e8}
ESC_ID = "bad-tag-\x1b[2J"  # a terminal's "clear the screen", in a run id
# A string where the other runs hold numbers: SQLite keeps it (the reason says it is not a
# number); InfluxDB, which keeps one type per field, answers the query without it (missing).
LATER_S = 40 * 86_400  # in another shard of InfluxDB's, which takes the write
# run id -> (start s, the end event's fields, the reason's words)
BAD = {
    "bad-accuracy": (200, {**END, "top1": 1.7}, ("end event: top1 1.7", "fraction from 0 to 1")),
    "bad-count": (220, {**END, "inferences": -5}, ("end event: inferences -5", "1 or more")),
    "bad-params": (240, {**END, "params": 0}, ("end event: params 0", "above 0")),
    "bad-missing": (260, {"event": "end", "top1": 0.7}, ("end event: inferences is missing",)),
    "bad-kind": (280, {**END, "event": "stop"}, ("event 'stop' is unknown",)),
    "bad-no-kind": (300, {"inferences": 5}, ("field event is missing",)),
    ESC_ID: (320, END, ("tag run_id 'bad-tag-\\x1b[2J'", "control character '\\x1b'")),
    "bad-type": (LATER_S, {**END, "inferences": "many"}, ("end event: inferences ",)),
}


def _never(name: str) -> None:
    raise ValueError(f"{name} is not strict JSON")


def strict_json(text: str) -> object:
    """``text`` parsed as strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` are errors."""
    return json.loads(text, parse_constant=_never)


def add_bad_runs(store: Store) -> None:
    """A good run (36 J, 1000 inferences: 10 uWh each) and every kind of bad one beside it."""
    add_run(store, "good", "net", "lab", 100, 10, 36.0)
    for run_id, (start_s, fields, _) in BAD.items():
        tags = RunTags(run_id, "net", "keras", "synthetic", "lab").as_dict()
        add_raw(store, Point("run", tags, {"event": "start"}, start_s * S))
        add_raw(store, Point("run", tags, fields, (start_s + 10) * S))


def assert_bad_runs(runs: list[dict]) -> None:
    """The good run scored, each bad one invalid with its reason, nothing else scored."""
    by_id = {r["run_id"]: r for r in runs}
    assert set(by_id) == {"good", *BAD}
    assert by_id["good"]["status"] == "finished"
    assert by_id["good"]["uwh_per_inference"] == pytest.approx(10.0)
    for run_id, (_, _, words) in BAD.items():
        run = by_id[run_id]
        assert run["status"] == "invalid", run_id
        assert all(w in run["reason"] for w in words), (run_id, run["reason"])
        assert run["energy_j"] is None and run["composite"] is None and run["flags"] == []


def test_each_malformed_run_is_invalid_with_its_reason_and_the_good_one_scored(store) -> None:
    add_bad_runs(store)
    runs = load_runs(store)
    assert_bad_runs([r.as_dict() for r in runs])
    if isinstance(store, SQLiteStore):
        (typed,) = [r for r in runs if r.run_id == "bad-type"]
        assert typed.reason == "end event: inferences 'many' is not a number"
    assert [e.model for e in entries(runs)] == ["net"] and entries(runs)[0].runs == 1
    scored = score_pending(store, now_ns=10**12)
    assert [r.run_id for r in scored] == ["good"]
    assert [p.tags["run_id"] for p in store.read("score", 0, 2**62)] == ["good"]


def test_the_service_logs_each_invalid_run_once_and_goes_on(store, caplog) -> None:
    add_bad_runs(store)
    service = ScoringService(store, poll_s=0.02)
    thread = threading.Thread(target=service.run)
    with caplog.at_level(logging.WARNING, logger="scoring"):
        thread.start()
        deadline = time.monotonic() + 30
        while not store.read("score", 0, 2**62) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # several more passes
        service.stop()
        thread.join(10)
    assert not thread.is_alive()
    warned = [r.getMessage() for r in caplog.records if "is invalid" in r.getMessage()]
    assert len(warned) == len(BAD)
    for run_id, (_, _, words) in BAD.items():
        (line,) = [w for w in warned if repr(run_id) in w]
        assert all(word in line for word in words) and "\x1b" not in line


def _scoring(tmp_path: Path, store: Store, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TUBAI_SPOOL_DIR=str(tmp_path / "cli-spool"))
    done = subprocess.run([sys.executable, "-m", "scoring", *args, "--store", store.url],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


def test_runs_report_and_serve_exit_0_and_show_each_bad_run(store, tmp_path) -> None:
    add_bad_runs(store)
    store.flush()
    doc = strict_json(_scoring(tmp_path, store, "runs", "--json").stdout)
    assert_bad_runs(doc["runs"])
    assert doc["rankings"] == {"lab": ["net"]}
    text = _scoring(tmp_path, store, "runs")
    assert "\x1b" not in text.stdout + text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines()[1 : len(BAD) + 2]}
    assert lines["bad-tag-\\x1b[2J"].split()[3] == "invalid"
    assert "invalid: end event: top1 1.7 is not a fraction from 0 to 1" in lines["bad-accuracy"]
    assert text.stderr.count("is invalid, never scored or ranked") == len(BAD)

    out = tmp_path / "report"
    done = _scoring(tmp_path, store, "report", "--out", str(out))
    assert f"({len(BAD) + 1} runs, {len(BAD)} invalid" in done.stdout
    with (out / "scores.csv").open(newline="", encoding="utf-8") as f:
        rows = {row["run id"]: row for row in csv.DictReader(f)}
    assert rows["good"]["status"] == "finished" and float(rows["good"]["uWh/inference"]) > 0
    assert rows["bad-params"]["status"] == "invalid" and rows["bad-params"]["composite"] == ""
    assert rows["bad-params"]["flags"].startswith("invalid: end event: params 0")
    assert "bad-tag-\\x1b[2J" in rows
    assert_bad_runs(strict_json((out / "scores.json").read_text())["runs"])
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "\x1b" not in page and "invalid: end event: inferences is missing" in page

    serve = _scoring(tmp_path, store, "serve", "--once")
    assert serve.stderr.count("is invalid, never scored or ranked") == len(BAD)
    assert "scored good (net)" in serve.stderr
    assert [p.tags["run_id"] for p in store.read("score", 0, 2**62)] == ["good"]


def test_a_figure_that_cannot_be_computed_makes_only_its_run_invalid(monkeypatch) -> None:
    def broken(accuracy: float, params: float) -> float:
        if params < 1e6:
            raise ZeroDivisionError("float division by zero")
        return 1.0

    monkeypatch.setattr("scoring.figures.canziani", broken)  # data no check foresaw
    with SQLiteStore(":memory:") as store:
        add_run(store, "good", "net", "lab", 100, 10, 36.0, params=5e6)
        add_run(store, "odd", "net", "lab", 200, 10, 36.0, params=10.0)
        good, odd = load_runs(store)
    assert good.status == "finished" and good.canziani == 1.0
    assert (odd.status, odd.reason) == ("invalid", "a figure cannot be computed: "
                                        "ZeroDivisionError: float division by zero")  # fmt: skip
    assert odd.canziani is None and odd.energy_j is None and entries([good, odd])[0].runs == 1
    assert "invalid: a figure cannot be computed" in runs_text([good, odd], "composite", None)


# --- energy that cannot be scored ------------------------------------------------------------


def test_zero_or_negative_energy_is_flagged_never_ranked_and_json_stays_strict(
    store, tmp_path
) -> None:
    add_run(store, "good", "net", "lab", 100, 10, 36.0)
    add_run(store, "zero", "idle_net", "lab", 200, 10, 0.0)  # a counter that never moved
    times = [298 + 0.5 * i for i in range(30)]
    add_power(store, "lab", "rapl", "package-0", times, [-5.0] * 30, counter=False)
    add_events(store, "negative", "neg_net", "lab", 300, 10)
    runs = {r.run_id: r for r in load_runs(store)}
    for run_id, joules in (("zero", 0.0), ("negative", -50.0)):
        run = runs[run_id]
        assert run.energy_j == pytest.approx(joules, abs=1e-9)
        assert run.uwh_per_inference is None and run.composite is None
        assert any("not a finite number above 0" in f and "not ranked" in f for f in run.flags)
    assert [e.model for e in ranking(entries(runs.values()))["lab"]] == ["net"]
    doc = strict_json(_scoring(tmp_path, store, "runs", "--json").stdout)
    assert doc["rankings"] == {"lab": ["net"]}
    assert [(r["run_id"], r["composite"]) for r in doc["runs"]][1:] == [
        ("zero", None),
        ("negative", None),
    ]


@pytest.mark.parametrize("joules", [0.0, -1.0, float("inf"), float("-inf"), float("nan")])
def test_a_run_without_usable_energy_has_no_score_and_no_entry(joules) -> None:
    run = RunScore(run_id="r", model="m", host="h", backend="b", dataset="d", status="finished",
                   start_ns=0, end_ns=10 * S, inferences=100, top1=0.7, energy_j=joules,
                   idle_w=0.0)  # fmt: skip
    assert run.uwh_per_inference is None and run.composite is None
    assert run.net_composite is None and entries([run]) == []
    document = jsonout.finite(run.as_dict())
    strict_json(json.dumps(document, allow_nan=False))


# --- a run id used twice ---------------------------------------------------------------------


def test_a_run_id_used_twice_scores_the_latest_and_flags_it(store) -> None:
    add_run(store, "dup", "net", "lab", 100, 10, 36.0)
    (first,) = score_pending(store, now_ns=10**12)
    assert first.end_ns == 110 * S and first.flags == []
    add_run(store, "dup", "net", "lab", 200, 10, 72.0)  # run again under the same id
    (run,) = load_runs(store)
    assert (run.start_ns, run.energy_j) == (200 * S, pytest.approx(72.0))
    assert "run id used by 2 runs: the latest is scored, 1 earlier left out" in run.flags
    (second,) = score_pending(store, now_ns=10**12)  # the replacement is scored too
    assert second.uwh_per_inference == pytest.approx(20.0)
    points = store.read("score", 0, 2**62)
    assert [(p.tags["run_id"], p.time_ns) for p in points] == [("dup", 110 * S), ("dup", 210 * S)]
    assert score_pending(store, now_ns=10**12) == []


def test_a_run_id_in_use_is_refused_unless_replaced(sqlite_store) -> None:
    tags = RunTags("dup", "net", "keras", "synthetic", "lab")
    write_event(sqlite_store, tags, RunStart(), 1_000)
    write_event(sqlite_store, RunTags("many.2", "net", "k", "s", "lab"), RunStart(), 1_000)
    with pytest.raises(UsageError, match=r"--run-id 'dup' is in use: 'dup' already has run"):
        claim_run_id(sqlite_store, "dup", "net", repeats=1)
    with pytest.raises(UsageError, match=r"'many\.2' already has run events .* --replace"):
        claim_run_id(sqlite_store, "many", "net", repeats=3)
    assert claim_run_id(sqlite_store, "dup", "net", repeats=1, replace=True) == "dup"
    assert claim_run_id(sqlite_store, "dup", "net", repeats=2) == "dup"  # dup.1, dup.2: free
    assert claim_run_id(sqlite_store, "many", "net", repeats=1) == "many"


def test_a_default_run_id_never_collides(sqlite_store, monkeypatch) -> None:
    write_event(sqlite_store, RunTags("net-1", "net", "k", "s", "lab"), RunStart(), 1_000)
    ids = iter(["net-1", "net-1", "net-2"])
    monkeypatch.setattr("benchmark.runner.default_run_id", lambda model: next(ids))
    assert claim_run_id(sqlite_store, None, "net", repeats=1) == "net-2"


@pytest.fixture
def sqlite_store(tmp_path):
    with SQLiteStore(tmp_path / "ids.db") as s:
        yield s


def test_benchmark_run_refuses_a_run_id_in_use_in_one_line(sqlite_store, tmp_path) -> None:
    write_event(sqlite_store, RunTags("mine", "digits_cnn", "k", "d", "lab"), RunStart(), 1_000)
    done = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--model", "digits_cnn", "--weights", "random",
         "--run-id", "mine", "--store", sqlite_store.url, "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("benchmark: error: --run-id 'mine' is in use") and "--replace" in last
    assert "Traceback" not in done.stderr
    assert len(read_events(sqlite_store, "mine")) == 1  # nothing written
