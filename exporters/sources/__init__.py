"""Hardware sources: one module per kind of hardware, each with the shape of :mod:`.base`.

:func:`build_sources` turns the configuration into source objects, in the order the doctor
prints them. The CPU model estimate is enabled ``auto``-matically only where no RAPL domain is
readable, and it says so.
"""

from __future__ import annotations

from typing import Any

from exporters.sources.base import Source


def all_sources(cfg: dict[str, Any]) -> dict[str, Source]:
    """Every built-in source, configured, whether enabled or not (for the doctor)."""
    from exporters.sources.cpu_model import CpuModelSource
    from exporters.sources.dcgm import DcgmSource
    from exporters.sources.nvml import NvmlSource
    from exporters.sources.rapl import RaplSource
    from exporters.sources.system import SystemSource

    conf = cfg["sources"]
    dcgm = DcgmSource(conf["dcgm"]["url"])
    dcgm.interval_s = conf["dcgm"]["interval_s"]
    return {
        "rapl": RaplSource(cfg["sysfs_root"]),
        "nvml": NvmlSource(),
        "dcgm": dcgm,
        "system": SystemSource(procfs_root=cfg["procfs_root"]),
        "cpu_model": CpuModelSource(
            idle_watts=conf["cpu_model"]["idle_watts"],
            max_watts=conf["cpu_model"]["max_watts"],
            procfs_root=cfg["procfs_root"],
        ),
    }


def build_sources(cfg: dict[str, Any]) -> tuple[list[Source], list[Source], list[str]]:
    """(available sources, enabled-but-unavailable ones to check again, one note per source)."""
    sources = all_sources(cfg)
    ready: list[Source] = []
    waiting: list[Source] = []
    notes: list[str] = []
    rapl_ok = False
    for name, source in sources.items():
        enabled = cfg["sources"][name]["enabled"]
        if name == "cpu_model" and enabled == "auto":
            enabled = not rapl_ok
            if not enabled:
                continue
        if not enabled:
            continue
        ok, why = source.available()
        rapl_ok = rapl_ok or (name == "rapl" and ok)
        notes.append(f"{name}: {'ok' if ok else 'not available'}: {why}")
        (ready if ok else waiting).append(source)
    return ready, [s for s in waiting if s.name in ("dcgm", "nvml")], notes
