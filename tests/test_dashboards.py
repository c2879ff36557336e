"""Grafana provisioning and dashboards: the files are what Grafana needs, and every query works.

The static tests read ``grafana/``. The InfluxDB test fills a real ``influxd`` with what the
stack writes (the real agent sampling a RAPL fixture tree, the CPU model, two fake NVML GPUs and
this machine's /proc; a benchmark run through the runner; its score from the scoring service),
then runs every query of every dashboard (panel targets, template variables, annotations) the
way Grafana would send it, and requires an answer without error and with data.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from custom_sources.meters import WallMeter
from dashboard_queries import (
    DASHBOARD_DIR,
    DATASOURCE,
    DATASOURCE_FILE,
    MACROS,
    PROVIDER_FILE,
    Query,
    alias_tags,
    load_dashboards,
    panels,
    queries,
    render,
    variables_used,
)
from fakes.fake_pynvml import FakeGPU, FakeNvml
from rapl_writer import ProfileWriter, make_tree

from exporters.agent import Agent
from exporters.sources.cpu_model import CpuModelSource
from exporters.sources.nvml import NvmlSource
from exporters.sources.rapl import RaplSource
from exporters.sources.system import SystemSource
from exporters.stores.influxdb import InfluxDBStore

UIDS = {
    "host.json": "tubai-host",
    "gpu.json": "tubai-gpu",
    "runs.json": "tubai-runs",
    "scores.json": "tubai-scores",
}
PANEL_TYPES = {"timeseries", "stat", "table", "barchart", "xychart", "bargauge", "gauge"}
DASHBOARDS = load_dashboards()

HOST = "lab-1.tubai"  # the benchmark machine: RAPL fixture, CPU model, fake GPUs, real /proc
OTHER_HOST = "lab-2"  # /proc is the fixture tree: disks, interfaces, MHz whatever this machine has
FIXTURE_PROC = Path(__file__).parent / "fixtures" / "proc"
RUN_ID = "digits/cnn (dashboards) 1.0"  # regex specials: Grafana escapes them, InfluxDB matches
RUN_IDS = [f"{RUN_ID}.1", f"{RUN_ID}.2"]  # its two passes
WRAPS = {"package-0": 262_143.0, "psys": 262_143.0}
WATTS = {"package-0": 30.0, "psys": 45.0}


# -- provisioning -------------------------------------------------------------------------------


def test_datasource_provisioning_has_what_grafana_needs() -> None:
    doc = yaml.safe_load(DATASOURCE_FILE.read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["name"] == "tubai InfluxDB"
    assert {"uid": ds["uid"], "type": ds["type"]} == DATASOURCE
    assert ds["access"] == "proxy" and ds["url"] == "http://influxdb:8086"
    assert ds["isDefault"] is True and ds["editable"] is False
    json_data, secure = ds["jsonData"], ds["secureJsonData"]
    assert json_data["version"] == "InfluxQL" and json_data["httpMode"] == "GET"
    assert json_data["dbName"] == "${TUBAI_INFLUXDB_BUCKET}"
    # Grafana's own read-only InfluxDB credential (a v1 user, sent as basic auth), from its
    # environment; never a token, and nothing in the file itself.
    assert ds["user"] == "${TUBAI_INFLUXDB_USERNAME}"
    assert secure == {"password": "${TUBAI_INFLUXDB_PASSWORD}"}
    assert "password" not in ds and "basicAuth" not in ds
    assert not any(k.startswith("httpHeader") for k in json_data)


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    doc = yaml.safe_load(PROVIDER_FILE.read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["folder"] == "tubai"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["disableDeletion"] is True and provider["allowUiUpdates"] is False
    assert provider["updateIntervalSeconds"] == 30


# -- dashboards, statically ---------------------------------------------------------------------


def test_dashboards_are_the_four_with_stable_unique_uids() -> None:
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == UIDS
    assert len({d["title"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)
    for name, d in DASHBOARDS.items():
        assert d["title"].startswith("tubai: "), name
        assert d["schemaVersion"] >= 39 and d["id"] is None, name
        assert d["time"]["to"] == "now", name
    assert DASHBOARDS["scores.json"]["time"]["from"] == "now-30d"
    for name in ("host.json", "gpu.json", "runs.json"):
        assert DASHBOARDS[name]["time"]["from"] == "now-1h"
        assert DASHBOARDS[name]["refresh"] == "10s"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_json_is_pretty_printed(name: str) -> None:
    text = (DASHBOARD_DIR / name).read_text()
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_every_panel_and_query_uses_the_provisioned_datasource(name: str) -> None:
    d = DASHBOARDS[name]
    shown = list(panels(d))
    assert shown, name
    ids = [p["id"] for p in d["panels"]] + [p["id"] for p in shown if p not in d["panels"]]
    assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
    for p in shown:
        where = f"{name} panel {p.get('title')!r}"
        assert p["type"] in PANEL_TYPES, where
        assert p["datasource"] == DATASOURCE, where
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE, f"{where} target {t['refId']}"
            assert t["rawQuery"] is True and t["query"].strip(), f"{where} target {t['refId']}"
            assert t["resultFormat"] in ("time_series", "table"), f"{where} target {t['refId']}"
    for var in d["templating"]["list"]:
        assert var["datasource"] == DATASOURCE, f"{name} variable {var['name']}"
    for anno in d["annotations"]["list"]:
        assert anno["datasource"] == DATASOURCE, f"{name} annotation {anno['name']}"
        assert anno["target"]["datasource"] == DATASOURCE, f"{name} annotation {anno['name']}"
        assert "$timeFilter" in anno["target"]["query"]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_queries_refer_only_to_defined_variables(name: str) -> None:
    d = DASHBOARDS[name]
    defined: set[str] = set()
    for var in d["templating"]["list"]:
        used = variables_used(var["query"]) - MACROS
        assert used <= defined, f"{name} variable {var['name']} uses {used - defined} before"
        defined.add(var["name"])
    for q in queries(name, d):
        assert variables_used(q.query) <= defined | MACROS, f"{q.where}: {q.query}"
    for p in panels(d):
        assert variables_used(p["title"]) <= defined, f"{name} panel {p['title']!r}"


# -- every query against a real InfluxDB ---------------------------------------------------------


class _GpuClock:
    """Lets time pass on the fake GPUs, so their energy counters advance at their power."""

    def __init__(self, nvml: FakeNvml) -> None:
        self.nvml = nvml
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.02):
            now = time.monotonic()
            for gpu in self.nvml.gpus:
                gpu.advance(now - last)
            last = now

    def __enter__(self) -> _GpuClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _fill(store: InfluxDBStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    """Two agents sampling, a benchmark run of two passes marked in between, then their scores
    (returned: their 95% intervals are on the Scores dashboard)."""
    from benchmark.runner import RunOptions, run_benchmark
    from benchmark.sampling import Sampler
    from exporters.config import load_config
    from scoring.service import score_pending

    zones = make_tree(tmp_path / "sys", WRAPS)
    monkeypatch.setenv("TUBAI_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    monkeypatch.chdir(tmp_path)  # the digits model's cache (data/models) lands here
    nvml = FakeNvml(
        [
            FakeGPU(name="NVIDIA H200", uuid="GPU-aaaa", power_mw=312_456, energy_mj=5_000_000),
            FakeGPU(name="Tesla P100-PCIE-16GB", uuid="GPU-bbbb", power_mw=40_000, energy_mj=None),
        ]
    )
    intervals = {"power": 0.1, "system": 0.5}
    lab1 = Agent(
        [
            RaplSource(tmp_path / "sys"),
            CpuModelSource(),
            NvmlSource(nvml=nvml),
            SystemSource(),
            WallMeter(),
        ],  # a custom source, for the wall and custom meters panel
        store,
        host=HOST,
        intervals=intervals,
        flush_interval_s=0.25,
    )
    lab2 = Agent(
        [SystemSource(procfs_root=FIXTURE_PROC)],
        store,
        host=OTHER_HOST,
        intervals=intervals,
        flush_interval_s=0.25,
    )
    writer = ProfileWriter(zones, WRAPS, lambda domain, t: WATTS[domain] * t)
    threads = [threading.Thread(target=a.run, daemon=True) for a in (lab1, lab2)]
    writer.start()
    try:
        with _GpuClock(nvml):
            for t in threads:
                t.start()
            time.sleep(3.0)
            with Sampler(store, host=HOST, config=load_config()) as sampler:
                assert sampler.external  # it found lab1's agent feeding the store
                options = RunOptions(  # long enough for system samples (0.5 s) in the window,
                    # and for three throughput bins (the throughput CV of the Steadiness panel)
                    model="digits_cnn",
                    limit=900,
                    batch_size=64,
                    progress=False,
                    run_id=RUN_ID,
                    min_duration_s=3.0,
                    repeats=2,  # passes of one group: intervals, on the Scores dashboard
                )
                results = run_benchmark(options, store, sampler)
            assert all(r.energy is not None and r.energy.total_joules > 0 for r in results)
            time.sleep(1.0)  # samples after the run, on the power panels
    finally:
        for agent in (lab1, lab2):
            agent.stop()
        for t in threads:
            t.join(timeout=30)
        writer.stop()
    scored = score_pending(store, grace_s=0.0)
    assert [r.run_id for r in scored] == RUN_IDS and all(r.composite for r in scored)
    assert all(r.passes == 2 and r.uwh_ci_low < r.uwh_ci_high for r in scored)
    store.flush()
    return scored


def _influxql(http: str, database: str, q: str) -> dict:
    """One query as Grafana's proxy sends it (httpMode GET, epoch=ms)."""
    r = requests.get(f"{http}/query", params={"db": database, "q": q, "epoch": "ms"}, timeout=30)
    return {"status": r.status_code, **r.json()}


