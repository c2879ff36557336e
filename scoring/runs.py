"""Per-run results from the store: each run's window, energy, accuracy and every score.

A run is the ``run`` events (:mod:`scoring.events`) that share a ``run_id``: ``start`` then
``end`` (finished) or ``fail`` (never scored). Its window is ``[start, end]``; its energy is the
total of the counted domains there (:mod:`exporters.window`), gross and, where the run measured
an idle baseline, net of idle power. Everything the scores need (inferences, accuracy,
parameters, MACs) comes from the run's own ``end`` event, never from the benchmark's registry.
Beside the energy, each scored run carries its window's statistics (:mod:`scoring.stats`: power,
GPU and CPU use, throttling) and the wall energy where a ``wall`` domain was measured; the score
can be computed on either: the components (the counted domains; the default) or the wall. Every
figure of a run is defined once, in :mod:`scoring.figures`.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from exporters.schema import RUN, Point
from exporters.stores.base import Store
from exporters.window import DEFAULT_COUNTED, DomainEnergy, WindowEnergy, energy_of, read_energy
from scoring.events import RunEnd, RunFail, RunStart, RunTags, parse_event
from scoring.figures import DERIVED, figures_from, with_figures
from scoring.stats import RunStats, run_stats

SPREAD_LIMIT = 0.05  # repeats of one model on one machine whose spread exceeds this are flagged
R = TypeVar("R", bound="RunScore")


@with_figures
@dataclass
class RunScore:
    """One run: what it ran, its window, its energy and its scores.

    Its figures beside these fields (``duration_s``, ``uwh_per_inference``, ``composite``, the
    window's statistics, ...) are properties defined in :data:`scoring.figures.FIGURES`."""

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

    def as_dict(self) -> dict:
        """Its fields, its derived figures, its window's statistics, then its domains."""
        out = {k: v for k, v in vars(self).items() if k not in ("domains", "stats")}
        out.update((f.name, f.value(self)) for f in figures_from(DERIVED))
        out.update((self.stats or RunStats()).to_dict())
        out["domains"] = [vars(d) | {} for d in self.domains]
        return out

    @classmethod
    def started(cls: type[R], tags: RunTags, start_ns: int, **more: object) -> R:
        """The run whose ``start`` event, at ``start_ns``, has these tags: running until its
        ``end`` or ``fail``. ``more``: a subclass's fields."""
        return cls(run_id=tags.run_id, model=tags.model, host=tags.host, backend=tags.backend,
                   dataset=tags.dataset, status="running", start_ns=start_ns, **more)  # fmt: skip

    def finish(self, end: RunEnd, end_ns: int) -> None:
        """Take what the run's ``end`` event says: it finished, and what it computed."""
        self.status, self.end_ns = "finished", end_ns
        self.inferences = end.inferences or 0
        self.top1, self.top5 = end.top1, end.top5
        self.accuracy_source = end.accuracy_source or ""
        self.params, self.macs = end.params, end.macs
        self.weights = end.weights or ""
        self.batch_size = end.batch_size
        self.idle_w = end.idle_watts

    def set_energy(self, energy: WindowEnergy) -> None:
        """Take its window's energy: the domains, and the counted total where known."""
        self.domains = energy.domains
        if energy.counted and energy.coverage > 0:
            self.energy_j, self.coverage, self.estimated = (
                energy.total_joules, energy.coverage, energy.estimated
            )  # fmt: skip


def _run_of(points: list[Point]) -> RunScore | None:
    """One run from its events, oldest first: the latest ``start``, then the first ``end`` or
    ``fail`` after it (None without a ``start``)."""
    events = [(p, parse_event(p.fields)) for p in points]
    starts = [p for p, event in events if isinstance(event, RunStart)]
    if not starts:
        return None
    start = starts[-1]
    run = RunScore.started(RunTags.of(start.tags), start.time_ns)
    for p, event in events:
        if p.time_ns < start.time_ns:
            continue
        if isinstance(event, RunFail):
            run.status, run.end_ns, run.reason = "failed", p.time_ns, event.reason or ""
            break
        if isinstance(event, RunEnd):
            run.finish(event, p.time_ns)
            break
    return run


def runs_from_events(events: Iterable[Point]) -> list[RunScore]:
    """Pair each run's events; the first ``end`` or ``fail`` after its latest ``start``
    decides its status."""
    by_run: dict[str, list[Point]] = defaultdict(list)
    for p in events:
        by_run[p.tags.get("run_id", "")].append(p)
    runs = []
    for points in by_run.values():
        run = _run_of(sorted(points, key=lambda p: p.time_ns))
        if run is not None:
            runs.append(run)
    runs.sort(key=lambda r: (r.start_ns, r.run_id))
    return runs


def score_run(store: Store, run: RunScore, counted: Sequence[str] = DEFAULT_COUNTED) -> RunScore:
    """Fill in the energy of a finished run's window, its coverage and its flags."""
    if run.status != "finished" or run.end_ns is None or run.end_ns <= run.start_ns:
        return run
    samples = read_energy(store, run.start_ns, run.end_ns, host=run.host)  # read once, for both
    energy = energy_of(samples, counted)
    run.set_energy(energy)
    run.stats = run_stats(store, run.host, energy, samples)
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
