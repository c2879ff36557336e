"""Whether a run was steady enough to stand behind its figures: each flag, its threshold, its
figure.

A pass records its per-batch timing, the CPU time of other processes and its cool-down
(:mod:`benchmark.steadiness`, in its ``start`` and ``end`` events); the power's trend comes from
the window's stored samples. A run is flagged, each flag naming its figure and threshold, when:

- **unsteady**: a stall, no batch finished for ``stall_s`` of at least :data:`STALL_MIN_S` and
  :data:`STALL_FACTOR` times the median batch time (``latency_p50_s``); or the throughput,
  images/s per bin of about a second (``throughput_series``), varied with a coefficient of
  variation (``throughput_cv``: standard deviation over mean) above :data:`THROUGHPUT_CV_LIMIT`
  (over :data:`MIN_CV_BINS` bins or more);
- **too short for its sensors**: fewer than :data:`MIN_SENSOR_UPDATES` updates
  (``sensor_updates``: the window's length over the update period) of the slowest counted
  sensor (:func:`exporters.sources.update_s`: RAPL 1 ms, NVML 100 ms, a BMC 1 s): each edge of
  the window is known to one update, so the energy's error is about 2 in ``sensor_updates``;
- **power drift**: the least-squares trend of the counted power over the window (through the
  average power of each of :data:`DRIFT_PARTS` equal parts of it), times the window's length,
  as a share of the mean power (``power_drift_pct``), beyond :data:`DRIFT_LIMIT_PCT` either
  way (heating, throttling, something starting or stopping);
- **busy machine**: other processes used more than :data:`BUSY_LIMIT_CORES` CPU cores on
  average during the window (``other_cpu_cores``: their CPU-seconds from ``/proc/stat`` over the
  window's seconds), competing with the model and drawing counted power;
- **idle moved**: the idle baseline measured after the passes differs from the one before by
  more than :data:`IDLE_MOVED_LIMIT_PCT` (``idle_moved_pct``): the net energy is unsure;
- **cool-down timed out** (``cooldown_reached`` 0): power was not back near the idle baseline
  within ``--cooldown`` seconds (``cooldown_s``) before the pass.

The figures are :mod:`scoring.figures`' (the CLI's JSON, the report's CSV, the score points);
:func:`flags` is what :func:`scoring.runs.score_run` adds to a run's flags.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from exporters.sources import update_s
from exporters.window import EnergySamples, energy_of
from scoring.events import RunEnd, RunStart

if TYPE_CHECKING:
    from scoring.runs import RunScore

STALL_FACTOR = 3.0  # a gap without a finished batch this many median batch times long ...
STALL_MIN_S = 1.0  # ... and at least this long is a stall
THROUGHPUT_CV_LIMIT = 0.25  # images/s per second varying more than this (std over mean)
MIN_CV_BINS = 3  # a series shorter than this has no coefficient of variation
MIN_SENSOR_UPDATES = 100  # updates of the slowest counted sensor a window needs
DRIFT_LIMIT_PCT = 10.0  # the power's trend over the window, % of its mean, either way
DRIFT_PARTS = 4  # the window's parts whose average power the trend is fitted through
MIN_PART_SAMPLES = 3  # stored samples of each counted domain a part needs for a trend
BUSY_LIMIT_CORES = 0.5  # other processes' average CPU use in the window
IDLE_MOVED_LIMIT_PCT = 10.0  # the idle baseline after the passes against before, either way


def take_start(run: RunScore, start: RunStart) -> None:
    """What the ``start`` event says of the cool-down before the pass."""
    run.cooldown_s = start.cooldown_s
    run.cooldown_reached = None if start.cooldown_reached is None else bool(start.cooldown_reached)


def take_end(run: RunScore, end: RunEnd) -> None:
    """What the ``end`` event says of the pass's batches, other processes and the idle after."""
    run.latency_p50_s, run.latency_p90_s = end.latency_p50_s, end.latency_p90_s
    run.latency_p99_s, run.stall_s = end.latency_p99_s, end.stall_s
    run.throughput_series = parse_series(end.throughput_series)
    run.other_cpu_s, run.idle_w_after = end.other_cpu_s, end.idle_watts_after


def parse_series(text: str | None) -> list[float] | None:
    """A ``throughput_series`` as numbers; None for none, or for one that is not a JSON list of
    finite numbers of 0 or more (written by something else)."""
    if not text:
        return None
    try:
        values = json.loads(text)
    except ValueError:
        return None
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in values
    ):
        return None
    return [float(v) for v in values]


def throughput_cv(series: list[float] | None) -> float | None:
    """Standard deviation over mean of images/s per bin (None: under :data:`MIN_CV_BINS` bins,
    or no images)."""
    if not series or len(series) < MIN_CV_BINS:
        return None
    mean = statistics.fmean(series)
    return statistics.pstdev(series) / mean if mean > 0 else None


def throughput_cv_of(run: RunScore) -> float | None:
    return throughput_cv(run.throughput_series)


def stall_factor(run: RunScore) -> float | None:
    """The longest gap without a finished batch over the median batch time."""
    if run.stall_s is None or not run.latency_p50_s:
        return None
    return run.stall_s / run.latency_p50_s


