"""``python -m benchmark sweep`` for real: three batch sizes of a Keras model into a SQLite store
on a fixture RAPL tree drawing a constant 30 W; its best point, its front, the report's chart."""

from __future__ import annotations

import json
import os

import pytest
from rapl_writer import host_machine

from benchmark.__main__ import main as benchmark_main
from exporters.schema import RUN
from exporters.stores.sqlite import SQLiteStore
from scoring.__main__ import main as scoring_main
from scoring.runs import load_runs

pytest.importorskip("tensorflow")

WATTS = 30.0


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A RAPL tree drawing a constant 30 W, as this host's only energy source."""
    with host_machine(tmp_path, monkeypatch, lambda domain, t: WATTS * t) as writer:
        yield writer


def dominated(p: dict, points: list[dict]) -> bool:
    e, t = p["uwh_per_inference"], p["latency_p99_s"]
    return any(
        q["uwh_per_inference"] <= e and q["latency_p99_s"] <= t
        and (q["uwh_per_inference"] < e or q["latency_p99_s"] < t)
        for q in points
    )  # fmt: skip


@pytest.mark.timing
def test_a_sweep_over_three_batch_sizes_names_its_best_point_and_front(
    tmp_path, machine, capsys
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    argv = ["sweep", "--model", "mobilenetv3_small", "--batch-sizes", "8,1,4", "--data",
            "synthetic", "--limit", "16", "--weights", "random", "--min-duration", "0.5",
            "--store", url, "--sweep-id", "sw", "--no-progress", "--json"]  # fmt: skip
    assert benchmark_main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    runs = doc["runs"]
    assert doc["sweep"] == "sw" and [r["batch_size"] for r in runs] == [1, 4, 8]
    assert [r["run_id"] for r in runs] == [f"sw-mobilenetv3_small-tensorflow-fp32-b{n}"
                                           for n in (1, 4, 8)]  # fmt: skip
    with SQLiteStore(tmp_path / "s.db") as store:
        scored = {r.run_id: r for r in load_runs(store)}
        starts = [p for p in store.read(RUN, 0, 2**62) if p.fields["event"] == "start"]
        samples = store.read("energy", 0, 2**62, tags={"domain": "package-0"})
    assert {p.fields["sweep"] for p in starts} == {"sw"}
    for r in runs:  # the figures are scoring's, of the energy the fixture drew
        run = scored[r["run_id"]]
        drawn = machine.window_joules("package-0", samples, run.start_ns, run.end_ns)
        assert run.energy_j == pytest.approx(drawn, rel=1e-9)  # what the counters read
        assert r["uwh_per_inference"] == pytest.approx(run.uwh_per_inference, rel=1e-12)
        assert r["images_per_s"] == pytest.approx(run.images_per_s, rel=1e-12)
        # at constant power, energy per inference is that power over the throughput
        assert r["uwh_per_inference"] * r["images_per_s"] == pytest.approx(WATTS / 3.6e-3,
                                                                           rel=0.2)  # fmt: skip
        assert r["latency_p99_s"] is not None and r["latency_p99_s"] > 0
    (best,) = doc["best"]
    assert best["uwh_per_inference"] == min(r["uwh_per_inference"] for r in runs)
    assert [r["run_id"] for r in runs if r["best"]] == [best["run_id"]]
    front = [r["run_id"] for r in runs if not dominated(r, runs)]
    assert sorted(best["front"]) == sorted(front) and best["run_id"] in front
    assert [r["run_id"] for r in runs if r["on_front"]] == front

    assert scoring_main(["report", "--store", url, "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert '<h2 id="sweeps">' in page and 'alt="sweep chart' in page
    assert best["setting"].startswith("tensorflow fp32") and f"batch {best['batch_size']}" in (
        best["setting"]
    )  # fmt: skip
    assert f"mobilenetv3_small on {scored[best['run_id']].host}: {best['setting']}," in page

    capsys.readouterr()
    assert scoring_main(["runs", "--store", url, "--json", "--at-best"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert ranked["at_best"] == {scored[best["run_id"]].host: {"mobilenetv3_small":
                                                                best["run_id"]}}  # fmt: skip
    assert ranked["rankings"] == {scored[best["run_id"]].host: ["mobilenetv3_small"]}
    for at_best in (True, False):
        assert scoring_main(["runs", "--store", url, *["--at-best"][:at_best]]) == 0
        said = "rankings at each swept model's energy-optimal point" in capsys.readouterr().out
        assert said == at_best


@pytest.mark.timing
def test_another_backends_points_run_in_a_child_process(tmp_path, machine, capsys) -> None:
    pytest.importorskip("jax")
    import keras

    here = keras.backend.backend()
    other = "jax" if here != "jax" else "tensorflow"
    url = f"sqlite:///{tmp_path / 's.db'}"
    argv = ["sweep", "--model", "digits_cnn", "--batch-sizes", "2,4", "--backends",
            f"{other},{here}", "--data", "synthetic", "--limit", "4", "--weights", "random",
            "--min-duration", "0.3",
            "--store", url, "--sweep-id", "two", "--no-progress", "--json"]  # fmt: skip
    assert benchmark_main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted((r["backend"], r["batch_size"]) for r in doc["runs"]) == sorted(
        (b, n) for b in (here, other) for n in (2, 4)
    )
    with SQLiteStore(tmp_path / "s.db") as store:
        ends = [p for p in store.read(RUN, 0, 2**62) if p.fields["event"] == "end"]
    pids = {p.tags["backend"]: p.fields["pid"] for p in ends}
    assert pids[here] == os.getpid() != pids[other]  # the other backend: its own process
    assert keras.backend.backend() == here


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--model", "mobilenetv3_small,nosuchnet"], "unknown model 'nosuchnet'"),
        (["--model", "mobilenetv3_small", "--data", "/no/such/dir"], "/no/such/dir"),
        (["--model", "mobilenetv3_small", "--sweep-id", "a\tb"], "--sweep-id"),
        (["--model", "mobilenetv3_small", "--jit", "maybe"], "jit 'maybe' (not a jit setting)"),
        (["--model", "mobilenetv3_small", "--backends", "tensorflow,nosuch"], "nosuch"),
    ],
)
def test_a_bad_point_stops_the_sweep_before_anything_runs(tmp_path, capsys, bad, says) -> None:
    argv = ["sweep", "--batch-sizes", "1,2", "--store", f"sqlite:///{tmp_path / 's.db'}", *bad]
    assert benchmark_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err
    if (tmp_path / "s.db").exists():
        with SQLiteStore(tmp_path / "s.db") as store:
            assert store.read(RUN, 0, 2**62) == []
