"""Run figures, defined once (scoring/figures.py): a figure added there is a RunScore attribute,
in its JSON, its score point, the report's page and CSV, and the runs table, as it says."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from scoring.figures import DERIVED, FIELD, FIGURES, STATS, Figure, View, with_figures
from scoring.runs import RunScore
from scoring.stats import RunStats

TESTS = Path(__file__).parent

# A new figure, added to the table only; the script then looks for it in every output.
ADD_A_FIGURE = """
import json, sys
from pathlib import Path
import scoring.figures as figures

extra = figures.Figure(
    "half_energy_j", "J", figures.DERIVED, lambda r: None if r.energy_j is None else r.energy_j / 2,
    cli=figures.View("half J", ".1f", width=7), report=figures.View("half joules", ".2f"),
    point="half_joules",
)
figures.FIGURES = figures.FIGURES + (extra,)

from exporters.stores.sqlite import SQLiteStore
from run_fixtures import add_run
from scoring.__main__ import runs_text
from scoring.report import write_report
from scoring.runs import load_runs
from scoring.service import score_point

out = Path(sys.argv[1])
with SQLiteStore(out / "s.db") as store:
    add_run(store, "r", "net", "lab", 100, 10, 36.0)
    (run,) = load_runs(store)
    write_report(store, out / "report", [run])
header, row = runs_text([run], "composite", None).splitlines()[:2]
print(json.dumps({
    "attribute": run.half_energy_j,
    "json": run.as_dict()["half_energy_j"],
    "point": score_point(run).fields["half_joules"],
    "cli": [header.endswith(" half J  flags"), row.split()[-1]],
    "csv": (out / "report" / "scores.csv").read_text().splitlines()[:2],
    "page": "<th>half joules</th>" in (out / "report" / "index.html").read_text(),
}))
"""


def test_a_figure_added_in_one_place_is_shown_everywhere(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", ADD_A_FIGURE, str(tmp_path)], cwd=TESTS,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["attribute"] == seen["json"] == seen["point"] == pytest.approx(18.0)
    assert seen["cli"] == [True, "18.0"]  # the last column, before the flags
    head, row = (line.split(",") for line in seen["csv"])
    assert float(row[head.index("half joules")]) == pytest.approx(18.0)
    assert head.index("half joules") == head.index("power by domain") - 1
    assert seen["page"]


def test_each_figure_is_a_run_attribute_and_in_its_json() -> None:
    run = RunScore("r", "m", "h", "b", "d", "finished", 0, 10**10, inferences=100, top1=0.5,
                   energy_j=3.6, idle_w=0.1, stats=RunStats(cpu_util_pct=12.0))  # fmt: skip
    doc = run.as_dict()
    for figure in FIGURES:
        assert figure.name in doc, figure.name
        if figure.name != "throttle_reasons":  # the JSON keeps the statistics' empty list
            assert doc[figure.name] == figure.value(run), figure.name
    assert (run.duration_s, run.uwh_per_inference, run.composite) == (10.0, 10.0, 25.0)
    assert run.net_energy_j == pytest.approx(2.6) and run.cpu_util_pct == 12.0
    assert {f.origin for f in FIGURES} == {FIELD, STATS, DERIVED}


def test_text_figures_are_joined_and_absent_figures_none() -> None:
    run = RunScore("r", "m", "h", "b", "d", "running", 0, flags=["a", "b"])
    by_name = {f.name: f for f in FIGURES}
    assert by_name["flags"].shown(run) == "a; b"
    assert by_name["throttle_reasons"].shown(run) is None  # no statistics: no throttle data
    assert all(by_name[n].value(run) is None for n in ("duration_s", "composite", "gpu_power_w"))
    assert (
        by_name["top1"].point_field == "accuracy" and by_name["energy_j"].point_field == "energy_j"
    )
    assert by_name["net_uwh_per_inference"].point_field is None


def test_a_field_figure_must_be_a_field_of_the_class() -> None:
    @dataclass
    class Partial:
        run_id: str

    with pytest.raises(TypeError, match="'model' is no field of Partial"):
        with_figures(Partial)
    assert Figure("x", "", DERIVED, cli=View("x")).point_field is None
