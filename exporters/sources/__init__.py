"""Hardware sources: one module per kind of hardware, each with the shape of :mod:`.base`.

:func:`all_sources` turns the configuration into source objects, in the order the doctor prints
them: the built-in ones by their config key, then every ``sources.custom`` entry by its source's
``name`` (:mod:`.custom`). The CPU model estimate is enabled ``auto``-matically only where no
RAPL domain is readable, and it says so.
"""

from __future__ import annotations

from typing import Any

from exporters.errors import ConfigError
from exporters.sources.base import Source

RECHECKED = ("dcgm", "nvml", "ipmi")  # built-ins looked for again when missing at start


def all_sources(cfg: dict[str, Any]) -> dict[str, Source]:
    """Every source, configured, whether enabled or not (for the doctor); custom ones last."""
    from exporters.sources.cpu_model import CpuModelSource
    from exporters.sources.custom import load_custom
    from exporters.sources.dcgm import DcgmSource
    from exporters.sources.ipmi import IpmiSource
    from exporters.sources.nvml import NvmlSource
    from exporters.sources.rapl import RaplSource
    from exporters.sources.system import SystemSource

    conf = cfg["sources"]
    dcgm = DcgmSource(conf["dcgm"]["url"])
    dcgm.interval_s = conf["dcgm"]["interval_s"]
    ipmi = conf["ipmi"]
    sources: dict[str, Source] = {
        "rapl": RaplSource(cfg["sysfs_root"]),
        "nvml": NvmlSource(),
        "dcgm": dcgm,
        "system": SystemSource(procfs_root=cfg["procfs_root"]),
        "cpu_model": CpuModelSource(
            idle_watts=conf["cpu_model"]["idle_watts"],
            max_watts=conf["cpu_model"]["max_watts"],
            procfs_root=cfg["procfs_root"],
        ),
        "ipmi": IpmiSource(
            host=ipmi["host"],
            user=ipmi["user"],
            interface=ipmi["interface"],
            ipmitool=ipmi["ipmitool"],
            interval_s=ipmi["interval_s"],
        ),
    }
    taken = {key: f"sources.{key}" for key in conf}  # names in the agent's collector tags:
    taken |= {s.name: f"the {key} source" for key, s in sources.items()}
    taken["agent"] = "the agent's own points"
    for index, spec in enumerate(conf.get("custom") or []):
        source = load_custom(spec, index)
        if source.name in taken:
            raise ConfigError(
                f"config key 'sources.custom[{index}].class': {spec['class']} is named "
                f"{source.name!r}, which {taken[source.name]} already "
                "uses: give each source a name of its own"
            )
        taken[source.name] = f"sources.custom[{index}]"
        sources[source.name] = source
    return sources


def is_enabled(cfg: dict[str, Any], name: str) -> bool | str:
    """A source's ``enabled`` setting (True, False or "auto"); custom sources are always on."""
    conf = cfg["sources"].get(name)
    return conf["enabled"] if isinstance(conf, dict) else True


def build_sources(cfg: dict[str, Any]) -> tuple[list[Source], list[Source], list[str]]:
    """(available sources, enabled-but-unavailable ones to check again, one note per source)."""
    sources = all_sources(cfg)
    ready: list[Source] = []
    waiting: list[Source] = []
    notes: list[str] = []
    rapl_ok = False
    for name, source in sources.items():
        enabled = is_enabled(cfg, name)
        if name == "cpu_model" and enabled == "auto":
            enabled = not rapl_ok
            if not enabled:
                continue
        if not enabled:
            continue
        ok, why = source.available()
        rapl_ok = rapl_ok or (name == "rapl" and ok)
        notes.append(f"{name}: {'ok' if ok else 'not available'}: {why}")
        if ok:
            ready.append(source)
        elif name in RECHECKED or name not in cfg["sources"]:  # custom: always looked for again
            waiting.append(source)
    return ready, waiting, notes
