"""Hardware sources: one module per kind of hardware, each with the shape of :mod:`.base`.

:data:`BUILT_IN` is the one registry of built-in sources: each module declares its
:class:`~.base.SourceSpec` (config key, default settings and their checks, how to build the
source, whether it is looked for again, what ``enabled: auto`` means) and is listed here once,
in the order the doctor prints them. The configuration (:func:`default_settings`,
:func:`check_settings`), the agent (:func:`build_sources`) and the doctor (:func:`check_sources`)
all read it. Every ``sources.custom`` entry follows, by its source's ``name`` (:mod:`.custom`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from exporters.config_checks import positive_seconds, switch
from exporters.errors import ConfigError
from exporters.sources import cpu_model, dcgm, ipmi, nvml, rapl, system
from exporters.sources.base import Settings, Source, SourceSpec
from exporters.sources.custom import custom_entries, load_custom

BUILT_IN: tuple[SourceSpec, ...] = (
    rapl.SPEC,
    nvml.SPEC,
    dcgm.SPEC,
    system.SPEC,
    cpu_model.SPEC,
    ipmi.SPEC,
)


def update_s(name: str, settings: Settings | None = None) -> float | None:
    """How often the sensor behind source ``name`` updates its readings, in seconds: its spec's
    ``update_s``, else its configured ``interval_s`` (``settings``: the ``sources`` section); None
    for a source unknown here or read anew at every sample."""
    spec = next((s for s in BUILT_IN if s.key == name), None)
    if spec is not None and spec.update_s is not None:
        return spec.update_s
    section = (settings or {}).get(name)
    if isinstance(section, dict) and isinstance(section.get("interval_s"), int | float):
        return float(section["interval_s"])
    return None


def default_settings() -> Settings:
    """The ``sources`` defaults: each built-in's settings, then ``custom: []``."""
    return {spec.key: dict(spec.defaults) for spec in BUILT_IN} | {"custom": []}


def check_settings(conf: Settings) -> None:
    """Check ``sources`` of a configuration (:class:`ConfigError`); complete the custom entries."""
    for spec in BUILT_IN:
        where = f"sources.{spec.key}"
        settings = conf[spec.key]
        switch(f"{where}.enabled", settings["enabled"], auto=spec.auto is not None)
        if "interval_s" in settings:
            positive_seconds(f"{where}.interval_s", settings["interval_s"])
        spec.validate(settings, where)
    conf["custom"] = custom_entries(conf["custom"])


def all_sources(cfg: Settings) -> dict[str, Source]:
    """Every source, configured, whether enabled or not (for the doctor); custom ones last."""
    conf = cfg["sources"]
    sources = {spec.key: spec.build(conf[spec.key], cfg) for spec in BUILT_IN}
    taken = {key: f"sources.{key}" for key in conf}  # names in the agent's collector tags:
    taken |= {s.name: f"the {key} source" for key, s in sources.items()}
    taken["agent"] = "the agent's own points"
    for index, entry in enumerate(conf.get("custom") or []):
        source = load_custom(entry, index)
        if source.name in taken:
            raise ConfigError(
                f"config key 'sources.custom[{index}].class': {entry['class']} is named "
                f"{source.name!r}, which {taken[source.name]} already "
                "uses: give each source a name of its own"
            )
        taken[source.name] = f"sources.custom[{index}]"
        sources[source.name] = source
    return sources


@dataclass(frozen=True)
class SourceCheck:
    """One source as the configuration and the machine have it."""

    name: str
    source: Source
    used: bool  # enabled, and where enabled is "auto", wanted on this machine
    ok: bool = False  # available(), asked only of used sources
    why: str = ""  # what available() said
    auto: str = ""  # where enabled is "auto": why it is used here, or why not
    rechecked: bool = False  # looked for again when not available at start


def check_sources(cfg: Settings) -> Iterator[SourceCheck]:
    """Every source in order: is it used here, and if so, is it available (and why)?

    ``enabled: auto`` is decided here, for the agent and the doctor alike, by the source's
    ``auto`` rule from the sources found available before it. Custom sources are always used
    and always looked for again.
    """
    specs = {spec.key: spec for spec in BUILT_IN}
    found: list[str] = []
    for name, source in all_sources(cfg).items():
        spec = specs.get(name)
        enabled = cfg["sources"][name]["enabled"] if spec else True
        auto = ""
        if spec and spec.auto and enabled == "auto":
            enabled, auto = spec.auto(found)
        if not enabled:
            yield SourceCheck(name, source, used=False, auto=auto)
            continue
        ok, why = source.available()
        if ok:
            found.append(name)
        rechecked = spec is None or spec.rechecked
        yield SourceCheck(name, source, True, ok, why, auto, rechecked)


def build_sources(cfg: Settings) -> tuple[list[Source], list[Source], list[str]]:
    """(available sources, enabled-but-unavailable ones to check again, one note per source)."""
    ready: list[Source] = []
    waiting: list[Source] = []
    notes: list[str] = []
    for check in check_sources(cfg):
        if not check.used:
            continue
        notes.append(f"{check.name}: {'ok' if check.ok else 'not available'}: {check.why}")
        if check.ok:
            ready.append(check.source)
        elif check.rechecked:
            waiting.append(check.source)
    return ready, waiting, notes
