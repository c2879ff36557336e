"""Every per-run figure, defined once: its name, unit, how it is had, and where it is shown.

:data:`FIGURES` holds one :class:`Figure` per number (or text) about a run, in the order of the
report's runs table and ``scores.csv``. Each says:

- ``name``: the attribute of :class:`~scoring.runs.RunScore`, and the figure's key in
  ``RunScore.as_dict()`` (``scoring runs --json``, ``scores.json``);
- ``unit`` (``""`` for counts and scores; :data:`TEXT` for words);
- ``origin``: :data:`FIELD` (the run is made with it, from its events or its window's energy),
  :data:`STATS` (a figure of its window's :class:`~scoring.stats.RunStats`) or :data:`DERIVED`
  (computed from the others by ``compute``, with the formulas of :mod:`scoring.scores`);
- ``cli``: its column in ``scoring runs`` (:class:`View`: header, format, width, when shown);
- ``report``: its column in the report's page and in ``scores.csv``;
- ``point``: whether the ``score`` point carries it (True: under its own name; a string: under
  that name); a list is written as text, its items joined by ``sep``.

:func:`with_figures` gives ``RunScore`` a property for every figure that is not one of its
fields; ``RunStats.figures()``, the score point, the report's columns and the CLI's are read off
this table. Adding a figure is one entry here (and, for a new statistic, its ``RunStats``
property).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from exporters.schema import control_char
from scoring import steadiness
from scoring.scores import canziani, composite, netscore, uwh_per_inference, watt_hours

if TYPE_CHECKING:
    from scoring.runs import RunScore

FIELD, STATS, DERIVED = "field", "stats", "derived"
_SURROGATE = re.compile("[\ud800-\udfff]")
ALWAYS, SOME, NEVER = "always", "some", "never"
TEXT = "text"


@dataclass(frozen=True)
class View:
    """How one table shows a figure.

    ``show``: :data:`ALWAYS`; :data:`SOME`, only where some run has a value (no GPU columns
    without GPUs); or :data:`NEVER`, in the report's CSV only (which has every column, always).
    ``width``: characters, in the CLI's fixed-width table. ``finished_only``: blank for a run
    that did not finish."""

    header: str
    fmt: str = ""
    show: str = ALWAYS
    width: int = 0
    finished_only: bool = False


@dataclass(frozen=True)
class Figure:
    """One per-run figure (see the module's docstring)."""

    name: str
    unit: str
    origin: str
    compute: Callable[[RunScore], object] | None = None
    cli: View | None = None
    report: View | None = None
    point: bool | str = False
    sep: str = ", "

    @property
    def point_field(self) -> str | None:
        """The figure's field in the ``score`` point (None: not written)."""
        if self.point is True:
            return self.name
        return self.point or None

    def value(self, run: RunScore) -> object:
        """The figure of ``run``, as the run has it."""
        return getattr(run, self.name)

    def shown(self, run: RunScore) -> object:
        """The figure of ``run`` as tables and points show it: a list joined into text, text
        :func:`printable`."""
        value = self.value(run)
        if isinstance(value, list):
            value = self.sep.join(value)
        return printable(value) if isinstance(value, str) else value


def printable(text: str) -> str:
    """``text`` with each control character, and each lone surrogate (bytes that were not
    UTF-8), as its escape (``\\x1b``, ``\\n``, ``\\udcfe``): a run id or a reason never moves a
    terminal's cursor, breaks a table's line or stops a file being written as UTF-8."""
    if control_char(text) is None and not _SURROGATE.search(text):
        return text
    return "".join(repr(c)[1:-1] if control_char(c) or _SURROGATE.match(c) else c for c in text)


def usable_energy(joules: float | None) -> bool:
    """Whether an energy can be shared out per inference and scored: finite and above 0 (a
    counter that never moved, or went back, cannot)."""
    return joules is not None and math.isfinite(joules) and joules > 0


def _field(name: str, unit: str, **views) -> Figure:
    return Figure(name, unit, FIELD, None, **views)


def _stat(name: str, unit: str, **views) -> Figure:
    return Figure(name, unit, STATS, lambda r: None if r.stats is None else getattr(r.stats, name),
                  **views)  # fmt: skip


def _derived(name: str, unit: str, compute: Callable[[RunScore], object], **views) -> Figure:
    return Figure(name, unit, DERIVED, compute, **views)


def _duration_s(r: RunScore) -> float | None:
    return None if r.end_ns is None else (r.end_ns - r.start_ns) / 1e9


def _images_per_s(r: RunScore) -> float | None:
    seconds = r.duration_s
    return r.inferences / seconds if seconds and r.inferences else None


def _net_energy_j(r: RunScore) -> float | None:
    """The energy less the idle baseline's over the window."""
    if r.energy_j is None or r.idle_w is None or r.duration_s is None:
        return None
    return r.energy_j - r.idle_w * r.duration_s


def _uwh(r: RunScore, joules: float | None) -> float | None:
    """Energy per inference, where both are usable (:func:`usable_energy`, inferences)."""
    usable = usable_energy(joules) and r.inferences > 0
    return uwh_per_inference(joules, r.inferences) if usable else None


def _composite(r: RunScore, uwh: float | None) -> float | None:
    return None if uwh is None or r.top1 is None else composite(r.top1, uwh)


def _canziani(r: RunScore) -> float | None:
    return canziani(r.top1, r.params) if r.top1 and r.params else None


def _netscore(r: RunScore) -> float | None:
    return netscore(r.top1, r.params, r.macs) if r.top1 and r.params and r.macs else None


def _ci_share(r: RunScore) -> float | None:
    """Half the 95% interval of the run's group's energy per inference over its centre
    (:mod:`scoring.confidence`)."""
    low, high = r.uwh_ci_low, r.uwh_ci_high
    return None if low is None or high is None or not high + low else (high - low) / (high + low)


def _throttle_reasons(r: RunScore) -> list[str] | None:
    """Why the GPU throttled longest did (None where no GPU reports throttling)."""
    return None if r.stats is None or r.throttled_share is None else r.stats.throttle_reasons


FIGURES: tuple[Figure, ...] = (
    _field("run_id", TEXT, cli=View("run", ".30", width=30), report=View("run id")),
    _field("model", TEXT, cli=View("model", ".20", width=20), report=View("model")),
    _field("host", TEXT, cli=View("host", ".12", width=12), report=View("host")),
    _field("dataset", TEXT, report=View("dataset")),
    _field("status", TEXT, cli=View("status", width=8), report=View("status")),
    _field("inferences", "", cli=View("images", "d", width=7),
           report=View("images", "d", finished_only=True), point=True),
    _derived("duration_s", "s", _duration_s, report=View("seconds", ".2f"), point=True),
    _derived("images_per_s", "1/s", _images_per_s, cli=View("img/s", ".1f", width=8),
             report=View("images/s", ".1f", finished_only=True), point=True),
    _field("energy_j", "J", cli=View("joules", ".2f", width=10), report=View("joules", ".3f"),
           point=True),
    _field("estimated", "", report=View("estimated"), point=True),
    _derived("net_energy_j", "J", _net_energy_j, point=True),
    _derived("uwh_per_inference", "uWh", lambda r: _uwh(r, r.energy_j),
             cli=View("uWh/inf", ".4f", width=10), report=View("uWh/inference", ".4g"),
             point=True),
    _derived("net_uwh_per_inference", "uWh", lambda r: _uwh(r, r.net_energy_j)),
    _field("top1", "share", cli=View("top-1", ".3f", width=6), report=View("top-1", ".2%"),
           point="accuracy"),
    _field("accuracy_source", TEXT, cli=View("src", ".4", width=4),
           report=View("top-1 source"), point=True),
    _derived("composite", "", lambda r: _composite(r, r.uwh_per_inference),
             cli=View("composite", ".3g", width=9), report=View("composite", ".2f"), point=True),
    _field("rating", TEXT, cli=View("rate", width=4), report=View("energy rating"), point=True),
    _field("rating_ratio", "", report=View("vs references", ".2f", SOME), point=True),
    _field("passes", "", report=View("passes", "d", SOME), point=True),
    _derived("uwh_ci_share", "share", _ci_share, cli=View("±95%", ".1%", SOME, 6)),
    _field("uwh_ci_low", "uWh", report=View("uWh/inference 95% low", ".4g", SOME), point=True),
    _field("uwh_ci_high", "uWh", report=View("uWh/inference 95% high", ".4g", SOME),
           point=True),
    _field("composite_ci_low", "", report=View("composite 95% low", ".2f", SOME), point=True),
    _field("composite_ci_high", "", report=View("composite 95% high", ".2f", SOME),
           point=True),
    _derived("net_composite", "", lambda r: _composite(r, r.net_uwh_per_inference),
             report=View("net composite", ".2f"), point=True),
    _derived("canziani", "", _canziani, report=View("Canziani", ".2f"), point=True),
    _derived("netscore", "", _netscore, report=View("NetScore", ".2f"), point=True),
    _field("coverage", "share", report=View("coverage", ".1%"), point=True),
    _field("idle_w", "W", point=True),
    _derived("energy_wh", "Wh", lambda r: None if r.energy_j is None else watt_hours(r.energy_j),
             report=View("Wh", ".4g", NEVER), point=True),
    _stat("avg_power_w", "W", cli=View("avg W", ".1f", SOME, 7),
          report=View("avg W", ".1f", SOME), point=True),
    _stat("peak_power_w", "W", cli=View("peak W", ".1f", SOME, 7),
          report=View("peak W", ".1f", SOME), point=True),
    _stat("gpu_power_w", "W", report=View("GPU W", ".1f", NEVER), point=True),
    _stat("gpu_util_pct", "%", cli=View("GPU%", ".0f", SOME, 5),
          report=View("GPU util %", ".1f", SOME), point=True),
    _stat("gpu_mem_util_pct", "%", report=View("GPU mem util %", ".1f", NEVER), point=True),
    _stat("gpu_mem_used_pct", "%", cli=View("GPUmem%", ".0f", SOME, 7),
          report=View("GPU mem used %", ".1f", SOME), point=True),
    _stat("gpu_mem_used_bytes", "B", report=View("GPU mem used bytes", ".4g", NEVER),
          point=True),
    _stat("cpu_util_pct", "%", cli=View("CPU%", ".0f", SOME, 5),
          report=View("CPU util %", ".1f", SOME), point=True),
    _stat("throttled_share", "share", cli=View("thrott", ".0%", SOME, 6),
          report=View("throttled", ".0%", SOME), point=True),
    Figure("throttle_reasons", TEXT, STATS, _throttle_reasons,
           report=View("throttle reasons", show=NEVER), point=True),
    _stat("wall_energy_j", "J", report=View("wall joules", ".3f", NEVER), point=True),
    _stat("wall_coverage", "share", report=View("wall coverage", ".1%", NEVER), point=True),
    _stat("wall_power_w", "W", report=View("wall W", ".1f", SOME), point=True),
    _stat("wall_peak_w", "W", point=True),
    _derived("wall_uwh_per_inference", "uWh", lambda r: _uwh(r, r.wall_energy_j),
             cli=View("wall uWh", ".4f", SOME, 10),
             report=View("wall uWh/inference", ".4g", SOME), point=True),
    _derived("wall_composite", "", lambda r: _composite(r, r.wall_uwh_per_inference),
             report=View("wall composite", ".2f", SOME), point=True),
    # steadiness (scoring.steadiness): per-batch timing, and the figure of each of its flags
    _field("latency_p50_s", "s", report=View("batch p50 s", ".4g", NEVER), point=True),
    _field("latency_p90_s", "s", report=View("batch p90 s", ".4g", NEVER), point=True),
    _field("latency_p99_s", "s", report=View("batch p99 s", ".4g", NEVER), point=True),
    _field("stall_s", "s", report=View("longest gap s", ".3g", NEVER), point=True),
    _derived("throughput_cv", "share", steadiness.throughput_cv_of,
             report=View("throughput CV", ".1%", NEVER), point=True),
    _derived("sensor_updates", "", steadiness.sensor_updates,
             report=View("sensor updates", ".0f", NEVER), point=True),
    _field("power_drift_pct", "%", report=View("power drift %", "+.1f", NEVER), point=True),
    _field("other_cpu_s", "s", point=True),
    _derived("other_cpu_cores", "", steadiness.other_cpu_cores,
             report=View("other CPU cores", ".2f", NEVER), point=True),
    _field("idle_w_after", "W", point=True),
    _derived("idle_moved_pct", "%", steadiness.idle_moved_pct,
             report=View("idle moved %", "+.1f", NEVER), point=True),
    _field("cooldown_s", "s", report=View("cooldown s", ".1f", NEVER), point=True),
    _field("cooldown_reached", "", point=True),
    _field("machine_id", TEXT, report=View("machine id", show=NEVER), point=True),
    _field("flags", TEXT, point=True, sep="; "),
)  # fmt: skip


def figures_from(origin: str) -> tuple[Figure, ...]:
    """The figures of one origin (:data:`FIELD`, :data:`STATS` or :data:`DERIVED`)."""
    return tuple(f for f in FIGURES if f.origin == origin)


T = TypeVar("T")


def with_figures(cls: type[T]) -> type[T]:
    """Class decorator for ``RunScore``: a read-only property for every figure that is not a
    field (checking that each :data:`FIELD` figure is one)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    for figure in FIGURES:
        if figure.origin == FIELD:
            if figure.name not in fields:
                raise TypeError(f"figure {figure.name!r} is no field of {cls.__name__}")
        else:
            setattr(cls, figure.name, property(figure.compute))
    return cls
