"""Energy of a time window, per domain, from stored ``energy`` samples.

Counter domains (``joules_total`` stored) give ``C(t1) - C(t0)`` with ``C`` linearly interpolated
between the samples around each edge: exact for hardware counters whatever the sampling rate. A
drop in ``joules_total`` means the agent restarted; the energy between the two agents is unknown
and that stretch is reported as missing coverage. Domains with power only (``watts``) are
integrated with the trapezoid rule, never across a gap longer than ``GAP_FACTOR`` sampling
intervals. ``coverage`` is the fraction of the window whose energy is known.

Where the window's edges were read (:mod:`exporters.edges`: the counters read at the instant
the window opened and closed, stored as samples of their series), each series has a sample at
exactly each edge and nothing is interpolated: its ``edges`` is ``"read"``, else
``"interpolated"``; the window's ``edges`` is ``"read"`` when every counted domain's is.

Which domains make the total is each domain's ``role`` (:mod:`exporters.domains`): packages,
DRAM and GPUs by default, a GPU seen by both NVML and dcgm-exporter once, the CPU model's estimate
only on a host with no RAPL (and then the total says it is estimated).

The series are read once (:func:`read_energy`, a margin either side of the window so that its
edges can be interpolated) into :class:`EnergySamples`: the window's energy and the run's
statistics are computed from the same columns; a power chart reads its run's through the same
function, with the chart's margin.
"""

from __future__ import annotations

import itertools
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from exporters.domains import DEFAULT_COUNTED, IN_TOTAL, Domain, domain_of, domain_roles
from exporters.schema import ENERGY
from exporters.stores.base import Columns, Store
from exporters.times import format_time

GAP_FACTOR = 3.0
MARGIN_NS = 60_000_000_000
MISMATCH = 0.05
MEASURED_POWER_SOURCES = ("nvml", "dcgm")
ENERGY_FIELDS = ("joules_total", "watts")
READ, INTERPOLATED = "read", "interpolated"  # how a window's edges were known


@dataclass(frozen=True)
class DomainEnergy:
    """Energy of one domain of one host in the window; ``counted`` follows from its ``role``."""

    host: str
    source: str
    domain: str
    joules: float
    method: str
    estimated: bool
    coverage: float
    role: str
    counted: bool = field(init=False)
    samples: int
    power_joules: float | None = None
    mismatch: bool = False
    edges: str = INTERPOLATED  # READ where the series was sampled at both edges

    def __post_init__(self) -> None:
        object.__setattr__(self, "counted", self.role in IN_TOTAL)


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

    @property
    def edges(self) -> str:
        """READ when every counted domain was sampled at both edges, else INTERPOLATED."""
        counted = self.counted
        return READ if counted and all(d.edges == READ for d in counted) else INTERPOLATED

    def to_dict(self) -> dict:
        return {
            "start": format_time(self.start_ns),
            "end": format_time(self.end_ns),
            "duration_s": (self.end_ns - self.start_ns) / 1e9,
            "domains": [asdict(d) for d in self.domains],
            "total_joules": self.total_joules,
            "estimated": self.estimated,
            "coverage": self.coverage,
            "edges": self.edges,
        }


@dataclass(frozen=True)
class EnergySamples:
    """The ``energy`` series read around the window ``[start_ns, end_ns]``, as columns."""

    start_ns: int
    end_ns: int
    series: list[Columns]

    def watts(self) -> dict[Domain, tuple[list[int], list[float]]]:
        """``(host, source, domain)`` -> (times, watts) of each series' power samples."""
        out = {}
        for s in self.series:
            times, values = s.column("watts")
            out[domain_of(s.tags)] = (times, [float(v) for v in values])
        return out


def read_energy(
    store: Store, start_ns: int, end_ns: int, host: str | None = None, margin_ns: int = MARGIN_NS
) -> EnergySamples:
    """Every ``energy`` series (optionally of one host) from ``margin_ns`` before the window to
    ``margin_ns`` after it: one read for the window's energy and everything drawn from it."""
    if end_ns <= start_ns:
        raise ValueError("the window must end after it starts")
    series = store.read_columns(
        ENERGY,
        start_ns - margin_ns,
        end_ns + margin_ns,
        tags={"host": host} if host else None,
        fields=ENERGY_FIELDS,
    )
    return EnergySamples(start_ns, end_ns, series)


def in_window(times: Sequence[int], start_ns: int, end_ns: int) -> slice:
    """The slice of the sorted ``times`` within ``[start_ns, end_ns]``."""
    return slice(bisect_left(times, start_ns), bisect_right(times, end_ns))


def _lerp(t0: int, v0: float, t1: int, v1: float, t: int) -> float:
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def interpolate(times: Sequence[int], values: Sequence[float], t: int) -> float | None:
    """``values`` (at the sorted ``times``) linearly interpolated at ``t``; None outside them."""
    if not times or t < times[0] or t > times[-1]:
        return None
    i = bisect_left(times, t)
    if times[i] == t:
        return values[i]
    return _lerp(times[i - 1], values[i - 1], times[i], values[i], t)


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
        if hi > lo:  # both edges lie within the segment: interpolated, never None
            joules += interpolate(seg_t, seg_c, hi) - interpolate(seg_t, seg_c, lo)
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
        w_lo = _lerp(ta, watts[i - 1], tb, watts[i], lo)
        w_hi = _lerp(ta, watts[i - 1], tb, watts[i], hi)
        joules += (w_lo + w_hi) / 2 * (hi - lo) / 1e9
        covered += hi - lo
    return joules, covered


