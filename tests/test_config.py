"""Configuration: defaults, YAML, environment overrides, and errors that name key and fix."""

from __future__ import annotations

import pytest

from exporters.config import load_config
from exporters.errors import ConfigError


def test_defaults() -> None:
    cfg = load_config(env={})
    assert cfg["interval_s"] == {"power": 0.1, "system": 1.0}
    assert cfg["store"] == "sqlite:///data/tubai.db"
    assert cfg["sources"]["cpu_model"]["enabled"] == "auto"


def test_file_then_environment_then_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("interval_s:\n  power: 0.05\nsources:\n  dcgm: {enabled: true}\n")
    env = {
        "TUBAI_INTERVAL_S__SYSTEM": "2",
        "TUBAI_STORE": "influxdb://db:8086/tubai",
        "TUBAI_INFLUXDB_TOKEN": "secret",  # not a config key: ignored
        "TUBAI_SOURCES__DCGM__URL": "http://gpu:9400/metrics",
    }
    cfg = load_config(path, env=env, overrides={"store": "sqlite:///x.db"})
    assert cfg["interval_s"] == {"power": 0.05, "system": 2}
    assert cfg["sources"]["dcgm"] == {
        "enabled": True,
        "url": "http://gpu:9400/metrics",
        "interval_s": 1.0,
    }
    assert cfg["store"] == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("intervals: {power: 1}", "'intervals' is unknown: did you mean 'interval_s'"),
        ("sources: {rapl: {enabld: true}}", "did you mean 'sources.rapl.enabled'"),
        ("interval_s: {power: 0}", "'interval_s.power' is 0: give a number of seconds above 0"),
        ("interval_s: {power: fast}", "'interval_s.power' is 'fast'"),
        ("sources: {cpu_model: {enabled: maybe}}", "use true, false or auto"),
        ("sources: {rapl: {enabled: 1}}", "'sources.rapl.enabled' is 1: use true or false"),
        ("metrics: {port: 70000}", "'metrics.port' is 70000"),
        ("store: tubai.db", "give a store URL"),
        ("interval_s: 3", "'interval_s' must be a mapping"),
        ("- a\n- b", "must hold a mapping"),
        ("interval_s: {power: [1", "not valid YAML at line 1"),
    ],
)
def test_bad_config_names_key_problem_and_fix(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path, env={})


def test_bad_environment_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"'interval_s\.power' is -1"):
        load_config(env={"TUBAI_INTERVAL_S__POWER": "-1"})


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", env={})
