"""Sweeps: the operating points of one model on one machine, the energy-optimal one and the
Pareto front of energy per inference against p99 batch latency.

A sweep (``python -m benchmark sweep``) runs each operating point (batch size, backend,
precision, jit) as its own run whose ``start`` event names the sweep (``RunStart.sweep``).
:func:`sweep_points` finds them in the store's ``run`` events, beside the scored runs, and
:class:`SweepPoint` holds what a sweep compares: energy per inference, throughput and the p99
batch latency (``RunEnd.latency_p99_s``).

- The **best point** of a model on a machine (:func:`best_point`) is its energy-optimal one:
  the lowest energy per inference (ties: the lower p99 latency, then the run id).
- The **Pareto front** (:func:`pareto_front`) is the points that no other point dominates in
  (energy per inference, p99 latency), both lower being better: a point is dominated by one
  that is no worse in both and better in one. Points without a latency are on no front; the
  best point is always on it when it has a latency.
- Rankings at the best point (:func:`at_best_points`): each model on each machine is ranked by
  the runs of its best sweep point only (a model never swept keeps all its runs), beside the
  fixed-setting ranking of every run (``python -m scoring runs --at-best``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporters.schema import RUN
from exporters.stores.base import Store
from scoring.events import EVENT, InvalidEvent, RunEnd, RunStart, parse_event
from scoring.runs import RunScore


@dataclass(frozen=True)
class SweepPoint:
    """One operating point of a sweep: a finished, scored run and the setting it ran at."""

    sweep: str
    run_id: str
    host: str
    model: str
    backend: str
    precision: str
    jit: str
    batch_size: int | None
    uwh_per_inference: float | None  # None: finished, but its energy could not be scored
    images_per_s: float | None
    latency_p99_s: float | None

    @property
    def setting(self) -> str:
        """The operating point in words: ``torch fp16 jit on, batch 32``."""
        jit = f" jit {self.jit}" if self.jit else ""
        return f"{self.backend} {self.precision or 'fp32'}{jit}, batch {self.batch_size}"

    def as_dict(self) -> dict:
        return {**vars(self), "setting": self.setting}


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


def best_point(points: Iterable[SweepPoint]) -> SweepPoint | None:
    """The energy-optimal point: lowest energy per inference, then lowest p99 latency (a
    point without one after those with), then run id; None for no point with a usable energy."""
    usable = [p for p in points if _usable(p.uwh_per_inference)]
    if not usable:
        return None
    return min(usable, key=lambda p: (p.uwh_per_inference, _latency_key(p), p.run_id))


def _latency_key(p: SweepPoint) -> float:
    return p.latency_p99_s if _usable(p.latency_p99_s) else math.inf


def pareto_front(points: Iterable[SweepPoint]) -> list[SweepPoint]:
    """The points no other dominates in (energy per inference, p99 latency), lowest energy
    first; identical points do not dominate each other, so both stay."""
    usable = [p for p in points if _usable(p.uwh_per_inference) and _usable(p.latency_p99_s)]
    order = sorted(usable, key=lambda p: (p.uwh_per_inference, p.latency_p99_s, p.run_id))
    front: list[SweepPoint] = []
    for p in order:
        last = front[-1] if front else None
        if last is None or p.latency_p99_s < last.latency_p99_s or _same(p, last):
            front.append(p)
    return front


def _same(a: SweepPoint, b: SweepPoint) -> bool:
    return (a.uwh_per_inference, a.latency_p99_s) == (b.uwh_per_inference, b.latency_p99_s)


@dataclass(frozen=True)
class Sweep:
    """The sweep points of one model on one machine, its best point and its front."""

    host: str
    model: str
    points: list[SweepPoint]
    best: SweepPoint | None
    front: list[SweepPoint]

    def as_dict(self) -> dict:
        return {
            "host": self.host,
            "model": self.model,
            "best": None if self.best is None else self.best.as_dict(),
            "front": [p.run_id for p in self.front],
            "points": [p.run_id for p in self.points],
        }


def sweeps(points: Iterable[SweepPoint]) -> list[Sweep]:
    """The points grouped per machine and model (every sweep's points of that model there),
    each group with its best point and front; by host, then model."""
    groups: dict[tuple[str, str], list[SweepPoint]] = defaultdict(list)
    for p in points:
        groups[(p.host, p.model)].append(p)
    return [
        Sweep(host, model, ps, best_point(ps), pareto_front(ps))
        for (host, model), ps in sorted(groups.items())
    ]


def _events(store: Store, runs: Sequence[RunScore]) -> tuple[dict, dict]:
    """The ``start`` event of each run that is a sweep point, and the ``end`` event of each,
    by run id: the latest of each kind, as the run's own window has them."""
    windows = {r.run_id: r for r in runs if r.status == "finished" and r.end_ns is not None}
    if not windows:
        return {}, {}
    lo = min(r.start_ns for r in windows.values())
    hi = max(r.end_ns for r in windows.values())
    starts: dict[str, RunStart] = {}
    ends: dict[str, RunEnd] = {}
    for point in store.read(RUN, lo, hi):
        run = windows.get(point.tags.get("run_id", ""))
        if run is None or point.fields.get(EVENT) not in ("start", "end"):
            continue
        if point.time_ns not in (run.start_ns, run.end_ns):
            continue  # an earlier run under the same id
        try:
            event = parse_event(point)
        except InvalidEvent:
            continue  # the run itself is invalid then, and never here
        if isinstance(event, RunStart) and event.sweep:
            starts[run.run_id] = event
        elif isinstance(event, RunEnd):
            ends[run.run_id] = event
    return starts, ends


def sweep_points(store: Store, runs: Sequence[RunScore]) -> list[SweepPoint]:
    """The finished runs among ``runs`` that are sweep points, as :class:`SweepPoint` (those
    without a usable energy too: on no front, never best)
    (``store`` is read once, for the runs' events), in the order of ``runs``."""
    starts, ends = _events(store, runs)
    out = []
    for r in runs:
        start, end = starts.get(r.run_id), ends.get(r.run_id)
        if start is None or end is None:
            continue
        out.append(SweepPoint(
            start.sweep or "", r.run_id, r.host, r.model, r.backend, start.precision or "fp32",
            start.jit or "", r.batch_size, r.uwh_per_inference, r.images_per_s,
            end.latency_p99_s,
        ))  # fmt: skip
    return out


def at_best_points(runs: Sequence[RunScore], points: Iterable[SweepPoint]) -> list[RunScore]:
    """``runs`` for a ranking at each model's best point on each machine: where a model was
    swept on a machine, only the run of its best point there; every other run as it is."""
    best = {(s.host, s.model): s.best.run_id for s in sweeps(points) if s.best is not None}
    return [r for r in runs if best.get((r.host, r.model), r.run_id) == r.run_id]


def ranked_at_best(store: Store, runs: Sequence[RunScore]) -> tuple[list[RunScore], dict]:
    """``runs`` for a ranking at best points (:func:`at_best_points`), and which run that is
    for each swept model: ``{host: {model: run_id}}``."""
    points = sweep_points(store, runs)
    chosen: dict[str, dict[str, str]] = defaultdict(dict)
    for s in sweeps(points):
        if s.best is not None:
            chosen[s.host][s.model] = s.best.run_id
    return at_best_points(runs, points), dict(chosen)