def sensor_period(run: RunScore, source: str) -> float | None:
    """How often ``source``'s sensor updates: as the run's manifest recorded it (a dcgm or custom
    source's configured period too), else as this tubai's source registry says."""
    recorded = (run.manifest or {}).get("sources")
    for entry in recorded if isinstance(recorded, list) else []:
        if isinstance(entry, dict) and entry.get("name") == source:
            period = entry.get("update_s")
            if isinstance(period, int | float) and not isinstance(period, bool) and period > 0:
                return float(period)
    return update_s(source)


def slowest_sensor(run: RunScore) -> tuple[str, float] | None:
    """The counted domains' source whose sensor updates slowest, and its period (None where no
    counted source's period is known)."""
    periods = [(sensor_period(run, d.source), d.source) for d in run.domains if d.counted]
    known = [(s, name) for s, name in periods if s]
    if not known:
        return None
    seconds, name = max(known)
    return name, seconds


def sensor_updates(run: RunScore) -> float | None:
    """Updates of the slowest counted sensor in the window (its length over the period)."""
    slowest, seconds = slowest_sensor(run), run.duration_s
    return None if slowest is None or seconds is None else seconds / slowest[1]


def power_drift_pct(samples: EnergySamples, counted: Sequence[str]) -> float | None:
    """The trend of the counted power over the window as % of its mean: the window cut into
    :data:`DRIFT_PARTS` equal parts, each part's average power its counted energy
    (:func:`exporters.window.energy_of`: counters where there are, so the noise of single
    power samples averages out), the least-squares slope through them times the window's
    seconds over their mean. None where a part's energy is not wholly known or holds fewer than
    :data:`MIN_PART_SAMPLES` stored samples of a counted domain, or the power is not above 0."""
    start, end = samples.start_ns, samples.end_ns
    edges = np.linspace(start, end, DRIFT_PARTS + 1).round().astype(np.int64)
    watts = []
    for a, b in itertools.pairwise(edges.tolist()):
        part = energy_of(dataclasses.replace(samples, start_ns=a, end_ns=b), counted)
        if not part.counted or part.coverage < 0.999:
            return None
        if min(d.samples for d in part.counted) < MIN_PART_SAMPLES:
            return None  # too short a window for a trend between its samples
        watts.append(part.total_joules / ((b - a) / 1e9))
    mean_w = float(np.mean(watts))
    if mean_w <= 0:
        return None
    middles_s = (edges[:-1] + edges[1:] - 2 * start) / 2e9
    slope_w_per_s = float(np.polyfit(middles_s, watts, 1)[0])
    return 100.0 * slope_w_per_s * ((end - start) / 1e9) / mean_w


def other_cpu_cores(run: RunScore) -> float | None:
    """CPU cores other processes kept busy on average during the window."""
    seconds = run.duration_s
    return None if run.other_cpu_s is None or not seconds else run.other_cpu_s / seconds


def idle_moved_pct(run: RunScore) -> float | None:
    """The idle baseline after the passes against the one before, in % of the one before."""
    if run.idle_w is None or run.idle_w_after is None or run.idle_w <= 0:
        return None
    return 100.0 * (run.idle_w_after - run.idle_w) / run.idle_w


def flags(run: RunScore) -> list[str]:
    """The steadiness flags of a finished run (the module's docstring), each with its figure."""
    out = []
    factor = stall_factor(run)
    if factor is not None and run.stall_s >= STALL_MIN_S and factor >= STALL_FACTOR:
        out.append(
            f"unsteady: no batch finished for {run.stall_s:.2f} s, {factor:.0f}x the "
            f"median batch time (a stall: {STALL_FACTOR:g}x and {STALL_MIN_S:g} s)"
        )
    cv = throughput_cv(run.throughput_series)
    if cv is not None and cv > THROUGHPUT_CV_LIMIT:
        out.append(
            f"unsteady: throughput per second varied {cv:.0%} (coefficient of variation; "
            f"over {THROUGHPUT_CV_LIMIT:.0%} is unsteady)"
        )
    updates, slowest = sensor_updates(run), slowest_sensor(run)
    if updates is not None and slowest is not None and updates < MIN_SENSOR_UPDATES:
        out.append(
            f"too short for its sensors: {updates:.0f} updates of {slowest[0]} (every "
            f"{slowest[1]:g} s) in the window; {MIN_SENSOR_UPDATES} or more are needed"
        )
    drift = run.power_drift_pct
    if drift is not None and abs(drift) > DRIFT_LIMIT_PCT:
        out.append(
            f"power drift: {drift:+.1f}% over the window (least-squares trend; over "
            f"{DRIFT_LIMIT_PCT:g}% either way is flagged)"
        )
    cores = other_cpu_cores(run)
    if cores is not None and cores > BUSY_LIMIT_CORES:
        out.append(
            f"busy machine: other processes used {cores:.2f} CPU cores in the window "
            f"(over {BUSY_LIMIT_CORES:g} is flagged)"
        )
    moved = idle_moved_pct(run)
    if moved is not None and abs(moved) > IDLE_MOVED_LIMIT_PCT:
        out.append(
            f"idle moved: {run.idle_w:.2f} W before the passes, {run.idle_w_after:.2f} W "
            f"after ({moved:+.0f}%; over {IDLE_MOVED_LIMIT_PCT:g}% is flagged)"
        )
    if run.cooldown_reached is False:
        out.append(
            f"cool-down timed out: power was not back near idle after {run.cooldown_s or 0:.1f} s"
        )
    return out
