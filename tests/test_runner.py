"""The benchmark runner on real Keras models: events, windows, accuracy, failures, hostile ids."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from rapl_writer import host_machine

from benchmark.records import RunEnd, RunTags, read_events, write_event
from benchmark.runner import RunOptions, RunResult, run_benchmark
from benchmark.sampling import Sampler
from exporters.config import load_config
from exporters.stores.sqlite import SQLiteStore
from exporters.times import parse_time
from exporters.window import WindowEnergy
from scoring.runs import load_runs

tf = pytest.importorskip("tensorflow")

SUMMARY_KEYS = [
    "run_id", "model", "dataset", "backend", "weights", "batch_size", "start", "end", "images",
    "seconds", "images_per_s", "top1", "top5", "accuracy_source", "joules", "uwh_per_inference",
    "composite", "estimated", "coverage", "idle_watts", "net_joules", "notes",
]  # fmt: skip


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A RAPL tree drawing a constant 30 W, as this host's only energy source."""
    with host_machine(tmp_path, monkeypatch) as writer:
        yield writer


def run(store, **options):
    with Sampler(store, host="h", config=load_config()) as sampler:
        return run_benchmark(RunOptions(progress=False, **options), store, sampler)


@pytest.mark.timing
def test_random_weights_on_synthetic_images(tmp_path, machine) -> None:
    with SQLiteStore(tmp_path / "b.db") as store:
        (result,) = run(
            store, model="mobilenetv3_small", data="synthetic", limit=48, batch_size=16,
            weights="random", run_id="syn",
        )  # fmt: skip
        events = read_events(store, "syn")
        samples = store.read("energy", 0, 2**62, tags={"domain": "package-0"})
        (scored,) = load_runs(store)  # what scoring makes of the same events and samples
    start, end = events
    assert [e.fields["event"] for e in events] == ["start", "end"]
    assert start.tags == {
        "run_id": "syn", "model": "mobilenetv3_small", "backend": "tensorflow",
        "dataset": "synthetic", "host": "h",
    }  # fmt: skip
    assert parse_time(start.fields["warmup_end"]) <= start.time_ns  # warm-up is outside
    assert end.fields["inferences"] == 48 and end.fields["accuracy_source"] == "published"
    assert end.fields["top1"] == pytest.approx(0.681) and end.fields["weights"] == "random"
    assert end.fields["params"] == 2_554_968 and end.fields["macs"] > 5e7
    assert end.fields["duration_s"] == pytest.approx((end.time_ns - start.time_ns) / 1e9)
    summary = result.summary()
    read = machine.window_joules("package-0", samples, result.start_ns, result.end_ns)
    assert summary["joules"] == pytest.approx(read, rel=1e-9)  # what the counters read
    assert summary["composite"] == pytest.approx(0.681**2 / (summary["uwh_per_inference"] / 1000))
    assert list(summary) == SUMMARY_KEYS
    for key, figure in (("joules", "energy_j"), ("uwh_per_inference", "uwh_per_inference"),
                        ("composite", "composite"), ("seconds", "duration_s"),
                        ("images", "inferences"), ("top1", "top1")):  # fmt: skip
        assert summary[key] == pytest.approx(getattr(scored, figure), rel=1e-9), key
    assert (scored.params, scored.weights, scored.status) == (2_554_968, "random", "finished")


