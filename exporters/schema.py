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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporters.errors import UsageError, shown

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
    """One stored point: measurement, string tags, typed fields, wall-clock nanoseconds.

    The agent's points of one series share one ``tags`` dict: never change a point's tags."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def series_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The identity of the series this point belongs to."""
        return self.measurement, tuple(sorted(self.tags.items()))


# What no measurement, tag key, tag value or field name may hold: the C0 and C1 control characters
# (NUL, tab, the line breaks, ESC...), DEL, and Unicode's line and paragraph separators. Line
# protocol ends a point at a line break, InfluxQL cannot quote a NUL (a series holding one is
# stored, then no query can name it), and Python splits lines at several of the others.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_char(text: str) -> str | None:
    """The first control character in ``text`` (NUL, tab, a line break, ESC, DEL...), or None."""
    found = _CONTROL.search(text)
    return found.group() if found else None


def name_problem(
    what: str, name: object, measurement: object, may_be_empty: bool = False
) -> str | None:
    """Why ``name`` (``what``: "measurement", "tag key"...) of a ``measurement`` point cannot be
    stored, or None: it must be a string without control characters (:func:`control_char`),
    and not empty unless ``may_be_empty`` (a tag value)."""
    if not isinstance(name, str) or not (name or may_be_empty):
        return f"{what} {shown(name)} of a {shown(measurement)} point must be a string"
    char = control_char(name)
    if char is None:
        return None
    return (
        f"{what} {shown(name)} of a {shown(measurement)} point holds the control character "
        f"{char!r}, which no store can keep and query: remove it"
    )


def names_problem(point: Point) -> str | None:
    """The first :func:`name_problem` of ``point``'s measurement, tag keys and values, and field
    names, or None. Field values are not names: a string field may hold any text."""
    m = point.measurement
    names = [("measurement", m, False)]
    for key, value in point.tags.items():
        names += [("tag key", key, False), (f"value of tag {shown(key)}", value, True)]
    names += [("field", key, False) for key in point.fields]
    for what, name, may_be_empty in names:
        problem = name_problem(what, name, m, may_be_empty)
        if problem:
            return problem
    return None


def check_names(point: Point) -> None:
    """Raise :class:`UsageError` with :func:`names_problem`'s line when there is one."""
    problem = names_problem(point)
    if problem:
        raise UsageError(problem)


def energy_tags(source: str, domain: str, estimated: bool = False) -> dict[str, str]:
    """Tags of an ``energy`` series; ``estimated`` is always present, as "true" or "false"."""
    return {"source": source, "domain": domain, "estimated": "true" if estimated else "false"}


# GPU clock-event ("throttle") reasons: the bits of the ``gpu`` field ``clock_event_reasons``,
# as nvidia-ml-py's nvmlClocksEventReason* (formerly nvmlClocksThrottleReason*, the same bits)
# and DCGM's DCGM_FI_DEV_CLOCKS_EVENT_REASONS (formerly DCGM_FI_DEV_CLOCK_THROTTLE_REASONS).
GPU_IDLE = 0x1  # nothing runs: clocks are low because there is no work
APPLICATIONS_CLOCKS = 0x2  # clocks held at the application clocks someone set
SW_POWER_CAP = 0x4  # the power-management algorithm keeps the board under its power limit
HW_SLOWDOWN = 0x8  # hardware halves the clocks or more: too hot, power brake or too much draw
SYNC_BOOST = 0x10  # clocks matched to the slowest GPU of a sync-boost group
SW_THERMAL = 0x20  # the driver holds the clocks down to keep temperatures in range
HW_THERMAL = 0x40  # hardware thermal slowdown: the GPU is too hot
HW_POWER_BRAKE = 0x80  # an external power brake (the system's power supply) is asserted
DISPLAY_CLOCK = 0x100  # clocks set by the display
THROTTLE_POWER = SW_POWER_CAP | HW_POWER_BRAKE
THROTTLE_THERMAL = SW_THERMAL | HW_THERMAL
THROTTLED = THROTTLE_POWER | THROTTLE_THERMAL | HW_SLOWDOWN
THROTTLE_LABELS = (
    (SW_POWER_CAP, "power cap"),
    (HW_POWER_BRAKE, "power brake"),
    (THROTTLE_THERMAL, "thermal"),
    (HW_SLOWDOWN, "hardware slowdown"),
)


def clock_event_fields(reasons: int) -> dict[str, float]:
    """The ``gpu`` fields of a clock-event reasons bitmask, every one a float.

    ``clock_event_reasons`` is the bitmask itself; ``throttled`` is 1.0 when a reason in
    :data:`THROTTLED` is active (power cap, power brake, thermal or hardware slowdown), 0.0
    otherwise: idle, application or display clocks and sync boost lower the clocks for reasons
    that are not a limit of this GPU. ``throttle_power`` (power cap, power brake) and
    ``throttle_thermal`` (software or hardware thermal slowdown) say which; a hardware slowdown
    alone sets neither, since the hardware does not say which limit triggered it.
    """
    reasons = int(reasons)
    return {
        "clock_event_reasons": float(reasons),
        "throttled": float(bool(reasons & THROTTLED)),
        "throttle_power": float(bool(reasons & THROTTLE_POWER)),
        "throttle_thermal": float(bool(reasons & THROTTLE_THERMAL)),
    }


def throttle_labels(reasons: int) -> list[str]:
    """The throttling causes in a bitmask, as words ("power cap", "thermal", ...)."""
    return [label for bits, label in THROTTLE_LABELS if int(reasons) & bits]
