"""Energy of a time window, per domain, from stored ``energy`` samples.

Counter domains (``joules_total`` stored) give ``C(t1) - C(t0)`` with ``C`` linearly interpolated
between the samples around each edge: exact for hardware counters whatever the sampling rate. A
drop in ``joules_total`` means the agent restarted; the energy between the two agents is unknown
and that stretch is reported as missing coverage. Domains with power only (``watts``) are
integrated with the trapezoid rule, never across a gap longer than ``GAP_FACTOR`` sampling
intervals. ``coverage`` is the fraction of the window whose energy is known.

Which domains make the total (``counted``): packages, DRAM and GPUs by default. Nested domains
(core, uncore inside a package) and system-level ones (psys) are never added; a GPU seen by both
NVML and dcgm-exporter counts once (NVML first); the CPU model estimate counts only on a host with
no RAPL package, and then the total says it is estimated.
"""

from __future__ import annotations

import fnmatch
import itertools
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from exporters.schema import ENERGY
from exporters.stores.base import Columns, Store
from exporters.times import format_time

GAP_FACTOR = 3.0
MARGIN_NS = 60_000_000_000
MISMATCH = 0.05
DEFAULT_COUNTED = ("package-*", "dram-*", "gpu*", "cpu-estimate")
MEASURED_POWER_SOURCES = ("nvml", "dcgm")


@dataclass(frozen=True)
class DomainEnergy:
    """Energy of one domain of one host in the window."""

    host: str
    source: str
    domain: str
    joules: float
    method: str
    estimated: bool
    coverage: float
    counted: bool
    samples: int
    power_joules: float | None = None
    mismatch: bool = False


@dataclass(frozen=True)
class WindowEnergy:
    """Every domain's energy in ``[start_ns, end_ns]`` and the total of the counted ones."""

    start_ns: int
    end_ns: int
    domains: list[DomainEnergy]

    @property
    def counted(self) -> list[DomainEnergy]:
        return [d for d in self.domains if d.counted]

    @property
    def total_joules(self) -> float:
        return sum(d.joules for d in self.counted)

    @property
    def estimated(self) -> bool:
        return any(d.estimated for d in self.counted)

    @property
    def coverage(self) -> float:
        return min((d.coverage for d in self.counted), default=0.0)

    def to_dict(self) -> dict:
        return {
            "start": format_time(self.start_ns),
            "end": format_time(self.end_ns),
            "duration_s": (self.end_ns - self.start_ns) / 1e9,
            "domains": [asdict(d) for d in self.domains],
            "total_joules": self.total_joules,
            "estimated": self.estimated,
            "coverage": self.coverage,
        }


def _interp(times: Sequence[int], values: Sequence[float], t: int) -> float:
    i = bisect_left(times, t)
    if i < len(times) and times[i] == t:
        return values[i]
    t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def counter_energy(
    times: Sequence[int], totals: Sequence[float], start_ns: int, end_ns: int
) -> tuple[float, int]:
    """(joules, covered ns) from a monotonic counter; a drop starts a new segment."""
    joules, covered, first = 0.0, 0, 0
    for i in range(1, len(times) + 1):
        if i < len(times) and totals[i] >= totals[i - 1]:
            continue
        seg_t, seg_c = times[first:i], totals[first:i]
        lo, hi = max(start_ns, seg_t[0]), min(end_ns, seg_t[-1])
        if hi > lo:
            joules += _interp(seg_t, seg_c, hi) - _interp(seg_t, seg_c, lo)
            covered += hi - lo
        first = i
    return joules, covered


def power_energy(
    times: Sequence[int], watts: Sequence[float], start_ns: int, end_ns: int, gap_ns: float
) -> tuple[float, int]:
    """(joules, covered ns) by the trapezoid rule over pairs no further apart than ``gap_ns``."""
    joules, covered = 0.0, 0
    for i in range(1, len(times)):
        ta, tb = times[i - 1], times[i]
        lo, hi = max(start_ns, ta), min(end_ns, tb)
        if hi <= lo or tb - ta > gap_ns:
            continue
        wa, wb = watts[i - 1], watts[i]
        w_lo = wa + (wb - wa) * (lo - ta) / (tb - ta)
        w_hi = wa + (wb - wa) * (hi - ta) / (tb - ta)
        joules += (w_lo + w_hi) / 2 * (hi - lo) / 1e9
        covered += hi - lo
    return joules, covered


def gap_threshold_ns(times: Sequence[int]) -> float:
    """Longest spacing still counted as covered: a few of the series' usual intervals."""
    if len(times) < 2:
        return 0.0
    return GAP_FACTOR * statistics.median(b - a for a, b in itertools.pairwise(times))


def _series_energy(series: Columns, start: int, end: int) -> dict:
    tags = series.tags
    counter_t, counter_j = series.column("joules_total")
    cross = None
    if counter_t:
        method = "counter"
        joules, covered = counter_energy(counter_t, counter_j, start, end)
        if tags.get("source") in MEASURED_POWER_SOURCES:  # watts measured apart: cross-check
            power_t, power_w = series.column("watts")
            if power_t:
                gap = gap_threshold_ns(power_t)
                cross = power_energy(power_t, power_w, start, end, gap)[0]
    else:
        method = "power"
        power_t, power_w = series.column("watts")
        gap = gap_threshold_ns(power_t)
        joules, covered = power_energy(power_t, power_w, start, end, gap)
    return dict(
        host=tags.get("host", ""),
        source=tags.get("source", ""),
        domain=tags.get("domain", ""),
        joules=joules,
        method=method,
        estimated=tags.get("estimated") == "true",
        coverage=min(1.0, covered / (end - start)),
        samples=bisect_right(series.times, end) - bisect_left(series.times, start),
        power_joules=cross,
        mismatch=cross is not None and joules > 0 and abs(cross - joules) > MISMATCH * joules,
    )


def _counted(domains: list[dict], patterns: Sequence[str]) -> list[bool]:
    hosts_with_rapl = {d["host"] for d in domains if d["source"] == "rapl"}
    nvml_gpus = {(d["host"], d["domain"]) for d in domains if d["source"] == "nvml"}
    flags = []
    for d in domains:
        ok = any(fnmatch.fnmatchcase(d["domain"], p) for p in patterns)
        if d["source"] == "model" and d["host"] in hosts_with_rapl:
            ok = False
        if d["source"] == "dcgm" and (d["host"], d["domain"]) in nvml_gpus:
            ok = False
        flags.append(ok)
    return flags


def window_energy(
    store: Store,
    start_ns: int,
    end_ns: int,
    host: str | None = None,
    counted: Sequence[str] = DEFAULT_COUNTED,
) -> WindowEnergy:
    """Energy of every ``energy`` series in ``[start_ns, end_ns]`` (optionally one host)."""
    if end_ns <= start_ns:
        raise ValueError("the window must end after it starts")
    series = store.read_columns(
        ENERGY,
        start_ns - MARGIN_NS,
        end_ns + MARGIN_NS,
        tags={"host": host} if host else None,
        fields=("joules_total", "watts"),
    )
    found = [_series_energy(s, start_ns, end_ns) for s in series]
    found.sort(key=lambda d: (d["host"], d["source"], d["domain"]))
    flags = _counted(found, counted)
    domains = [DomainEnergy(counted=flag, **d) for d, flag in zip(found, flags)]
    return WindowEnergy(start_ns, end_ns, domains)
