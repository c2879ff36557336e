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

One bad run never takes the others down. A run whose events break the schema
(:class:`~scoring.events.InvalidEvent`: accuracy above 1, a negative count, a control character
in a tag, ...) is ``invalid``, with the reason; so is a run one of whose figures cannot be
computed. An invalid run is shown with its reason, never scored or ranked. A run id used by
several runs (imported from another store, or ``benchmark run --replace``) is the latest
``start`` and what follows it; the earlier runs stay in the store, unscored, and the run is
flagged. A run whose energy is zero, negative or not finite is flagged and has no energy per
inference or score, so it is never ranked.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Protocol, TypeVar

from exporters.errors import shown
from exporters.schema import RUN, Point
from exporters.stores.base import Store
from exporters.window import DEFAULT_COUNTED, DomainEnergy, WindowEnergy, energy_of, read_energy
from scoring import confidence, rating, steadiness
from scoring.events import EVENT, InvalidEvent, RunEnd, RunFail, RunStart, RunTags, parse_event
from scoring.figures import DERIVED, FIGURES, figures_from, usable_energy, with_figures
from scoring.prefetch import Prefetched
from scoring.stats import RunStats, run_stats

log = logging.getLogger(__name__)

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
    status: str  # "finished", "failed", "running" or "invalid"
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
    superseded: int = 0  # earlier runs under this run id, left unscored
    # from the start event: the operating point, and the environment (benchmark.manifest)
    precision: str = ""
    jit: str = ""
    machine_id: str = ""
    manifest: dict = field(default_factory=dict)
    # over the run's group of passes (scoring.confidence) and its machine's references
    # (scoring.rating): set by annotate_groups
    passes: int | None = None
    uwh_ci_low: float | None = None
    uwh_ci_high: float | None = None
    composite_ci_low: float | None = None
    composite_ci_high: float | None = None
    rating: str | None = None
    rating_ratio: float | None = None
    # steadiness (scoring.steadiness): per-batch timing, other processes' CPU time, the idle
    # baseline after the passes and the cool-down (from the events), the power's trend
    latency_p50_s: float | None = None
    latency_p90_s: float | None = None
    latency_p99_s: float | None = None
    throughput_series: list[float] | None = None  # images/s per bin of duration_s / len
    stall_s: float | None = None
    other_cpu_s: float | None = None
    idle_w_after: float | None = None
    cooldown_s: float | None = None
    cooldown_reached: bool | None = None
    power_drift_pct: float | None = None

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

    def begin(self, start: RunStart) -> None:
        """Take what the run's ``start`` event says: its operating point and environment (a
        manifest that is not a JSON object is kept as ``{"error": ...}``)."""
        self.precision, self.jit = start.precision or "", start.jit or ""
        self.machine_id = start.machine_id or ""
        self.manifest = parse_manifest(start.manifest)
        steadiness.take_start(self, start)

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
        steadiness.take_end(self, end)

    @property
    def remarks(self) -> list[str]:
        """Why it failed or is invalid, then its flags: what tables show beside its figures."""
        why = [f"{self.status}: {self.reason}"] if self.status in ("failed", "invalid") else []
        return why + self.flags

    def invalidate(self, reason: str) -> None:
        """The run cannot be scored: ``reason`` says why. Only what names it (its tags, its
        window, the runs it superseded) is kept; every other field is back to its default."""
        kept = {"run_id", "model", "host", "backend", "dataset", "start_ns", "end_ns", "superseded"}
        for f in fields(self):
            if f.name not in kept:
                default = f.default_factory() if f.default_factory is not MISSING else f.default
                setattr(self, f.name, default)
        self.status, self.reason = "invalid", reason

    def set_energy(self, energy: WindowEnergy) -> None:
        """Take its window's energy: the domains, and the counted total where known."""
        self.domains = energy.domains
        if energy.counted and energy.coverage > 0:
            self.energy_j, self.coverage, self.estimated = (
                energy.total_joules, energy.coverage, energy.estimated
            )  # fmt: skip


