"""perf/lab_scale.py at smoke-test size: two agents over TLS with their own write-only users,
a short ceiling run, and generated runs that scoring finds whole."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from influxd import find_influxd, start_influxd

from exporters.stores.sqlite import SQLiteStore
from scoring.runs import load_runs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "perf"))

import lab_scale

pytestmark = pytest.mark.influxdb


@pytest.fixture
def server(tmp_path: Path):
    if find_influxd() is None:
        pytest.skip("influxd not found: apt-get install influxdb (Debian)")
    started = start_influxd(tmp_path / "influxd", tls=True, auth=True)
    yield started
    started.stop()


def test_agents_write_over_tls_and_every_point_arrives(server, tmp_path: Path) -> None:
    figures = lab_scale.lab(server, tmp_path, agents=2, interval_s=0.1, seconds=2.0)
    agents = figures["per_agent"]
    assert [a["agent"] for a in agents] == [0, 1]
    assert figures["all_drained"]  # every spool empty once flushed
    # every energy point sampled reached the server (one per domain a sample; health aside)
    series = server.query('SELECT count("joules_total") FROM "energy" GROUP BY "host"', "lab_2")
    counts = {s["tags"]["host"]: s["values"][0][1] for s in series["results"][0]["series"]}
    assert set(counts) == {"lab-000", "lab-001"}
    assert figures["accepted_energy_points"] == sum(counts.values())
    assert figures["offered_points_per_s"] == 2 * len(lab_scale.DOMAINS) / 0.1
    assert all(c % len(lab_scale.DOMAINS) == 0 and c > 0 for c in counts.values())
    top = lab_scale.ceiling(server, tmp_path, writers=1, seconds=0.5)
    assert top["accepted"] == top["written"] > 0


def test_generated_runs_are_whole_runs_for_scoring(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "runs.db") as store:
        lab_scale.fill_runs(store, 30, hosts=4, models=3)
        runs = load_runs(store)
    assert len(runs) == 30 and all(r.status == "finished" for r in runs)
    assert {r.host for r in runs} == {f"lab-{i:03d}" for i in range(4)}
    for r in runs:  # constant watts over 10 s, read from the samples
        watts = 20.0 + int(r.run_id.split("-")[1]) % 7
        assert r.energy_j == pytest.approx(watts * 10.0, rel=1e-9)
