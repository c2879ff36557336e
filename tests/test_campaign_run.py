"""Campaigns of real (small) runs: split in three shards, every point runs once, and a shard
SIGKILLed in its second point finishes the rest when run again, repeating nothing; a second
Keras backend's points run in a child process, their outcome in the one JSON document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rapl_writer import ProfileWriter, host_machine

from benchmark.__main__ import main as benchmark_main
from benchmark.plan import load_plan, shard_points
from exporters.schema import RUN
from exporters.stores.sqlite import SQLiteStore

pytest.importorskip("tensorflow")

# 6 points (2 batch sizes x 3 repeats), 2 a shard; each pass lasts at least 1 s: a second to
# kill a shard once its second point has started
PLAN = {"campaign": "camp", "models": ["digits_cnn"], "batch_sizes": [8, 32], "repeats": 3,
        "data": "digits", "limit": 64, "min_duration_s": 1.0}  # fmt: skip
KILL_WITHIN_S = 300


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A RAPL tree drawing a constant 30 W, as this host's only energy source."""
    with host_machine(tmp_path, monkeypatch) as writer:
        yield writer


def runs(db: Path) -> dict[str, dict[str, dict]]:
    """Per run id, its events by kind (fields)."""
    with SQLiteStore(db) as store:
        events = store.read(RUN, 0, 2**62)
    found: dict[str, dict[str, dict]] = {}
    for e in events:
        found.setdefault(e.tags["run_id"], {})[str(e.fields["event"])] = dict(e.fields)
    return found


def ended_keys(db: Path) -> list[str]:
    return [r["start"]["campaign_point"] for r in runs(db).values() if "end" in r]


def started_unfinished(db: Path, keys: set[str]) -> list[str]:
    """The run ids of points ``keys`` that started and have not ended (nor failed)."""
    return [i for i, r in runs(db).items() if r["start"]["campaign_point"] in keys and len(r) == 1]


def kill_in_second_point(cmd: list[str], db: Path, keys: set[str]) -> None:
    """Start ``cmd`` and SIGKILL it once one of the points ``keys`` has ended in the store and
    the next has started."""
    child = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + KILL_WITHIN_S
    try:
        while not (set(ended_keys(db)) & keys and started_unfinished(db, keys)):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the shard's first point did not end"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.timing
def test_three_shards_run_every_point_once_and_a_killed_one_resumes(
    tmp_path: Path, machine: ProfileWriter, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    plan_path, db = tmp_path / "plan.yaml", tmp_path / "c.db"
    plan_path.write_text(yaml.safe_dump(PLAN))
    store = f"sqlite:///{db}"
    plan = load_plan(str(plan_path))
    args = ["campaign", str(plan_path), "--store", store, "--no-progress"]
    assert benchmark_main([*args, "--shard", "0/3"]) == 0  # trains the digits model, cached

    cmd = [sys.executable, "-m", "benchmark", *args, "--shard", "2/3"]
    shard2 = {p.key for p in shard_points(plan.points, 2, 3)}
    kill_in_second_point(cmd, db, shard2)
    killed = runs(db)
    assert len(set(ended_keys(db)) & shard2) == 1, "killed after its first point, before its second"
    (cut,) = started_unfinished(db, shard2)  # the point it was killed in

    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # shard 1 as a Slurm array task would run it
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert benchmark_main(args) == 0
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    capsys.readouterr()
    assert benchmark_main([*args, "--shard", "2/3", "--json"]) == 0  # resumed
    resumed = json.loads(capsys.readouterr().out)["points"]
    assert sorted(o["state"] for o in resumed) == ["done before", "ran"]

    final = runs(db)
    shard1 = {p.key for p in shard_points(plan.points, 1, 3)}
    keys = ended_keys(db)
    assert sorted(keys) == sorted(p.key for p in plan.points)  # every point, each once
    for run_id, events in final.items():
        start = events["start"]
        assert start["campaign"] == "camp"
        if "end" in events and run_id in killed and "end" in killed[run_id]:
            assert events == killed[run_id]  # a finished point was never run again
        slurm = (start.get("slurm_job_id"), start.get("slurm_array_task_id"))
        assert slurm == (("4242", "1") if start["campaign_point"] in shard1 else (None, None))
    assert final[cut] == killed[cut]  # the killed run stays as it was: a start, no end
    retried = [i for i in final if i.endswith("-retry1")]
    assert retried == [f"{cut}-retry1"] and "end" in final[retried[0]]
    assert benchmark_main([*args, "--shard", "2/3"]) == 0  # nothing left: runs nothing
    assert len(runs(db)) == len(final)


def test_another_keras_backend_runs_in_a_child_process(
    tmp_path: Path, machine: ProfileWriter, capsys
) -> None:
    pytest.importorskip("jax")
    plan_path, db = tmp_path / "plan.yaml", tmp_path / "c.db"
    plan_path.write_text(yaml.safe_dump({**PLAN, "campaign": "two", "batch_sizes": [16],
                                         "repeats": 1, "backends": ["tensorflow", "jax"],
                                         "min_duration_s": 0}))  # fmt: skip
    args = ["campaign", str(plan_path), "--store", f"sqlite:///{db}", "--no-progress", "--json"]
    assert benchmark_main(args) == 0
    points = json.loads(capsys.readouterr().out)["points"]  # one document, the child's merged
    assert [(p["backend"], p["state"]) for p in points] == [("tensorflow", "ran"), ("jax", "ran")]
    with SQLiteStore(db) as store:
        tags = {p["run_id"]: e.tags["backend"] for p in points
                for e in store.read(RUN, 0, 2**62, tags={"run_id": p["run_id"]})}  # fmt: skip
    assert tags == {points[0]["run_id"]: "tensorflow", points[1]["run_id"]: "jax"}
