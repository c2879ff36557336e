"""Confidence in a figure measured over several passes: a 95% Student-t interval.

The passes of one model at one operating point on one machine (:func:`group_key`: host,
model, dataset, backend, precision, jit, batch size) are repeated measurements of the same
thing; their energy per inference and composite score get the interval
``mean ± t(0.975, n-1) · s / sqrt(n)`` (``s`` the sample standard deviation of the ``n``
passes; scipy's Student-t quantile). It says where the true mean lies given the spread the
passes showed; with two or three passes it is wide, as it should be. A group of one pass has
no interval and says so (:attr:`Interval.single`).

The composite score's interval is *derived* from that of energy per inference
(:func:`composite_interval`), not computed over per-pass composites: the group's composite is
``a**2 / mean energy`` (``a`` the passes' mean accuracy: the entry's, in :mod:`scoring.rankings`),
and ``a**2 / e`` falls as ``e`` rises, so its interval is ``[a**2 / high, a**2 / low]``, centred
where the entry's composite is. The passes of one operating point classify the same images
with the same weights, so their accuracy is the same and the energy is what varies; where it
does differ (random weights, nondeterministic kernels), that spread is not in the interval. An
energy interval that reaches 0 (a wide spread over few passes) leaves the composite unbounded
above: ``high`` is infinity (``null`` in JSON, left out of score points).

:func:`annotate` gives each finished run the interval of its group (``passes``,
``uwh_ci_low``/``uwh_ci_high``, ``composite_ci_low``/``composite_ci_high``: figures of
:mod:`scoring.figures`), so that ``scoring runs``, the report, ``--json`` and the score points
all show the same numbers. The scoring service annotates a run as it scores it, over the passes
of its group scored so far: the latest pass of a group carries the interval over all of them.

Two entries of a ranking are *distinguishable* when their intervals do not overlap
(:func:`distinguishable`); the ranking marks neighbours that are not, and those with one pass.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scipy import stats

from scoring.scores import composite

if TYPE_CHECKING:
    from scoring.runs import RunScore

LEVEL = 0.95  # the intervals' confidence


@dataclass(frozen=True)
class Interval:
    """The mean of ``passes`` values and its 95% interval (None for a single pass)."""

    mean: float
    low: float | None
    high: float | None
    passes: int

    @property
    def single(self) -> bool:
        """One pass: no spread, so no interval."""
        return self.low is None or self.high is None

    @property
    def half_width_share(self) -> float | None:
        """Half the interval's width over the mean (None for a single pass or a zero mean)."""
        if self.single or not self.mean:
            return None
        return (self.high - self.low) / 2 / abs(self.mean)

    def overlaps(self, other: Interval) -> bool | None:
        """Whether the two share a value: two intervals that overlap, or a single pass inside
        the other's interval (True); two intervals apart (False); None where that cannot be
        told (two single passes, or a single pass outside the other's interval)."""
        if self.single and other.single:
            return None
        if self.single or other.single:
            point, band = (self, other) if self.single else (other, self)
            return True if band.low <= point.mean <= band.high else None
        return self.low <= other.high and other.low <= self.high


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The Student-t interval of the mean of ``values`` (at least one, all finite)."""
    if not values:
        raise ValueError("an interval needs at least one value")
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return Interval(mean, None, None, n)
    half = stats.t.ppf((1 + level) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def distinguishable(a: Interval | None, b: Interval | None) -> bool | None:
    """Whether two entries' intervals keep them apart: False where they overlap, None where
    either has a single pass (or none), True where they do not overlap."""
    if a is None or b is None:
        return None
    overlap = a.overlaps(b)
    return None if overlap is None else not overlap


def group_key(run: RunScore) -> tuple:
    """The operating point a run's passes share: host, model, dataset, backend, precision,
    jit and batch size."""
    return (run.host, run.model, run.dataset, run.backend, run.precision, run.jit,
            run.batch_size)  # fmt: skip


def groups(runs: Iterable[RunScore]) -> dict[tuple, list[RunScore]]:
    """The finished runs with an energy per inference, by :func:`group_key`."""
    out: dict[tuple, list[RunScore]] = defaultdict(list)
    for r in runs:
        if r.status == "finished" and r.uwh_per_inference is not None:
            out[group_key(r)].append(r)
    return out


def composite_interval(accuracy: float, uwh: Interval) -> Interval:
    """The composite score's interval at ``accuracy`` from the interval ``uwh`` of energy per
    inference (module docstring): ``[composite(high), composite(low)]`` around
    ``composite(accuracy, uwh.mean)``; ``high`` infinite where ``uwh.low`` is not above 0."""
    centre = composite(accuracy, uwh.mean)
    if uwh.single:
        return Interval(centre, None, None, uwh.passes)
    high = composite(accuracy, uwh.low) if uwh.low > 0 else math.inf
    return Interval(centre, composite(accuracy, uwh.high), high, uwh.passes)


def group_intervals(members: Sequence[RunScore]) -> tuple[Interval, Interval | None]:
    """The intervals of energy per inference over ``members`` and of the composite score
    derived from it at their mean accuracy (None where a member has no accuracy)."""
    uwh = interval([r.uwh_per_inference for r in members])
    accuracies = [r.top1 for r in members]
    if any(a is None for a in accuracies):
        return uwh, None
    return uwh, composite_interval(statistics.fmean(accuracies), uwh)


def annotate(runs: Sequence[RunScore], only: Iterable[RunScore] | None = None) -> None:
    """Give each finished run of ``only`` (default: all of ``runs``) its group's intervals
    over the passes among ``runs``."""
    by_group = groups(runs)
    for run in runs if only is None else only:
        members = by_group.get(group_key(run))
        if not members or not any(m is run for m in members):
            continue
        uwh, composite = group_intervals(members)
        run.passes = uwh.passes
        run.uwh_ci_low, run.uwh_ci_high = uwh.low, uwh.high
        if composite is not None:
            run.composite_ci_low, run.composite_ci_high = composite.low, composite.high


def describe(value: Interval | None, fmt: str = ".4g") -> str:
    """``[low, high] (n passes)``, or ``one pass: no interval``."""
    if value is None:
        return ""
    if value.single:
        return "one pass: no interval"
    return f"[{value.low:{fmt}}, {value.high:{fmt}}] ({value.passes} passes)"
