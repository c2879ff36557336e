"""The energy rating: log-spaced bands against reference models measured on the same machine."""

from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from run_fixtures import S, add_power, add_run

from benchmark.manifest import manifest_json
from benchmark.records import RunEnd, RunStart, RunTags, write_event
from exporters.stores.sqlite import SQLiteStore
from scoring.__main__ import main
from scoring.rankings import entries
from scoring.rating import (
    CLASSES,
    DIGITS,
    EDGES,
    IMAGENET,
    REFERENCES,
    missing_references,
    rating_of,
    task_of,
)
from scoring.runs import load_runs

PAPER = Path(__file__).parent.parent / "paper" / "table1_a100.csv"
ratios = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)


def test_bands_are_log_spaced_and_centred_on_the_references() -> None:
    steps = [math.log(b / a) for a, b in itertools.pairwise(EDGES)]
    assert steps == pytest.approx([math.log(3)] * 3)
    assert EDGES[1] * EDGES[2] == pytest.approx(1)  # C is symmetric about the references
    assert [rating_of(x) for x in (0.1, 0.3, 1.0, 3.0, 10.0)] == list(CLASSES)
    assert rating_of(EDGES[0]) == "B"  # an edge belongs to the class above it
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            rating_of(bad)


@given(ratios, ratios)
def test_rating_never_improves_with_more_energy(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert rating_of(low) <= rating_of(high)  # "A" < "B" < ...


def test_the_papers_eight_models_fall_into_all_five_classes_on_its_a100() -> None:
    rows = {r["model"]: float(r["total_energy_wh"]) for r in csv.DictReader(PAPER.open())}
    reference = math.prod(rows[m] for m in REFERENCES[IMAGENET]) ** (1 / 3)
    assert {rating_of(wh / reference) for wh in rows.values()} == set(CLASSES)


def _machine(store, host: str, watts_scale: float, t0: float) -> None:
    """The references and two models on one machine; every energy times ``watts_scale``."""
    energies = {"mobilenetv3_large": 70, "efficientnetv2_s": 630, "nasnet_large": 1500,
                "mobilenetv3_small": 50, "efficientnetv2_l": 2650}  # fmt: skip
    for i, (model, joules) in enumerate(energies.items()):
        add_run(store, f"{host}-{model}", model, host, t0 + 20 * i, 10, joules * watts_scale)


@pytest.mark.influxdb
def test_ratings_compare_across_machines_and_say_what_is_missing(store, capsys) -> None:
    _machine(store, "fast", 1.0, 1000)
    _machine(store, "slow", 7.5, 2000)  # every model 7.5x the energy: the same ratings
    add_run(store, "lonely", "resnet50", "nolab", 3000, 10, 300)
    runs = load_runs(store)
    rated = {(r.host, r.model): r for r in runs}
    for model in ("mobilenetv3_small", "efficientnetv2_l", "nasnet_large"):
        fast, slow = rated[("fast", model)], rated[("slow", model)]
        assert fast.rating == slow.rating and fast.rating_ratio == pytest.approx(slow.rating_ratio)
    reference = (70 * 630 * 1500) ** (1 / 3)
    assert rated[("fast", "efficientnetv2_l")].rating_ratio == pytest.approx(2650 / reference)
    assert rated[("fast", "efficientnetv2_l")].rating == rating_of(2650 / reference) == "E"
    assert rated[("nolab", "resnet50")].rating is None
    by_entry = {(e.host, e.model): e for e in entries(runs)}
    assert by_entry[("slow", "mobilenetv3_small")].rating == "A"

    assert main(["runs", "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert f"rating A ({50 / reference:.2f}x refs)" in out
    assert "no rating on nolab for imagenet classification" in out
    assert "mobilenetv3_large, efficientnetv2_s, nasnet_large" in out
    assert main(["runs", "--store", store.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rating"]["references"][IMAGENET] == list(REFERENCES[IMAGENET])
    run = next(r for r in doc["runs"] if r["run_id"] == "slow-efficientnetv2_l")
    assert run["rating"] == "E" and run["rating_ratio"] == pytest.approx(2650 / reference)


@pytest.fixture
def sqlite(tmp_path):
    with SQLiteStore(tmp_path / "s.db") as s:
        yield s


def _pass(store, run_id: str, model: str, dataset: str, start_s: float, joules: float,
          task: str | None, batch_size: int = 32) -> None:  # fmt: skip
    """A 10 s pass on ``lab`` whose start event's manifest records ``task`` (none: no manifest)."""
    add_power(store, "lab", "rapl", "package-0", [start_s - 2 + k for k in range(15)],
              [joules / 10] * 15)  # fmt: skip
    tags = RunTags(run_id, model, "tensorflow", dataset, "lab")
    manifest = None if task is None else manifest_json({"schema": 1, "task": task})
    write_event(store, tags, RunStart(manifest=manifest), round(start_s * S))
    end = RunEnd(inferences=1000, top1=0.9, batch_size=batch_size, duration_s=10.0)
    write_event(store, tags, end, round((start_s + 10) * S))
    store.flush()


def test_the_task_is_the_models_as_recorded_not_the_datasets(sqlite) -> None:
    _pass(sqlite, "ref.0", "digits_cnn", "digits", 1000, 10.0, DIGITS)
    _pass(sqlite, "ref.1", "digits_cnn", "digits", 1020, 12.0, DIGITS)
    _pass(sqlite, "tiny", "tiny_cnn", "synthetic", 1040, 22.0, DIGITS)  # a digits model
    _pass(sqlite, "old", "digits_cnn", "synthetic", 1060, 5.0, None, batch_size=16)
    runs = {r.run_id: r for r in load_runs(sqlite)}
    assert task_of(runs["tiny"]) == DIGITS and task_of(runs["old"]) == DIGITS
    assert runs["tiny"].rating_ratio == pytest.approx(22.0 / 11.0) and runs["tiny"].rating == "D"
    assert runs["old"].rating == "C" and runs["old"].rating_ratio == pytest.approx(1.0)
    assert missing_references(list(runs.values())) == {}  # nothing rated as ImageNet
    imagenet = replace(runs["tiny"], manifest={}, model="resnet50")  # no task recorded
    assert task_of(imagenet) == IMAGENET