def _run_of(points: list[Point]) -> RunScore | None:
    """One run from its events, oldest first: the latest ``start``, then the first ``end`` or
    ``fail`` after it (None without a ``start``); ``invalid`` where one of these breaks the
    schema."""
    kinds = [p.fields.get(EVENT) for p in points]
    starts = [i for i, kind in enumerate(kinds) if kind == RunStart.kind]
    if not starts:
        return None
    first = starts[-1]
    last = next((i for i in range(first + 1, len(points)) if kinds[i] in ("end", "fail")), None)
    decisive = points[first : len(points) if last is None else last + 1]
    run = RunScore.started(RunTags.of(points[first].tags), points[first].time_ns,
                           superseded=len(starts) - 1)  # fmt: skip
    if last is not None:
        run.end_ns = points[last].time_ns
    try:
        events = [parse_event(p) for p in decisive]
    except InvalidEvent as e:
        run.invalidate(str(e))
        return run
    if isinstance(events[0], RunStart):
        run.begin(events[0])
    if isinstance(events[-1], RunFail):
        run.status, run.reason = "failed", events[-1].reason or ""
    elif isinstance(events[-1], RunEnd):
        run.finish(events[-1], run.end_ns)
    return run


def runs_from_events(events: Iterable[Point]) -> list[RunScore]:
    """Pair each run's events; the first ``end`` or ``fail`` after its latest ``start``
    decides its status (``invalid`` where one of them breaks the schema)."""
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
    """Fill in the energy of a finished run's window, its coverage and its flags. A run one of
    whose figures cannot be computed (data the events' checks let through) becomes
    ``invalid`` with the error as its reason, so that no table or point meets it again."""
    counted_domains: list[DomainEnergy] = []
    if run.status == "finished" and run.end_ns is not None and run.end_ns > run.start_ns:
        samples = read_energy(store, run.start_ns, run.end_ns, host=run.host)  # read once
        energy = energy_of(samples, counted)
        run.set_energy(energy)
        run.stats = run_stats(store, run.host, energy, samples)
        run.power_drift_pct = steadiness.power_drift_pct(samples, counted)
        counted_domains = energy.counted
    try:
        run.flags = _flags(run, counted_domains)
        for figure in FIGURES:
            figure.shown(run)
    except (ArithmeticError, ValueError, TypeError) as e:
        run.invalidate(f"a figure cannot be computed: {type(e).__name__}: {e}")
    return run


def _flags(run: RunScore, counted: list[DomainEnergy]) -> list[str]:
    flags = []
    if run.superseded:
        flags.append(f"run id used by {run.superseded + 1} runs: the latest is scored, "
                     f"{run.superseded} earlier left out")  # fmt: skip
    if run.status != "finished":
        return flags
    if run.energy_j is None:
        flags.append("no energy samples in the window")
    elif not usable_energy(run.energy_j):
        flags.append(f"energy {run.energy_j:g} J in the window is not a finite number above 0: "
                     "no energy per inference or score, not ranked")  # fmt: skip
    if run.coverage is not None and run.coverage < 0.999:
        flags.append(f"samples cover {run.coverage:.1%} of the window")
    if run.estimated:
        flags.append("energy includes an estimate (CPU model)")
    flags += [f"{d.source} {d.domain}: counter and power disagree" for d in counted if d.mismatch]
    if run.accuracy_source == "published":
        flags.append("accuracy is the published figure, not measured")
    if run.weights == "random" and run.accuracy_source == "measured":
        flags.append("random weights: the measured accuracy is meaningless")
    return flags + (run.stats.flags() if run.stats else []) + steadiness.flags(run)


def warn_invalid(run: RunScore, warned: set[tuple[str, int]] | None = None) -> None:
    """Log an invalid run with its reason, once: a run already in ``warned`` (by its
    ``run_id`` and start) is not logged again, and one logged is added."""
    key = (run.run_id, run.start_ns)
    if run.status == "invalid" and (warned is None or key not in warned):
        log.warning("run %s is invalid, never scored or ranked: %s", shown(run.run_id),
                    run.reason)  # fmt: skip
        if warned is not None:
            warned.add(key)