def _problems(q: Query, rendered: str, answer: dict) -> tuple[list[str], list[dict]]:
    """What is wrong with one query's answer, and its series."""
    where = f"{q.where}: {rendered}"
    if answer["status"] != 200 or answer.get("error"):
        return [f"{where}: HTTP {answer['status']} {answer.get('error')}"], []
    results = answer.get("results") or []
    errors = [r["error"] for r in results if r.get("error")]
    if errors:
        return [f"{where}: {errors}"], []
    series = [s for r in results for s in r.get("series") or [] if s.get("values")]
    if not series:
        return [f"{where}: no data"], []
    problems = []
    missing = {t for s in series for t in alias_tags(q.alias) - set(s.get("tags") or {})}
    if missing:
        problems.append(f"{where}: alias {q.alias!r} shows tags not grouped by: {missing}")
    columns = {c for s in series for c in s["columns"]}
    filled = {
        c for s in series for row in s["values"] for c, v in zip(s["columns"], row) if v is not None
    }
    if columns - filled:
        problems.append(f"{where}: no value at all in the column(s) {sorted(columns - filled)}")
    names = {"Time"} | columns
    names |= {k for s in series for k in s.get("tags") or {}}
    if q.fields_used - names:
        problems.append(f"{where}: the answer lacks the fields {q.fields_used - names}")
    return problems, series


