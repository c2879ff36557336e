"""The data model shared by every source, the agent and both stores.

A source returns :class:`Reading` objects for one instant. Plain ``fields`` are stored as they
are; ``counters`` hold raw hardware counters that the agent turns into monotonic totals (across
wraparound and resets) and, where asked, into rates. The agent stamps readings into
:class:`Point` objects, the unit every store writes and returns.

Measurements, tags and fields are those of ARCHITECTURE.md ("Data model"). Units are in the
field names (``joules_total``, ``watts``, ``duration_s``); conversion happens once, at the source
boundary, through ``Counter.scale``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FieldValue = float | int | bool | str

ENERGY = "energy"
GPU = "gpu"
CPU = "cpu"
MEM = "mem"
DISK = "disk"
NET = "net"
AGENT = "agent"
RUN = "run"
SCORE = "score"


@dataclass(frozen=True)
class Counter:
    """A raw, ever-increasing hardware counter as read at one instant.

    ``raw`` is the value in the hardware's unit; ``scale`` converts it to the unit of the stored
    field (``energy_uj`` to joules: ``1e-6``). ``wrap`` is the raw value at which the counter rolls
    over to zero (RAPL's ``max_energy_range_uj``), ``None`` when it does not wrap. ``rate_field``
    names a field that receives the counter's rate of change per second, multiplied by
    ``rate_scale`` (joules per second are watts: ``rate_scale=1``). ``max_rate`` is the physical
    ceiling in raw units per second (a RAPL zone's maximum power in microwatts is its
    ``energy_uj`` ceiling): a step beyond it is a bad reading, never energy
    (:mod:`exporters.counters`); ``None`` for a counter without a known ceiling.
    """

    raw: float
    scale: float = 1.0
    wrap: float | None = None
    rate_field: str | None = None
    rate_scale: float = 1.0
    max_rate: float | None = None


@dataclass(frozen=True)
class Reading:
    """What a source read for one series at one instant (no timestamp yet)."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    counters: Mapping[str, Counter] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    """One stored point: measurement, string tags, typed fields, wall-clock nanoseconds."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def series_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The identity of the series this point belongs to."""
        return self.measurement, tuple(sorted(self.tags.items()))


def energy_tags(source: str, domain: str, estimated: bool = False) -> dict[str, str]:
    """Tags of an ``energy`` series; ``estimated`` is always present, as "true" or "false"."""
    return {"source": source, "domain": domain, "estimated": "true" if estimated else "false"}
