"""Power ceilings of energy counters: the most a counter can physically rise per second.

Every energy counter a source returns carries its ceiling, ``Counter.max_rate`` in raw units
per second (:func:`max_rate`), by which :mod:`exporters.counters` tells a wrap from a reset and
a real step from a bad reading. A source takes the ceiling from a power rating the hardware
states (a RAPL zone's constraints, a GPU's power-limit range) times :data:`HEADROOM`; where the
hardware states none, from its ``max_watts`` setting, a documented default that the
configuration can change (:func:`check_max_watts`).

A ceiling too high only lets a bad reading that stays under it pass for energy; one too low
turns real energy into "glitches" while the power stays above it, and can end a segment (lost
coverage). So every default errs high, and the headroom over a stated rating is generous.
"""

from __future__ import annotations

from typing import Any

from exporters.config_checks import is_number, require
from exporters.sources.base import Settings

# Over the highest stated rating. A RAPL package that states only its TDP (PL1) draws up to its
# short-term limit (PL2, 1.25 to 2x PL1) for seconds, and to its peak limit (PL4) for
# milliseconds; a GPU's board power overshoots its limit in transients of milliseconds; a
# counter that updates in steps can show a little more than one interval's energy in one read.
# Twice the highest rating covers these, and a bad reading still stands out: a counter read as 0
# or as garbage jumps by far more than twice anything the part can draw.
HEADROOM = 2.0

WATTS = "give a number of watts above 0"


def max_rate(watts: float, scale: float) -> float:
    """``watts`` as the ceiling of a counter whose raw unit is ``scale`` joules (µJ: ``1e-6``)."""
    return watts / scale


def is_watts(value: Any) -> bool:
    """A finite number (not a bool) above zero."""
    return is_number(value) and value > 0


def check_max_watts(key: str, value: Any, fix: str = WATTS) -> None:
    """A ``max_watts`` setting: a finite number of watts above 0 (:class:`ConfigError`)."""
    require(is_watts(value), key, value, fix)


def validate_max_watts(settings: Settings, where: str) -> None:
    """A source spec's ``validate`` for a source whose only own setting is ``max_watts``."""
    check_max_watts(f"{where}.max_watts", settings["max_watts"])
