"""The exporter's configuration: defaults, a YAML file, environment overrides, validation.

Precedence, lowest first: the defaults below, the YAML file (``--config``), environment variables
and command-line options. An environment variable names a key path in capitals with ``__``
between levels, after ``TUBAI_``: ``TUBAI_STORE``, ``TUBAI_INTERVAL_S__POWER=0.05``,
``TUBAI_SOURCES__DCGM__URL=http://gpu-host:9400/metrics``. Values are read as YAML scalars.
A bad key or value raises :class:`ConfigError` naming the key, the problem and the fix.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from exporters.errors import ConfigError
from exporters.stores import DEFAULT_STORE

DEFAULTS: dict[str, Any] = {
    "store": DEFAULT_STORE,
    "host": None,  # default: the machine's hostname
    "sysfs_root": "/sys",
    "procfs_root": "/proc",
    "interval_s": {"power": 0.1, "system": 1.0},
    "flush_interval_s": 1.0,
    "metrics": {"port": None, "addr": "127.0.0.1"},  # port: serve /metrics there; None: off
    "sources": {
        "rapl": {"enabled": True},
        "nvml": {"enabled": True},
        "dcgm": {"enabled": False, "url": "http://localhost:9400/metrics", "interval_s": 1.0},
        "system": {"enabled": True},
        # "auto": only where no RAPL domain is readable (an estimate, tagged estimated=true)
        "cpu_model": {"enabled": "auto", "idle_watts": 10.0, "max_watts": 65.0},
        # wall power from the BMC (ipmitool dcmi power reading); host: null = local /dev/ipmi0,
        # else LAN with the password in IPMI_PASSWORD (never here)
        "ipmi": {
            "enabled": False,
            "host": None,
            "user": None,
            "interface": "lanplus",
            "ipmitool": "ipmitool",
            "interval_s": 1.0,
        },
        # [{class: "package.module:Class", interval_s: 1.0, options: {...}}, ...]
        "custom": [],
    },
}

_POSITIVE = (
    "interval_s.power",
    "interval_s.system",
    "flush_interval_s",
    "sources.dcgm.interval_s",
    "sources.ipmi.interval_s",
)
_BOOL_OR_AUTO = ("sources.cpu_model.enabled",)
_IPMI_INTERFACES = ("lanplus", "lan")
_CUSTOM_KEYS = ("class", "interval_s", "options")


def _merge(base: dict, update: Mapping, path: str = "") -> None:
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base:
            near = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
            hint = f"did you mean {path + near[0]!r}?" if near else f"known: {', '.join(base)}"
            raise ConfigError(f"config key {where!r} is unknown: {hint}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {where!r} must be a mapping of keys, not {value!r}")
            _merge(base[key], value, f"{where}.")
        else:
            base[key] = value


def _env_overrides(env: Mapping[str, str]) -> dict:
    out: dict = {}
    for name, text in env.items():
        if not name.startswith("TUBAI_"):
            continue
        keys = name[len("TUBAI_") :].lower().split("__")
        level: Any = DEFAULTS
        for k in keys[:-1]:
            level = level.get(k) if isinstance(level, dict) else None
        if (
            not isinstance(level, dict)
            or keys[-1] not in level
            or isinstance(level[keys[-1]], dict)
        ):
            continue  # other TUBAI_ variables (credentials, test switches) are not config keys
        target = out
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        try:
            target[keys[-1]] = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            target[keys[-1]] = text
    return out


def _get(cfg: dict, dotted: str) -> Any:
    node = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


def _validate(cfg: dict) -> None:
    for key in _POSITIVE:
        value = _get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"config key {key!r} is {value!r}: give a number of seconds above 0")
    for key in _BOOL_OR_AUTO:
        if _get(cfg, key) not in (True, False, "auto"):
            raise ConfigError(f"config key {key!r} is {_get(cfg, key)!r}: use true, false or auto")
    for name, source in cfg["sources"].items():
        if name == "custom":
            continue
        if (
            not isinstance(source["enabled"], bool)
            and f"sources.{name}.enabled" not in _BOOL_OR_AUTO
        ):
            raise ConfigError(
                f"config key 'sources.{name}.enabled' is {source['enabled']!r}: use true or false"
            )
    _validate_ipmi(cfg["sources"]["ipmi"])
    cfg["sources"]["custom"] = _custom_entries(cfg["sources"]["custom"])
    port = cfg["metrics"]["port"]
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
    ):
        raise ConfigError(
            f"config key 'metrics.port' is {port!r}: give a TCP port (0-65535) or null"
        )
    if not isinstance(cfg["store"], str) or "://" not in cfg["store"]:
        raise ConfigError(
            f"config key 'store' is {cfg['store']!r}: give a store URL such as "
            "sqlite:///data/tubai.db or influxdb://host:8086/tubai"
        )


def _validate_ipmi(ipmi: dict) -> None:
    for key in ("host", "user"):
        if ipmi[key] is not None and (not isinstance(ipmi[key], str) or not ipmi[key].strip()):
            raise ConfigError(
                f"config key 'sources.ipmi.{key}' is {ipmi[key]!r}: give a name, or null"
                + (" for the local BMC" if key == "host" else "")
            )
    if ipmi["interface"] not in _IPMI_INTERFACES:
        raise ConfigError(
            f"config key 'sources.ipmi.interface' is {ipmi['interface']!r}: use lanplus (IPMI "
            "2.0) or lan (IPMI 1.5)"
        )
    if not isinstance(ipmi["ipmitool"], str) or not ipmi["ipmitool"].strip():
        raise ConfigError(
            f"config key 'sources.ipmi.ipmitool' is {ipmi['ipmitool']!r}: give the ipmitool "
            "command or its path"
        )


def _custom_entries(entries: Any) -> list[dict]:
    """``sources.custom`` checked, each entry with every key (``interval_s`` and ``options``)."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(
            f"config key 'sources.custom' is {entries!r}: give a list of "
            "{class: 'package.module:Class', options: {...}} entries"
        )
    out = []
    for i, entry in enumerate(entries):
        where = f"sources.custom[{i}]"
        if not isinstance(entry, Mapping) or "class" not in entry:
            raise ConfigError(
                f"config key {where!r} is {entry!r}: give a mapping with at least "
                "class: 'package.module:Class'"
            )
        for key in entry:
            if key not in _CUSTOM_KEYS:
                near = difflib.get_close_matches(str(key), _CUSTOM_KEYS, n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(_CUSTOM_KEYS)}"
                raise ConfigError(f"config key '{where}.{key}' is unknown: {hint}")
        interval = entry.get("interval_s")
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0
        ):
            raise ConfigError(
                f"config key '{where}.interval_s' is {interval!r}: give a number of seconds "
                "above 0, or leave it out for the interval of the source's kind"
            )
        options = entry.get("options")
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(
                f"config key '{where}.options' is {options!r}: give a mapping of keyword "
                "arguments for the class"
            )
        out.append(
            {"class": entry["class"], "interval_s": interval, "options": dict(options or {})}
        )
    return out


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The validated configuration as a nested dict (see :data:`DEFAULTS` for the keys)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise ConfigError(
                f"cannot read config file {path}: {e.strerror}; check the path"
            ) from e
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}: fix the syntax") from e
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping of keys, not {loaded!r}")
        _merge(cfg, loaded)
    _merge(cfg, _env_overrides(os.environ if env is None else env))
    _merge(cfg, {k: v for k, v in (overrides or {}).items() if v is not None})
    _validate(cfg)
    return cfg