@pytest.mark.influxdb
def test_every_dashboard_query_answers_with_data(influxd, tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorflow")
    started_ms = time.time_ns() // 1_000_000
    with InfluxDBStore(influxd.http, influxd.database, spool_dir=tmp_path / "spool") as store:
        scored = _fill(store, tmp_path, monkeypatch)
    start_ms, end_ms = started_ms - 60_000, time.time_ns() // 1_000_000 + 60_000

    problems: list[str] = []
    checked = 0
    for name, dashboard in DASHBOARDS.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        values: dict[str, list[str]] = {}
        for q in queries(name, dashboard):
            rendered = render(q.query, values, start_ms, end_ms)
            answer = _influxql(influxd.http, influxd.database, rendered)
            found, series = _problems(q, rendered, answer)
            problems += found
            checked += 1
            if q.kind == "variable":  # SHOW TAG VALUES answers columns key, value
                var = variables[q.name]
                options = sorted({row[1] for s in series for row in s["values"]})
                if var.get("sort") == 2:
                    options.reverse()
                # "All" where the variable offers it, else Grafana's default: the first value
                values[q.name] = options if var.get("includeAll") else options[:1]
        if name in ("host.json", "runs.json", "scores.json"):
            assert HOST in values["host"], (name, values)
        if name == "host.json":
            assert OTHER_HOST in values["host"]
        if name == "gpu.json":
            assert values["gpu"] == ["0", "1"]
        if name == "runs.json":
            assert values["run_id"] == RUN_IDS[-1:]  # the latest, as Grafana sorts them
    assert checked >= 40
    if scored[-1].composite_ci_high == math.inf:  # the energy's interval reached 0 (module
        # confidence): no upper end to show, all else is
        problems = [p for p in problems if "'composite 95% high'" not in p]
    assert not problems, "\n".join(problems)
    _check_intervals(influxd, scored)
    _check_environment(influxd)


def _check_environment(influxd) -> None:
    """The Runs dashboard's environment is the pass's: this machine's id and its manifest."""
    from benchmark.manifest import machine_id

    panel = next(p for p in DASHBOARDS["runs.json"]["panels"] if "Environment" in p["title"])
    query = render(panel["targets"][0]["query"], {"run_id": RUN_IDS[-1:]}, 0, 2**41)
    (series,) = _influxql(influxd.http, influxd.database, query)["results"][0]["series"]
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row["machine"] == machine_id() == json.loads(row["manifest"])["machine_id"]
    assert series["tags"]["backend"] == json.loads(row["manifest"])["backend"]


def _check_intervals(influxd, scored: list) -> None:
    """The Scores dashboard's intervals are those of the group's latest pass."""
    panel = next(p for p in DASHBOARDS["scores.json"]["panels"] if "interval" in p["title"])
    query = render(panel["targets"][0]["query"], {"host": [HOST]}, 0, 2**41)
    (series,) = _influxql(influxd.http, influxd.database, query)["results"][0]["series"]
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    latest = scored[-1]
    assert row["passes"] == 2
    assert row["uWh 95% low"] == pytest.approx(latest.uwh_ci_low, rel=1e-9)
    assert row["uWh 95% high"] == pytest.approx(latest.uwh_ci_high, rel=1e-9)
    assert row["composite 95% low"] == pytest.approx(latest.composite_ci_low, rel=1e-9)
    high = latest.composite_ci_high
    assert row["composite 95% high"] == (None if high == math.inf else pytest.approx(high))