def load_runs(
    store: Store, start_ns: int = 0, end_ns: int = 2**62, counted: Sequence[str] = DEFAULT_COUNTED
) -> list[RunScore]:
    """Every run with events in the range, finished ones scored."""
    runs = score_runs(store, runs_from_events(store.read(RUN, start_ns, end_ns)), counted)
    annotate_groups(runs)
    return runs


def score_runs(
    store: Store, runs: Sequence[R], counted: Sequence[str] = DEFAULT_COUNTED
) -> list[R]:
    """:func:`score_run` for each of ``runs`` (returned, in their order), their samples read
    in few queries (:class:`scoring.prefetch.Prefetched`): the same scores as one by one."""
    view = Prefetched(store, runs)
    for run in view.runs:  # by host, then start: each span read once
        score_run(view, run, counted)
    return list(runs)


def annotate_groups(runs: Sequence[RunScore], only: Iterable[RunScore] | None = None) -> None:
    """Give each run of ``only`` (default: all) what it has as one of ``runs``: its group's
    intervals (:mod:`scoring.confidence`) and its rating (:mod:`scoring.rating`)."""
    confidence.annotate(runs, only)
    rating.annotate(runs, only)


def parse_manifest(text: str | None) -> dict:
    """A ``start`` event's manifest as a dict (empty for none)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        return {"error": f"the manifest is not JSON: {e}"}
    return value if isinstance(value, dict) else {"error": "the manifest is not a JSON object"}


@dataclass(frozen=True)
class RepeatStats:
    """Repeated runs of one model on one machine at one operating point: the fields of
    :func:`scoring.confidence.group_key`, in its order."""

    host: str
    model: str
    dataset: str
    backend: str
    precision: str
    jit: str
    batch_size: int | None
    runs: int
    uwh_mean: float
    uwh_std: float
    composite_mean: float | None
    label: str = ""  # the model, and its operating point where it has several (point_labels)

    @property
    def point(self) -> str:
        return operating_point(self.backend, self.precision, self.jit, self.batch_size)

    @property
    def spread(self) -> float:
        return self.uwh_std / self.uwh_mean if self.uwh_mean else math.inf

    @property
    def flagged(self) -> bool:
        return self.runs > 1 and self.spread > SPREAD_LIMIT


def operating_point(backend: str, precision: str, jit: str, batch_size: int | None) -> str:
    """An operating point in words, what is unknown left out: ``tensorflow fp32 jit off,
    batch 32``."""
    words = " ".join(w for w in (backend, precision, jit and f"jit {jit}") if w)
    return ", ".join(w for w in (words, f"batch {batch_size}" if batch_size else "") if w)


class AtPoint(Protocol):
    """A model at an operating point on a machine (a :class:`RepeatStats`, a ranking entry)."""

    @property
    def host(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def point(self) -> str: ...


def point_labels(items: Sequence[AtPoint]) -> list[str]:
    """Each item's model, with its operating point where that model is at several on its
    machine among ``items``, so that two of its points never read alike."""
    points: dict[tuple[str, str], set[str]] = defaultdict(set)
    for i in items:
        points[(i.host, i.model)].add(i.point)
    return [i.model if len(points[(i.host, i.model)]) < 2 else f"{i.model} ({i.point})"
            for i in items]  # fmt: skip


def repeat_stats(runs: Iterable[RunScore]) -> list[RepeatStats]:
    """Mean and spread (sample standard deviation over mean) of energy per inference, per
    group of passes (:func:`scoring.confidence.groups`), each labelled (:func:`point_labels`)."""
    out = []
    groups = confidence.groups(runs)
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
    return [replace(s, label=label) for s, label in zip(out, point_labels(out), strict=True)]
