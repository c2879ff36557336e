"""Per-run results from the store: each run's window, energy, accuracy and every score.

A run is the ``run`` events that share a ``run_id``: ``start`` then ``end`` (finished) or
``fail`` (never scored). Its window is ``[start, end]``; its energy is the total of the counted
domains there (:mod:`exporters.window`), gross and, where the run measured an idle baseline,
net of idle power. Everything the scores need (inferences, accuracy, parameters, MACs) comes
from the run's own ``end`` event, never from the benchmark's registry. Beside the energy, each
scored run carries its window's statistics (:mod:`scoring.stats`: power, GPU and CPU use,
throttling) and the wall energy where a ``wall`` domain was measured; the score can be computed
on either: the components (the counted domains; the default) or the wall.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exporters.schema import RUN, Point
from exporters.stores.base import Store
from exporters.window import DEFAULT_COUNTED, DomainEnergy, window_energy
from scoring.scores import canziani, composite, netscore, uwh_per_inference
from scoring.stats import RunStats, run_stats

SPREAD_LIMIT = 0.05  # repeats of one model on one machine whose spread exceeds this are flagged

# RunScore's properties that as_dict() adds to its fields (and the RunStats figures).
DERIVED = (
    "duration_s", "images_per_s", "energy_wh", "net_energy_j", "uwh_per_inference",
    "net_uwh_per_inference", "composite", "net_composite", "canziani", "netscore",
    "wall_uwh_per_inference", "wall_composite",
)  # fmt: skip


def _stat(name: str) -> property:
    """A figure of the run's :class:`RunStats` (None before the run is scored)."""
    return property(lambda self: None if self.stats is None else getattr(self.stats, name))


@dataclass
class RunScore:
    """One run: what it ran, its window, its energy and its scores."""

    run_id: str
    model: str
    host: str
    backend: str
    dataset: str
    status: str  # "finished", "failed" or "running"
    start_ns: int
    end_ns: int | None = None
    inferences: int = 0
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str = ""
    params: float | None = None
    macs: float | None = None
    weights: str = ""
    batch_size: int | None = None
    reason: str = ""
    energy_j: float | None = None
    coverage: float | None = None
    estimated: bool = False
    idle_w: float | None = None
    domains: list[DomainEnergy] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    stats: RunStats | None = None

    avg_power_w = _stat("avg_power_w")
    peak_power_w = _stat("peak_power_w")
    gpu_power_w = _stat("gpu_power_w")
    gpu_util_pct = _stat("gpu_util_pct")
    gpu_mem_util_pct = _stat("gpu_mem_util_pct")
    gpu_mem_used_bytes = _stat("gpu_mem_used_bytes")
    gpu_mem_used_pct = _stat("gpu_mem_used_pct")
    cpu_util_pct = _stat("cpu_util_pct")
    throttled_share = _stat("throttled_share")
    wall_energy_j = _stat("wall_energy_j")
    wall_coverage = _stat("wall_coverage")
    wall_power_w = _stat("wall_power_w")
    wall_peak_w = _stat("wall_peak_w")

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e9

    @property
    def energy_wh(self) -> float | None:
        return None if self.energy_j is None else self.energy_j / 3600

    @property
    def images_per_s(self) -> float | None:
        d = self.duration_s
        return self.inferences / d if d else None

    @property
    def net_energy_j(self) -> float | None:
        if self.energy_j is None or self.idle_w is None or self.duration_s is None:
            return None
        return self.energy_j - self.idle_w * self.duration_s

    def _per_inference(self, joules: float | None) -> float | None:
        if joules is None or not self.inferences:
            return None
        return uwh_per_inference(joules, self.inferences)

    @property
    def uwh_per_inference(self) -> float | None:
        return self._per_inference(self.energy_j)

    @property
    def net_uwh_per_inference(self) -> float | None:
        return self._per_inference(self.net_energy_j)

    @property
    def wall_uwh_per_inference(self) -> float | None:
        return self._per_inference(self.wall_energy_j)

    @property
    def composite(self) -> float | None:
        uwh = self.uwh_per_inference
        return composite(self.top1, uwh) if uwh is not None and self.top1 is not None else None

    @property
    def wall_composite(self) -> float | None:
        """The composite score on the energy at the wall instead of the components'."""
        uwh = self.wall_uwh_per_inference
        return composite(self.top1, uwh) if uwh is not None and self.top1 is not None else None

    @property
    def net_composite(self) -> float | None:
        uwh = self.net_uwh_per_inference
        if uwh is None or self.top1 is None or uwh <= 0:
            return None
        return composite(self.top1, uwh)

    @property
    def canziani(self) -> float | None:
        return canziani(self.top1, self.params) if self.top1 and self.params else None

    @property
    def netscore(self) -> float | None:
        if not (self.top1 and self.params and self.macs):
            return None
        return netscore(self.top1, self.params, self.macs)

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k not in ("domains", "stats")}
        for name in DERIVED:
            out[name] = getattr(self, name)
        out.update((self.stats or RunStats()).to_dict())
        out["domains"] = [vars(d) | {} for d in self.domains]
        return out


