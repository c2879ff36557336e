"""The exporter's configuration: defaults, a YAML file, environment overrides, validation.

Precedence, lowest first: the defaults below, the YAML file (``--config``), environment variables
and command-line options. An environment variable names a key path in capitals with ``__``
between levels, after ``TUBAI_``: ``TUBAI_STORE``, ``TUBAI_INTERVAL_S__POWER=0.05``,
``TUBAI_SOURCES__DCGM__URL=http://gpu-host:9400/metrics``. Values are read as YAML scalars.
A bad key or value raises :class:`ConfigError` naming the key, the problem and the fix.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from exporters.config_checks import (
    nonblank,
    positive_seconds,
    require,
    tag_problem,
    unknown_key,
)
from exporters.errors import ConfigError, shown
from exporters.priority import PRIORITIES
from exporters.sources import check_settings, default_settings
from exporters.stores import DEFAULT_STORE
from exporters.yaml_file import LOAD_ERRORS, read_yaml

DEFAULTS: dict[str, Any] = {
    "store": DEFAULT_STORE,
    "host": None,  # default: the machine's hostname
    "sysfs_root": "/sys",
    "procfs_root": "/proc",
    "interval_s": {"power": 0.1, "system": 1.0},
    "flush_interval_s": 2.0,  # batches to the store (README, "Running the exporter": why 2 s)
    "sampler_priority": "idle",  # the sampling thread's: idle, low or normal (priority.py)
    "metrics": {"port": None, "addr": "127.0.0.1"},  # port: serve /metrics there; None: off
    "sources": default_settings(),  # each built-in's (its module's SPEC), then custom: [...]
}

_SECONDS = ("interval_s.power", "interval_s.system", "flush_interval_s")


def _merge(base: dict, update: Mapping, path: str = "") -> None:
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base:
            raise unknown_key(where, key, base, prefix=path)
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"config key {shown(where)} must be a mapping of keys, not {shown(value)}"
                )
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
        except LOAD_ERRORS:  # not a YAML scalar (e.g. 2001-13-01): the text as it is
            target[keys[-1]] = text
    return out


def _get(cfg: dict, dotted: str) -> Any:
    node = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


def _validate(cfg: dict) -> None:
    for key in _SECONDS:
        positive_seconds(key, _get(cfg, key))
    for key in ("sysfs_root", "procfs_root"):
        nonblank(key, cfg[key], "give the directory's path")
    host = cfg["host"]
    why = tag_problem(host) if isinstance(host, str) else "give a name"
    require(host is None or why is None, "host", host, f"{why}, or null for the hostname")
    nonblank("metrics.addr", cfg["metrics"]["addr"], "give an address such as 127.0.0.1")
    priority = cfg["sampler_priority"]
    require(
        priority in PRIORITIES, "sampler_priority", priority, f"give one of {', '.join(PRIORITIES)}"
    )
    check_settings(cfg["sources"])
    port = cfg["metrics"]["port"]
    is_port = not isinstance(port, bool) and isinstance(port, int) and 0 <= port <= 65535
    require(port is None or is_port, "metrics.port", port, "give a TCP port (0-65535) or null")
    store = cfg["store"]
    require(
        isinstance(store, str) and "://" in store,
        "store",
        store,
        "give a store URL such as sqlite:///data/tubai.db or influxdb://host:8086/tubai",
    )


def _read_file(path: Path) -> Mapping:
    """The mapping a configuration file holds; :class:`ConfigError` when it is not one."""
    loaded = read_yaml(path, "config file", ConfigError) or {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(
            f"config file {shown(str(path))} must hold a mapping of keys, not {shown(loaded)}"
        )
    return loaded


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The validated configuration as a nested dict (see :data:`DEFAULTS` for the keys)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        _merge(cfg, _read_file(Path(path)))
    _merge(cfg, _env_overrides(os.environ if env is None else env))
    _merge(cfg, {k: v for k, v in (overrides or {}).items() if v is not None})
    _validate(cfg)
    return cfg