def test_class_folders_measure_accuracy_with_known_labels(tmp_path, machine) -> None:
    from benchmark.ilsvrc import imagenet_wnids

    wnids = imagenet_wnids()
    for index in (0, 500, 999):
        folder = tmp_path / "val" / wnids[index]
        folder.mkdir(parents=True)
        for k in range(3):
            pixels = np.full((60, 80, 3), (index // 4 + k * 20) % 256, np.uint8)
            (folder / f"ILSVRC2012_val_{index:05d}{k}.JPEG").write_bytes(
                tf.io.encode_jpeg(pixels).numpy()
            )
    with SQLiteStore(tmp_path / "b.db") as store:
        (result,) = run(
            store, model="mobilenetv2", data=str(tmp_path / "val"), batch_size=4,
            weights="random", run_id="folders",
        )  # fmt: skip
    assert result.inferences == 9 and result.accuracy_source == "measured"
    assert result.dataset.startswith("ilsvrc2012-val:")
    assert any("partial ILSVRC2012 validation set: 9 of 50,000" in n for n in result.notes)
    assert any("random weights" in n for n in result.notes)


def test_a_run_that_breaks_leaves_a_fail_event_and_no_end(tmp_path, machine) -> None:
    from benchmark.ilsvrc import imagenet_wnids

    folder = tmp_path / "val" / imagenet_wnids()[1]
    folder.mkdir(parents=True)
    good = tf.io.encode_jpeg(np.zeros((40, 40, 3), np.uint8)).numpy()
    for k in range(8):
        (folder / f"img{k}.JPEG").write_bytes(good if k != 6 else good[: len(good) // 3])
    with SQLiteStore(tmp_path / "b.db") as store:
        with pytest.raises(Exception, match=r"(?i)jpeg|corrupt|invalid"):
            run(
                store, model="mobilenetv3_small", data=str(tmp_path / "val"), batch_size=2,
                weights="random", run_id="broken", warmup_batches=1,
            )  # fmt: skip
        events = read_events(store, "broken")
    assert [e.fields["event"] for e in events] == ["start", "fail"]
    assert "jpeg" in events[1].fields["reason"].lower()


def test_repeats_are_separate_windows(tmp_path, machine) -> None:
    with SQLiteStore(tmp_path / "b.db") as store:
        results = run(store, model="digits_cnn", limit=900, batch_size=64, repeats=3, run_id="rep")
    assert [r.run_id for r in results] == ["rep.1", "rep.2", "rep.3"]
    assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(results))
    assert all(r.top1 > 0.9 and r.accuracy_source == "measured" for r in results)
    assert all(r.energy.total_joules > 0 for r in results)


@pytest.mark.timing
def test_digits_end_to_end_through_the_command_line(tmp_path, machine) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--model", "digits_cnn", "--limit", "2000",
         "--store", f"sqlite:///{tmp_path}/cli.db", "--json", "--idle", "0.5"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run_summary,) = json.loads(result.stdout)["runs"]
    assert run_summary["top1"] > 0.9 and run_summary["accuracy_source"] == "measured"
    assert run_summary["images"] == 2000
    assert run_summary["estimated"] is False  # RAPL (the fixture) measured it
    assert run_summary["idle_watts"] == pytest.approx(30.0, rel=0.02)
    assert run_summary["net_joules"] == pytest.approx(0.0, abs=0.02 * run_summary["joules"])


HOSTILE = ['it\'s "quoted"', "a b,c=d", "back\\slash", "'; DROP TABLE points; --", "ünï ✓"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_run_ids_and_model_names_round_trip(store, name) -> None:
    tags = RunTags(run_id=name, model=name, backend="tensorflow", dataset="synthetic", host="h")
    other = RunTags(run_id="plain", model="m", backend="tensorflow", dataset="synthetic", host="h")
    write_event(store, tags, "start", 1_000)
    write_event(store, other, "start", 1_500)
    write_event(store, tags, "end", 2_000, inferences=5, weights=name)
    store.flush()
    events = read_events(store, name)
    assert [(e.tags["run_id"], e.tags["model"], e.fields["event"]) for e in events] == [
        (name, name, "start"),
        (name, name, "end"),
    ]
    assert events[1].fields["weights"] == name
    assert [e.tags["run_id"] for e in read_events(store, "plain")] == ["plain"]


def test_min_duration_goes_over_the_data_again(tmp_path, machine) -> None:
    with SQLiteStore(tmp_path / "b.db") as store:
        (result,) = run(store, model="digits_cnn", batch_size=150, min_duration_s=1.5)
    assert result.duration_s >= 1.5
    assert result.inferences % 450 == 0 and result.inferences >= 900
    assert result.top1 > 0.9


def test_a_pass_without_energy_samples_has_no_energy_figures() -> None:
    result = RunResult.started(RunTags("r", "m", "tensorflow", "synthetic", "h"), 0, notes=["n"])
    result.finish(RunEnd(inferences=10, top1=0.5, idle_watts=3.0), 10 * 10**9)
    result.energy = WindowEnergy(0, 10 * 10**9, [])
    result.set_energy(result.energy)
    summary = result.summary()
    assert list(summary) == SUMMARY_KEYS
    for key in ("joules", "uwh_per_inference", "composite", "estimated", "coverage", "net_joules"):
        assert summary[key] is None, key
    assert (summary["images_per_s"], summary["seconds"], summary["idle_watts"]) == (1.0, 10.0, 3.0)