def _number(fields: dict, key: str) -> float | None:
    value = fields.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def runs_from_events(events: Iterable[Point]) -> list[RunScore]:
    """Pair each run's events; the latest ``end`` or ``fail`` decides its status."""
    by_run: dict[str, list[Point]] = defaultdict(list)
    for p in events:
        by_run[p.tags.get("run_id", "")].append(p)
    runs = []
    for run_id, points in by_run.items():
        points.sort(key=lambda p: p.time_ns)
        starts = [p for p in points if p.fields.get("event") == "start"]
        if not starts:
            continue
        start = starts[-1]
        tags = start.tags
        run = RunScore(
            run_id=run_id, model=tags.get("model", ""), host=tags.get("host", ""),
            backend=tags.get("backend", ""), dataset=tags.get("dataset", ""),
            status="running", start_ns=start.time_ns,
        )  # fmt: skip
        for p in points:
            if p.time_ns < start.time_ns or p.fields.get("event") not in ("end", "fail"):
                continue
            f = p.fields
            run.end_ns = p.time_ns
            if f["event"] == "fail":
                run.status, run.reason = "failed", str(f.get("reason", ""))
                break
            run.status = "finished"
            run.inferences = int(_number(f, "inferences") or 0)
            run.top1, run.top5 = _number(f, "top1"), _number(f, "top5")
            run.accuracy_source = str(f.get("accuracy_source", ""))
            run.params, run.macs = _number(f, "params"), _number(f, "macs")
            run.weights = str(f.get("weights", ""))
            bs = _number(f, "batch_size")
            run.batch_size = int(bs) if bs is not None else None
            run.idle_w = _number(f, "idle_watts")
            break
        runs.append(run)
    runs.sort(key=lambda r: (r.start_ns, r.run_id))
    return runs


def score_run(store: Store, run: RunScore, counted: Sequence[str] = DEFAULT_COUNTED) -> RunScore:
    """Fill in the energy of a finished run's window, its coverage and its flags."""
    if run.status != "finished" or run.end_ns is None or run.end_ns <= run.start_ns:
        return run
    energy = window_energy(store, run.start_ns, run.end_ns, host=run.host, counted=counted)
    run.domains = energy.domains
    if energy.counted and energy.coverage > 0:
        run.energy_j, run.coverage, run.estimated = (
            energy.total_joules, energy.coverage, energy.estimated
        )  # fmt: skip
    run.stats = run_stats(store, run.host, energy)
    run.flags = _flags(run, energy.counted)
    return run


def _flags(run: RunScore, counted: list[DomainEnergy]) -> list[str]:
    flags = []
    if run.energy_j is None:
        flags.append("no energy samples in the window")
    if run.coverage is not None and run.coverage < 0.999:
        flags.append(f"samples cover {run.coverage:.1%} of the window")
    if run.estimated:
        flags.append("energy includes an estimate (CPU model)")
    flags += [f"{d.source} {d.domain}: counter and power disagree" for d in counted if d.mismatch]
    if run.accuracy_source == "published":
        flags.append("accuracy is the published figure, not measured")
    if run.weights == "random" and run.accuracy_source == "measured":
        flags.append("random weights: the measured accuracy is meaningless")
    return flags + (run.stats.flags() if run.stats else [])


def load_runs(
    store: Store, start_ns: int = 0, end_ns: int = 2**62, counted: Sequence[str] = DEFAULT_COUNTED
) -> list[RunScore]:
    """Every run with events in the range, finished ones scored."""
    runs = runs_from_events(store.read(RUN, start_ns, end_ns))
    return [score_run(store, r, counted) for r in runs]


@dataclass(frozen=True)
class RepeatStats:
    """Repeated runs of one model on one machine (same dataset, backend and batch size)."""

    host: str
    model: str
    dataset: str
    backend: str
    batch_size: int | None
    runs: int
    uwh_mean: float
    uwh_std: float
    composite_mean: float | None

    @property
    def spread(self) -> float:
        return self.uwh_std / self.uwh_mean if self.uwh_mean else math.inf

    @property
    def flagged(self) -> bool:
        return self.runs > 1 and self.spread > SPREAD_LIMIT


def repeat_stats(runs: Iterable[RunScore]) -> list[RepeatStats]:
    """Mean and spread (sample standard deviation over mean) of energy per inference."""
    groups: dict[tuple, list[RunScore]] = defaultdict(list)
    for r in runs:
        if r.uwh_per_inference is not None:
            groups[(r.host, r.model, r.dataset, r.backend, r.batch_size)].append(r)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        uwh = [r.uwh_per_inference for r in members]
        scores = [r.composite for r in members if r.composite is not None]
        out.append(
            RepeatStats(
                *key,
                runs=len(members),
                uwh_mean=statistics.fmean(uwh),
                uwh_std=statistics.stdev(uwh) if len(uwh) > 1 else 0.0,
                composite_mean=statistics.fmean(scores) if scores else None,
            )
        )
    return out
