"""Per-run statistics beside the energy: the reference paper's Table I, throttling, wall power.

For a run's host and window ``[start, end]`` (samples at the edges included):

- **power per domain**: ``avg_w`` is the domain's joules over the seconds its samples cover (for
  counter domains that is exact, whatever the sampling; with full coverage it is
  ``joules / duration``); ``peak_w`` is the largest stored ``watts`` sample in the window.
- **total power**: ``avg_power_w`` is the sum of the counted domains' averages (with full coverage,
  the run's energy over its duration); ``peak_power_w`` the peak of their sum, each domain's
  ``watts`` interpolated at every sample time of the others. ``gpu_power_w``: the counted GPU
  domains' average (role ``gpu``: the paper's "avg GPU power").
- **GPU use** (``gpu`` measurement): the mean of ``util_pct``, ``mem_util_pct`` (the memory
  controller's busy time), ``mem_used_bytes`` and ``mem_used_pct`` (used over total memory: the
  paper's "GPU memory usage") over each GPU's samples, then over the GPUs.
- **CPU use**: the mean ``usage_pct`` of the ``cpu="total"`` series.
- **throttling**: per GPU, the share of its samples with ``throttled`` = 1 (power cap, power brake,
  thermal or hardware slowdown: :data:`exporters.schema.THROTTLED`) and the reasons seen in
  them; ``throttled_share`` is the largest share over the GPUs.
- **wall**: domains of role ``wall`` (a system-level reading, e.g. IPMI's, not counted: the wall
  contains every component) give ``wall_energy_j``, its coverage, average and peak watts.

Domain roles come from the run's :class:`~exporters.window.WindowEnergy`, the watts from its
:class:`~exporters.window.EnergySamples` (read once for both).

Every figure is None where the store holds nothing to compute it from.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from exporters import domains
from exporters.schema import CPU, GPU, THROTTLED, throttle_labels
from exporters.stores.base import Columns, Store
from exporters.window import EnergySamples, WindowEnergy, in_window, interpolate
from scoring.figures import STATS, figures_from

GPU_FIELDS = ("util_pct", "mem_util_pct", "mem_used_bytes", "mem_total_bytes", "throttled",
              "clock_event_reasons")  # fmt: skip


@dataclass(frozen=True)
class DomainPower:
    """Average and peak power of one domain in the window."""

    source: str
    domain: str
    role: str  # the domain's role (exporters.domains)
    counted: bool
    avg_w: float | None
    peak_w: float | None
    samples: int  # watts samples in the window


@dataclass(frozen=True)
class GpuStats:
    """One GPU over the window: means of its samples and the share of them throttled."""

    gpu: str
    name: str
    samples: int
    util_pct: float | None
    mem_util_pct: float | None
    mem_used_bytes: float | None
    mem_used_pct: float | None
    throttled_share: float | None
    throttle_reasons: int  # the THROTTLED bits seen in its throttled samples

    @property
    def throttle_labels(self) -> list[str]:
        return throttle_labels(self.throttle_reasons)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.fmean(present) if present else None


@dataclass(frozen=True)
class RunStats:
    """The statistics of one run's window (see the module's docstring)."""

    power: list[DomainPower] = field(default_factory=list)
    gpus: list[GpuStats] = field(default_factory=list)
    cpu_util_pct: float | None = None
    peak_power_w: float | None = None
    wall_energy_j: float | None = None
    wall_coverage: float | None = None
    wall_peak_w: float | None = None

    def _avg(self, keep) -> float | None:
        chosen = [d.avg_w for d in self.power if keep(d) and d.avg_w is not None]
        return sum(chosen) if chosen else None

    @property
    def avg_power_w(self) -> float | None:
        return self._avg(lambda d: d.counted)

    @property
    def gpu_power_w(self) -> float | None:
        return self._avg(lambda d: d.role == domains.GPU)

    @property
    def wall_power_w(self) -> float | None:
        return self._avg(lambda d: d.role == domains.WALL)

    @property
    def gpu_util_pct(self) -> float | None:
        return _mean([g.util_pct for g in self.gpus])

    @property
    def gpu_mem_util_pct(self) -> float | None:
        return _mean([g.mem_util_pct for g in self.gpus])

    @property
    def gpu_mem_used_bytes(self) -> float | None:
        return _mean([g.mem_used_bytes for g in self.gpus])

    @property
    def gpu_mem_used_pct(self) -> float | None:
        return _mean([g.mem_used_pct for g in self.gpus])

    @property
    def throttled_gpu(self) -> GpuStats | None:
        """The GPU throttled for the largest share of the window (None: no throttle data)."""
        known = [g for g in self.gpus if g.throttled_share is not None]
        return max(known, key=lambda g: g.throttled_share, default=None)

    @property
    def throttled_share(self) -> float | None:
        g = self.throttled_gpu
        return None if g is None else g.throttled_share

    @property
    def throttle_reasons(self) -> list[str]:
        g = self.throttled_gpu
        return [] if g is None else g.throttle_labels

    def flags(self) -> list[str]:
        """Throttling ("GPU throttled 23% of the window (power cap)", for the GPU throttled
        longest; "GPU 1 ..." where there are several) and partial wall coverage."""
        flags = []
        g = self.throttled_gpu
        if g is not None and g.throttled_share:
            which = "GPU" if len(self.gpus) == 1 else f"GPU {g.gpu}"
            share = f"{g.throttled_share:.0%}" if g.throttled_share >= 0.005 else "under 1%"
            why = f" ({', '.join(g.throttle_labels)})" if g.throttle_labels else ""
            flags.append(f"{which} throttled {share} of the window{why}")
        if self.wall_coverage is not None and self.wall_coverage < 0.999:
            flags.append(f"wall samples cover {self.wall_coverage:.1%} of the window")
        return flags

    def figures(self) -> dict[str, float | list[str] | None]:
        """The run-level figures by name: those of :data:`scoring.figures.FIGURES` whose origin
        is these statistics."""
        return {f.name: getattr(self, f.name) for f in figures_from(STATS)}

    def to_dict(self) -> dict:
        gpus = [asdict(g) | {"throttle_labels": g.throttle_labels} for g in self.gpus]
        return self.figures() | {"power": [asdict(d) for d in self.power], "gpus": gpus}

    def domain_power_json(self) -> str:
        """``{"source:domain": {"avg_w", "peak_w", "counted"}}`` as compact JSON."""
        doc = {f"{d.source}:{d.domain}": {"avg_w": d.avg_w, "peak_w": d.peak_w,
                                          "counted": d.counted} for d in self.power}  # fmt: skip
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    def gpu_stats_json(self) -> str:
        """``{"gpu index": {"util_pct", "mem_util_pct", "mem_used_bytes", "mem_used_pct",
        "throttled_share", "throttle": [labels]}}`` as compact JSON."""
        doc = {g.gpu: {"util_pct": g.util_pct, "mem_util_pct": g.mem_util_pct,
                       "mem_used_bytes": g.mem_used_bytes, "mem_used_pct": g.mem_used_pct,
                       "throttled_share": g.throttled_share, "throttle": g.throttle_labels}
               for g in self.gpus}  # fmt: skip
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def peak_of_sum(
    series: Sequence[tuple[list[int], list[float]]], start_ns: int, end_ns: int
) -> float | None:
    """The largest sum of the series' watts at any of their sample times in the window (each
    series interpolated at the others' times; a time outside one series' span is skipped)."""
    if not series or any(not times for times, _ in series):
        return None
    moments = sorted({t for times, _ in series for t in times[in_window(times, start_ns, end_ns)]})
    best = None
    for t in moments:
        values = [interpolate(times, watts, t) for times, watts in series]
        if all(v is not None for v in values):
            total = sum(values)
            best = total if best is None else max(best, total)
    return best


def _gpu_stats(columns: list[Columns], start_ns: int, end_ns: int) -> list[GpuStats]:
    """One entry per ``gpu`` tag (series of one index from NVML and DCGM are taken together)."""
    by_gpu: dict[str, list[Columns]] = defaultdict(list)
    for c in columns:
        by_gpu[c.tags.get("gpu", "")].append(c)
    out = []
    for index, group in sorted(by_gpu.items(), key=lambda kv: (len(kv[0]), kv[0])):
        values: dict[str, list[float]] = defaultdict(list)
        reasons = 0
        samples = 0
        for c in group:
            window = in_window(c.times, start_ns, end_ns)
            samples += len(c.times[window])
            for f in GPU_FIELDS:
                values[f] += [float(v) for v in c.values.get(f, [])[window] if v is not None]
            for used, total in zip(c.values.get("mem_used_bytes", [])[window],
                                   c.values.get("mem_total_bytes", [])[window]):  # fmt: skip
                if used is not None and total:
                    values["mem_used_pct"].append(100.0 * used / total)
            for thr, bits in zip(c.values.get("throttled", [])[window],
                                 c.values.get("clock_event_reasons", [])[window]):  # fmt: skip
                if thr and bits is not None:
                    reasons |= int(bits) & THROTTLED
        throttled = values["throttled"]
        out.append(
            GpuStats(
                gpu=index,
                name=group[0].tags.get("name", ""),
                samples=samples,
                util_pct=_mean(values["util_pct"]),
                mem_util_pct=_mean(values["mem_util_pct"]),
                mem_used_bytes=_mean(values["mem_used_bytes"]),
                mem_used_pct=_mean(values["mem_used_pct"]),
                throttled_share=sum(v >= 0.5 for v in throttled) / len(throttled)
                if throttled
                else None,
                throttle_reasons=reasons,
            )
        )
    return [g for g in out if g.samples]


def run_stats(store: Store, host: str, energy: WindowEnergy, samples: EnergySamples) -> RunStats:
    """The statistics of ``host`` over ``energy``'s window, whose domains give the joules and
    roles; ``samples`` (:func:`~exporters.window.read_energy`) are what ``energy`` was computed
    from, and give the watts."""
    start, end = energy.start_ns, energy.end_ns
    seconds = (end - start) / 1e9
    watts = samples.watts()
    none: tuple[list[int], list[float]] = ([], [])
    power = []
    for d in energy.domains:
        times, values = watts.get((d.host, d.source, d.domain), none)
        inside = values[in_window(times, start, end)]
        covered_s = d.coverage * seconds
        power.append(
            DomainPower(
                source=d.source,
                domain=d.domain,
                role=d.role,
                counted=d.counted,
                avg_w=d.joules / covered_s if covered_s > 0 else None,
                peak_w=max(inside) if inside else None,
                samples=len(inside),
            )
        )
    counted = [watts.get((d.host, d.source, d.domain), none) for d in energy.counted]
    walls = [d for d in energy.domains if d.role == domains.WALL]
    wall_series = [watts.get((d.host, d.source, d.domain), none) for d in walls]
    wall_known = [d for d in walls if d.coverage > 0]

    host_tags = {"host": host}
    gpus = _gpu_stats(store.read_columns(GPU, start, end, tags=host_tags, fields=GPU_FIELDS),
                      start, end)  # fmt: skip
    cpu = store.read_columns(CPU, start, end, tags={**host_tags, "cpu": "total"},
                             fields=("usage_pct",))  # fmt: skip
    usage = [v for c in cpu for v in c.column("usage_pct")[1]]
    return RunStats(
        power=power,
        gpus=gpus,
        cpu_util_pct=_mean(usage),
        peak_power_w=peak_of_sum(counted, start, end),
        wall_energy_j=sum(d.joules for d in wall_known) if wall_known else None,
        wall_coverage=min(d.coverage for d in walls) if walls else None,
        wall_peak_w=peak_of_sum(wall_series, start, end),
    )