def covered_spans(
    times: Sequence[int], start_ns: int, end_ns: int, gap_ns: float
) -> list[tuple[int, int]]:
    """The stretches of the window that samples no further apart than ``gap_ns`` cover, each
    run of adjacent pairs merged into one ``(start, end)``, in time order."""
    spans: list[tuple[int, int]] = []
    for i in range(1, len(times)):
        ta, tb = times[i - 1], times[i]
        lo, hi = max(start_ns, ta), min(end_ns, tb)
        if hi <= lo or tb - ta > gap_ns:
            continue
        if spans and spans[-1][1] == lo:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


def cross_check(
    counter: tuple[Sequence[int], Sequence[float]],
    power: tuple[Sequence[int], Sequence[float]],
    start_ns: int,
    end_ns: int,
) -> tuple[float, bool]:
    """(joules by power over the window, whether counter and power disagree by more than
    :data:`MISMATCH`). The two are compared over the same stretches, those the power samples
    cover: a stretch the sampler missed (a stall on a loaded machine) is left out of both
    sides, never counted as a disagreement."""
    power_t, power_w = power
    gap = gap_threshold_ns(power_t)
    by_power = by_counter = 0.0
    for lo, hi in covered_spans(power_t, start_ns, end_ns, gap):
        by_power += power_energy(power_t, power_w, lo, hi, gap)[0]
        by_counter += counter_energy(*counter, lo, hi)[0]
    disagree = by_counter > 0 and abs(by_power - by_counter) > MISMATCH * by_counter
    return power_energy(power_t, power_w, start_ns, end_ns, gap)[0], disagree


def gap_threshold_ns(times: Sequence[int]) -> float:
    """Longest spacing still counted as covered: a few of the series' usual intervals."""
    if len(times) < 2:
        return 0.0
    return GAP_FACTOR * statistics.median(b - a for a, b in itertools.pairwise(times))


def edges_read(times: Sequence[int], start_ns: int, end_ns: int) -> bool:
    """Whether the sorted ``times`` hold both ``start_ns`` and ``end_ns`` exactly."""
    at = [bisect_left(times, t) for t in (start_ns, end_ns)]
    return all(i < len(times) and times[i] == t for i, t in zip(at, (start_ns, end_ns)))


def _series_energy(series: Columns, start: int, end: int) -> dict:
    tags = series.tags
    counter_t, counter_j = series.column("joules_total")
    cross, mismatch = None, False
    if counter_t:
        method, times = "counter", counter_t
        joules, covered = counter_energy(counter_t, counter_j, start, end)
        if tags.get("source") in MEASURED_POWER_SOURCES:  # watts measured apart: cross-check
            power_t, power_w = series.column("watts")
            if power_t:
                cross, mismatch = cross_check(
                    (counter_t, counter_j), (power_t, power_w), start, end
                )
    else:
        method = "power"
        power_t, power_w = series.column("watts")
        gap = gap_threshold_ns(power_t)
        joules, covered = power_energy(power_t, power_w, start, end, gap)
        times = power_t
    host, source, domain = domain_of(tags)
    window = in_window(series.times, start, end)
    return dict(
        host=host,
        source=source,
        domain=domain,
        joules=joules,
        method=method,
        estimated=tags.get("estimated") == "true",
        coverage=min(1.0, covered / (end - start)),
        samples=window.stop - window.start,
        power_joules=cross,
        mismatch=mismatch,
        edges=READ if edges_read(times, start, end) else INTERPOLATED,
    )


def with_roles(
    start_ns: int,
    end_ns: int,
    found: Sequence[dict],
    counted: Sequence[str] = DEFAULT_COUNTED,
    known: Sequence[Domain] = (),
) -> WindowEnergy:
    """The window of the domains ``found`` (each :class:`DomainEnergy`'s fields but the role),
    their roles judged among them and the other domains ``known`` to be there
    (:func:`exporters.domains.domain_roles`: a duplicate needs its twin)."""
    found = sorted(found, key=lambda d: (d["host"], d["source"], d["domain"]))
    keys = [(d["host"], d["source"], d["domain"]) for d in found]
    roles = domain_roles([*keys, *known], counted)
    domains = [DomainEnergy(role=role, **d) for d, role in zip(found, roles)]
    return WindowEnergy(start_ns, end_ns, domains)


def energy_of(samples: EnergySamples, counted: Sequence[str] = DEFAULT_COUNTED) -> WindowEnergy:
    """Every series' energy in the samples' window; ``counted`` (fnmatch patterns) name the
    domains the total adds (:func:`exporters.domains.domain_roles` decides each one's role)."""
    start, end = samples.start_ns, samples.end_ns
    return with_roles(start, end, [_series_energy(s, start, end) for s in samples.series], counted)


def window_energy(
    store: Store,
    start_ns: int,
    end_ns: int,
    host: str | None = None,
    counted: Sequence[str] = DEFAULT_COUNTED,
) -> WindowEnergy:
    """Energy of every ``energy`` series in ``[start_ns, end_ns]`` (optionally one host)."""
    return energy_of(read_energy(store, start_ns, end_ns, host), counted)
