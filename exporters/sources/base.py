"""The shape every source has, how a built-in one is declared, and the errors sources raise.

A source is a small class::

    class RaplSource:
        name = "rapl"          # also the ``collector`` tag of its ``agent`` points
        kind = "power"         # "power" sources are sampled at the fine interval, "system" coarser
        interval_s = None      # optional: its own interval in seconds; None: that of its kind

        def available(self) -> tuple[bool, str]: ...   # (True, what it reads) or (False, why + fix)
        def read(self) -> list[Reading]: ...           # one instant, no hidden state between calls
        def close(self) -> None: ...                   # optional: let go of sessions and handles
        def await_update(self) -> bool: ...            # optional: return just after the counter
                                                       # updates (a window edge reads then)

``read()`` raises :class:`SourceError` (or a subclass) with a message that names the fix; the
agent records the failure in the ``agent`` measurement and goes on with the other sources.
Stateful work (counter wraparound, rates) is the agent's job, not the source's. When it stops,
the agent calls ``close()`` on every source that has one, sampled or still awaited.

A built-in source's module also declares its :class:`SourceSpec` as ``SPEC``, and
:data:`exporters.sources.BUILT_IN` lists it once: the configuration's defaults and checks, the
agent and the doctor all read that list.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import Reading

__all__ = ["Settings", "Source", "SourceError", "SourceSpec", "SourceUnavailable"]


@runtime_checkable
class Source(Protocol):
    """What every source has; ``interval_s`` and ``close()`` are optional (see the module)."""

    name: str
    kind: str

    def available(self) -> tuple[bool, str]: ...

    def read(self) -> list[Reading]: ...


Settings = dict[str, Any]


def _no_more_checks(settings: Settings, where: str) -> None:
    """For a source with no settings but ``enabled`` and ``interval_s`` (checked for all)."""


@dataclass(frozen=True)
class SourceSpec:
    """A built-in source as the configuration knows it (``sources.<key>``).

    ``enabled`` is in every ``defaults`` and is checked for all sources alike (true or false; also
    "auto" where ``auto`` is given), and so is ``interval_s`` where a source has it (seconds
    above 0). ``validate(settings, "sources.<key>")`` checks the rest and raises
    :class:`~exporters.errors.ConfigError`; ``build(settings, config)`` makes the source
    from valid settings and the whole configuration (for ``sysfs_root``, ``procfs_root``).
    ``auto(found)`` decides ``enabled: auto`` from the names of the sources found available
    before this one: ``(used, why)``, the why in words for the doctor.
    """

    key: str  # under ``sources:`` in the configuration, and the source's name
    defaults: Mapping[str, Any]
    build: Callable[[Settings, Settings], Source]
    validate: Callable[[Settings, str], None] = _no_more_checks
    rechecked: bool = False  # looked for again every RECHECK_S when missing at start
    auto: Callable[[Collection[str]], tuple[bool, str]] | None = None
    # how often the sensor behind the source's readings updates them, in seconds (RAPL's
    # counters ~1 ms, NVML's power ~100 ms, a BMC ~1 s); None where readings are computed at
    # each read (utilisation) or the source reads at its own interval_s (dcgm, custom)
    update_s: float | None = None
