"""Configuration: defaults, YAML, environment overrides, and errors that name key and fix."""

from __future__ import annotations

import re

import pytest
import yaml

from exporters import sources
from exporters.config import DEFAULTS, load_config
from exporters.config_checks import nonblank
from exporters.errors import ConfigError
from exporters.schema import Reading
from exporters.sources.base import SourceSpec


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
        "max_watts": 2000.0,
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
        ("interval_s: {power: .inf}", "'interval_s.power' is inf: give a number of seconds"),
        ("flush_interval_s: .nan", "'flush_interval_s' is nan: give a number of seconds"),
        (
            "interval_s: {power: 1.0e-300}",
            "is 1e-300: give a number of seconds above 0 .from 0.001",
        ),
        ("interval_s: {system: 1.0e+300}", "is 1e.300: give a number of seconds above 0"),
        (f"sources: {{cpu_model: {{idle_watts: {10**400}}}}}", "idle_watts is 1000000000"),
        ("sources: {cpu_model: {max_watts: -.inf}}", "max_watts is -inf"),
        ("sources: {dcgm: {url: 9400}}", "'sources.dcgm.url' is 9400: give dcgm-exporter's URL"),
        ("sources: {dcgm: {url: 'http://[::1/metrics'}}", "'sources.dcgm.url' is 'http://[::1"),
        ("host: [a, b]", "'host' is ['a', 'b']: give a name, or null for the hostname"),
        ("host: 'a\tb'", "'host' is 'a\\\\tb': leave out control characters"),
        ("sysfs_root: 7", "'sysfs_root' is 7: give the directory's path"),
        ("metrics: {addr: ''}", "'metrics.addr' is '': give an address"),
        (f"store: {'x' * 500}", "'store' is 'xxxxxxxx"),
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


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e999", "١٢"])
def test_non_finite_and_odd_numbers_in_the_environment_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match=r"'flush_interval_s' is .*give a number of seconds"):
        load_config(env={"TUBAI_FLUSH_INTERVAL_S": value})


def _leaf_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys += _leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
    return keys


@pytest.mark.parametrize("key", _leaf_keys(DEFAULTS))
@pytest.mark.parametrize("wrong", [[1, 2], {"a": 1}])
def test_a_wrong_yaml_type_at_any_key_is_a_config_error_naming_it(tmp_path, key, wrong) -> None:
    doc: dict = {}
    *parents, leaf = key.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = wrong
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=re.escape(key), check=lambda e: "\n" not in str(e)):
        load_config(path, env={})


def test_a_file_that_is_not_utf8_says_where_and_what_to_do(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("host: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at offset 9\): save it"):
        load_config(path, env={})


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", env={})


class SerialMeter:
    """A new built-in source, as its module would declare it (below: its spec)."""

    name, kind = "serial", "power"

    def __init__(self, port: str, interval_s: float) -> None:
        self.port, self.interval_s = port, interval_s

    def available(self) -> tuple[bool, str]:
        return False, f"serial: nothing answers on {self.port}: plug the meter in"

    def read(self) -> list[Reading]:
        return []


SERIAL = SourceSpec(
    key="serial",
    defaults={"enabled": True, "port": "/dev/ttyUSB0", "interval_s": 0.5},
    validate=lambda settings, where: nonblank(f"{where}.port", settings["port"], "give a port"),
    build=lambda settings, cfg: SerialMeter(settings["port"], settings["interval_s"]),
    rechecked=True,
)


def test_the_registry_is_the_one_list_of_built_in_sources() -> None:
    built_in = [spec.key for spec in sources.BUILT_IN]
    assert built_in == ["rapl", "nvml", "dcgm", "system", "cpu_model", "ipmi"]
    assert DEFAULTS["sources"] == sources.default_settings()
    assert list(DEFAULTS["sources"]) == [*built_in, "custom"]
    assert [s.key for s in sources.BUILT_IN if s.rechecked] == ["nvml", "dcgm", "ipmi"]


def test_a_new_built_in_source_is_its_spec_in_the_registry(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sources, "BUILT_IN", (*sources.BUILT_IN, SERIAL))
    conf = sources.default_settings()
    assert list(conf)[-2:] == ["serial", "custom"]
    for key, value, words in [
        ("enabled", "auto", "'sources.serial.enabled' is 'auto': use true or false"),
        ("interval_s", 0, "'sources.serial.interval_s' is 0: give a number of seconds above 0"),
        ("port", " ", "'sources.serial.port' is ' ': give a port"),
    ]:
        bad = {**conf, "serial": {**conf["serial"], key: value}}
        with pytest.raises(ConfigError, match=words):
            sources.check_settings(bad)
    sources.check_settings(conf)
    only = {key: {**conf[key], "enabled": key == "serial"} for key in conf if key != "custom"}
    cfg = {"sysfs_root": str(tmp_path), "procfs_root": "/proc", "sources": conf | only}
    ready, waiting, notes = sources.build_sources(cfg)
    assert ready == [] and [(s.name, s.interval_s) for s in waiting] == [("serial", 0.5)]
    assert notes == [
        "serial: not available: serial: nothing answers on /dev/ttyUSB0: plug the meter in"
    ]
