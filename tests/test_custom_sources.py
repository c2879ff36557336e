"""Custom sources: loaded from the configuration, sampled by the agent, counted (or only shown)
in windows, listed by the doctor; every mistake in ``sources.custom`` is one ConfigError line.

The classes live in ``tests/custom_sources`` (``tests/`` is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from exporters.agent import Agent
from exporters.config import load_config
from exporters.errors import ConfigError
from exporters.schema import ENERGY, Counter, Reading, energy_tags
from exporters.sources import all_sources, build_sources
from exporters.sources.base import Source
from exporters.sources.custom import CUSTOM_MAX_WATTS, CustomSource, load_custom
from exporters.window import window_energy

TESTS = Path(__file__).parent
EXAMPLES = TESTS.parent / "examples"
ONLY_CUSTOM = {n: {"enabled": False} for n in ("rapl", "nvml", "system", "cpu_model")}
RISER = {"class": "custom_sources.meters:SteadyMeter", "options": {"domain": "gpu-riser0"}}
WALL = {"class": "custom_sources.meters:WallMeter", "interval_s": 0.05}


def config_file(tmp_path: Path, *custom: dict, **sources: dict) -> Path:
    path = tmp_path / "tubai.yaml"
    doc = {"sources": {**ONLY_CUSTOM, **sources, "custom": list(custom)}}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_custom_sources_are_loaded_from_a_config_file(tmp_path) -> None:
    cfg = load_config(config_file(tmp_path, RISER, WALL), env={})
    assert cfg["sources"]["custom"] == [
        {**RISER, "interval_s": None, "max_watts": None},
        {**WALL, "max_watts": None, "options": {}},
    ]
    ready, waiting, notes = build_sources(cfg)
    assert [s.name for s in ready] == ["riser", "pdu"] and waiting == []
    assert notes == ["riser: ok: gpu-riser0 at 100 W", "pdu: ok: pdu-wall at 300 W"]
    riser, wall = ready
    assert isinstance(riser, Source) and isinstance(riser, CustomSource)
    assert type(riser.inner).__name__ == "SteadyMeter" and riser.domain == "gpu-riser0"
    assert (riser.kind, riser.interval_s) == ("power", None)  # the interval of its kind
    assert (wall.kind, wall.interval_s) == ("system", 0.05)  # its own
    assert load_config(env={})["sources"]["custom"] == []


@pytest.mark.timing
def test_the_agent_samples_them_and_windows_count_only_matching_domains(tmp_path, store) -> None:
    cfg = load_config(config_file(tmp_path, RISER, WALL), env={})
    ready, _, _ = build_sources(cfg)
    Agent(ready, store, "lab1", {"power": 0.02, "system": 1.0}).run(duration_s=0.6)
    riser_points = store.read("energy", 0, 2**62, tags={"domain": "gpu-riser0"})
    wall_points = store.read("energy", 0, 2**62, tags={"domain": "pdu-wall"})
    assert len(riser_points) >= 10 and 5 <= len(wall_points) <= 13  # 0.02 s, 0.05 s (not 1 s)
    start = max(riser_points[0].time_ns, wall_points[0].time_ns)
    end = min(riser_points[-1].time_ns, wall_points[-1].time_ns)
    result = window_energy(store, start, end)
    domains = {d.domain: d for d in result.domains}
    riser, wall = domains["gpu-riser0"], domains["pdu-wall"]
    seconds = (end - start) / 1e9
    assert (riser.source, riser.method, riser.counted) == ("riser", "counter", True)
    assert riser.joules == pytest.approx(100.0 * seconds, rel=0.02)
    assert (wall.source, wall.method, wall.counted) == ("pdu", "power", False)
    assert wall.joules == pytest.approx(300.0 * seconds)
    assert result.total_joules == pytest.approx(riser.joules)  # the wall meter is not added
    both = window_energy(store, start, end, counted=("gpu*", "pdu-*"))
    assert both.total_joules == pytest.approx(riser.joules + wall.joules)


def test_a_custom_available_that_raises_or_answers_badly_is_reported() -> None:
    flaky = load_custom({"class": "custom_sources.meters:Flaky"}, 0)
    assert flaky.available() == (
        False,
        "custom_sources.meters:Flaky.available() raised OSError: meter unplugged",
    )
    odd = load_custom({"class": "custom_sources.meters:Flaky", "options": {"answer": True}}, 1)
    assert odd.available() == (
        False,
        "custom_sources.meters:Flaky.available() returned True, not (bool, str)",
    )
    assert odd.read()[0].fields == {"watts": 300.0}


class Capped:
    """A meter that sets its own ceiling on one counter and none on the others."""

    name, kind = "capped", "power"

    def available(self) -> tuple[bool, str]:
        return True, "three counters"

    def read(self) -> list[Reading]:
        own = Counter(raw=5.0, max_rate=42.0)
        wh = Counter(raw=7.0, scale=3600.0)  # a meter counting watt-hours
        return [
            Reading(ENERGY, energy_tags("capped", "own"), counters={"joules_total": own}),
            Reading(ENERGY, energy_tags("capped", "wh"), counters={"joules_total": wh}),
            Reading("cpu", {"cpu": "0"}, counters={"busy_seconds_total": Counter(raw=1.0)}),
        ]


def test_energy_counters_without_a_ceiling_get_max_watts(tmp_path) -> None:
    riser = {**RISER, "max_watts": 250}
    cfg = load_config(
        config_file(tmp_path, riser, {**RISER, "options": {"domain": "g", "name": "r2"}}), env={}
    )
    first, second = build_sources(cfg)[0]
    assert first.read()[0].counters["joules_total"].max_rate == 250.0  # joules: watts
    assert second.read()[0].counters["joules_total"].max_rate == CUSTOM_MAX_WATTS
    own, wh, cpu = CustomSource(Capped(), "x:Capped", 0, None, max_watts=7200.0).read()
    assert own.counters["joules_total"].max_rate == 42.0  # the source's own ceiling is kept
    assert wh.counters["joules_total"].max_rate == pytest.approx(2.0)  # 7200 W is 2 Wh/s
    assert cpu.counters["busy_seconds_total"].max_rate is None  # not energy: no ceiling


KEY = "config key 'sources.custom[0].class'"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"class": "custom_sources.meters"}, "give 'package.module:Class'"),
        ({"class": "tests/custom_sources/meters.py:WallMeter"}, "not a file path"),
        ({"class": "custom_sources.meters:"}, "is 'custom_sources.meters:'"),
        ({"class": 42}, "is 42: give 'package.module:Class'"),
        (
            {"class": "custom_sources.nope:Meter"},
            "no module named 'custom_sources.nope': is it on PYTHONPATH?",
        ),
        ({"class": "mylab_not_here.meters:PduMeter"}, "no module named 'mylab_not_here'"),
        (
            {"class": "custom_sources.needs_missing:Meter"},
            "needs module 'tubai_missing_dependency', which is not installed",
        ),
        ({"class": "custom_sources.meters:PduMeter"}, "has no class 'PduMeter'"),
        (
            {"class": "custom_sources.meters:Exploding"},
            "failed with RuntimeError: cannot reach the meter at 10.0.0.9",
        ),
        (
            {"class": "custom_sources.meters:SteadyMeter", "options": {"domian": "x"}},
            "failed with TypeError",
        ),
        ({"class": "custom_sources.meters:NoRead"}, "is not a source: method 'read()' is missing"),
        ({"class": "custom_sources.meters:BadKind"}, "attribute 'kind' is 'fast', not 'power'"),
        ({"class": "custom_sources.meters:NotNamed"}, "attribute 'name' is None"),
    ],
)
def test_each_mistake_is_one_config_error(tmp_path, spec: dict, words: str) -> None:
    cfg = load_config(config_file(tmp_path, spec), env={})
    with pytest.raises(ConfigError) as caught:
        build_sources(cfg)
    message = str(caught.value)
    assert message.startswith(KEY) and words in message and "\n" not in message


@pytest.mark.parametrize(
    ("custom", "words"),
    [
        ([WALL, WALL], "'sources.custom[1].class': custom_sources.meters:WallMeter is named 'pdu'"),
        ([WALL, WALL], "which sources.custom[0] already uses: give each source a name of its own"),
        (
            [{**RISER, "options": {"domain": "d", "name": "rapl"}}],
            "is named 'rapl', which the rapl source already uses",
        ),
        ([{**RISER, "options": {"domain": "d", "name": "agent"}}], "the agent's own points"),
    ],
)
def test_names_must_be_unique(tmp_path, custom: list, words: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        all_sources(load_config(config_file(tmp_path, *custom), env={}))
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("sources: {custom: {class: a:B}}", "'sources.custom' is {'class': 'a:B'}: give a list"),
        ("sources: {custom: [a:B]}", "'sources.custom[0]' is 'a:B': give a mapping"),
        ("sources: {custom: [{options: {}}]}", "with at least class:"),
        ("sources: {custom: [{class: a:B, option: {}}]}", "did you mean 'options'?"),
        ("sources: {custom: [{class: a:B, interval_s: 0}]}", "'sources.custom[0].interval_s' is 0"),
        ("sources: {custom: [{class: a:B, options: [1]}]}", "'sources.custom[0].options' is [1]"),
        (
            "sources: {custom: [{class: a:B, max_watts: -3}]}",
            "'sources.custom[0].max_watts' is -3: give a number of watts above 0, or leave it out",
        ),
    ],
)
def test_bad_custom_entries_are_config_errors(tmp_path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert words in str(caught.value)


def test_custom_sources_from_the_environment() -> None:
    env = {f"TUBAI_SOURCES__{name.upper()}__ENABLED": "false" for name in ONLY_CUSTOM}
    env["TUBAI_SOURCES__CUSTOM"] = "[{class: 'custom_sources.meters:WallMeter'}]"
    ready, _, _ = build_sources(load_config(env=env))
    assert [s.name for s in ready] == ["pdu"]


def doctor(config: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(EXAMPLES)])}
    roots = ["--sysfs-root", str(tmp_path), "--procfs-root", str(tmp_path)]
    command = [sys.executable, "-m", "exporters", "doctor", "--config", str(config), *roots]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=env, cwd=TESTS.parent
    )


def test_the_doctor_lists_custom_sources(tmp_path) -> None:
    result = doctor(config_file(tmp_path, RISER, WALL), tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line[:1].strip()}
    assert lines["riser"].split(None, 1)[1] == (
        "found: gpu-riser0 at 100 W [custom source custom_sources.meters:SteadyMeter, kind power]"
    )
    assert "found: pdu-wall at 300 W [custom source" in lines["pdu"]
    assert "reads 1 energy" in result.stdout
    assert "disabled" in lines["ipmi"]


def test_the_doctor_reports_a_bad_custom_source_in_one_line(tmp_path) -> None:
    result = doctor(config_file(tmp_path, {"class": "mylab.meters:PduMeter"}), tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"exporters: error: {KEY}: no module named 'mylab': is it on PYTHONPATH? "
        "Install it, or add the directory that holds it to PYTHONPATH"
    ]


@pytest.fixture
def examples_on_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_the_example_pdu_meter_from_a_file(tmp_path, examples_on_path) -> None:
    status = tmp_path / "outlets.json"
    status.write_text(json.dumps({"outlets": [{"watts": 41.5}, {"watts": 212.5, "wh": 10.0}]}))
    spec = {
        "class": "pdu_meter:PduMeter",
        "options": {
            "url": f"file://{status}",
            "domain": "pdu-outlet-2",
            "watts_key": "outlets.1.watts",
            "energy_key": "outlets.1.wh",
        },
    }
    cfg = load_config(config_file(tmp_path, spec), env={})
    [pdu], _, notes = build_sources(cfg)
    assert notes == [f"pdu: ok: pdu-outlet-2 (watts, joules_total) from file://{status}"]
    [reading] = pdu.read()
    assert dict(reading.tags) == {"source": "pdu", "domain": "pdu-outlet-2", "estimated": "false"}
    assert reading.fields == {"watts": 212.5}
    counter = reading.counters["joules_total"]
    assert counter.raw * counter.scale == 36000.0 and counter.rate_field is None
    status.write_text("{}")
    assert pdu.available() == (
        False,
        f"pdu: file://{status} has no 'outlets.1.watts': fix the key",
    )


def test_the_example_pdu_meter_over_http(tmp_path, examples_on_path) -> None:
    (tmp_path / "outlet.json").write_text(json.dumps({"power": {"kwh": 1.5}}))
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        options = {"watts_key": None, "energy_key": "power.kwh", "energy_unit": "kWh"}
        pdu = load_custom(
            {"class": "pdu_meter:PduMeter", "options": {"url": f"{base}/outlet.json", **options}}
        )
        [reading] = pdu.read()
        counter = reading.counters["joules_total"]
        assert reading.fields == {} and counter.rate_field == "watts"  # watts from the counter
        assert counter.raw * counter.scale == pytest.approx(5.4e6)
        ok, why = load_custom(
            {"class": "pdu_meter:PduMeter", "options": {"url": f"{base}/missing.json"}}
        ).available()
        assert not ok and why.startswith(f"pdu: cannot read {base}/missing.json: 404")
    finally:
        server.shutdown()
        server.server_close()
