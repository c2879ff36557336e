"""The statistics of perf/inference_slowdown.py: a slowdown from paired blocks, and one from
the batches during which a thread ran, each with a 95% bootstrap interval over rounds.

A :class:`Block` is one arm's timed batches in one round: each batch's wall time (back to back:
the loop between batches is in the next one) and the CPU time the watched threads (the agent's,
or a burner's) ran meanwhile.

- :func:`paired`: the median over rounds of a block's time per batch against the same round's
  ``off`` block, less one. It sees every way the agent can slow the inference, but not finer
  than the machine's own drift between blocks: on a 2-vCPU VM a pair of 0.4 s blocks differs by
  about 11% (s.d.) with nothing else running, as much as pairs of 25 ms.
- :func:`per_wake_up`: how much longer a batch takes for each second of CPU the watched
  threads ran during it: the slope ``k`` of each batch's time on that CPU time, both as
  differences from the batch before (the machine's drift cancels between neighbours, 10 ms
  apart), times the threads' CPU share. A longer batch holds more of the threads' periodic
  wake-ups whatever they cost, so only the CPU beyond its share of the batch's time counts.
  It sees only what lands in the batches during which the threads ran (preemption, the GIL),
  and it needs batches short against the agent's cadence (at 0.1 s, 10 to 20 ms: some hold a
  wake-up, their neighbours none); there it resolves tenths of a percent in a minute, within
  about 10% of ``k`` on simulated batches with a known cost (longer ones: no use).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RESAMPLES = 4000


@dataclass
class Block:
    """One block's batches: wall seconds each, and the watched threads' CPU seconds during each."""

    durations: np.ndarray
    cpu: np.ndarray
    threads_cpu_s: float | None = None  # every watched thread over the block (``cpu``: two)

    @property
    def per_batch(self) -> float:
        return float(self.durations.mean())

    @property
    def dose_s(self) -> float:
        """The watched threads' CPU seconds a batch (all of them, where read per block)."""
        total = float(self.cpu.sum()) if self.threads_cpu_s is None else self.threads_cpu_s
        return total / len(self.durations)


def bootstrap(stat: Callable[[np.ndarray], float], rounds: int, seed: int = 0) -> list[float]:
    """95% percentile interval of ``stat(rounds picked)`` over resamples of the rounds."""
    rng = np.random.default_rng(seed)
    return percentiles(np.array([stat(rng.integers(0, rounds, rounds)) for _ in range(RESAMPLES)]))


def paired(arm: list[Block], off: list[Block]) -> dict:
    """The slowdown of ``arm`` against ``off``, block by block of the same round: the median of
    the ratios less one, in percent, its interval; the ratio of the means, for comparison."""
    times = np.array([b.per_batch for b in arm])
    base = np.array([b.per_batch for b in off])
    ratios = 100 * (times / base - 1)
    return {
        "slowdown_pct": float(np.median(ratios)),
        "ci95_pct": bootstrap(lambda picks: float(np.median(ratios[picks])), len(ratios)),
        "ratio_of_means_pct": 100 * (float(times.mean() / base.mean()) - 1),
        "per_round_pct": [round(float(v), 3) for v in ratios],
    }


def per_wake_up(arm: list[Block]) -> dict | None:
    """The slowdown from the batches the watched threads ran during (see the module docstring):
    ``k``, their CPU as % of one core, and the slowdown, ``k`` times their CPU time over the
    wall time less that, in percent, with its interval. None where no two batches of a block
    differ in that CPU (blocks of one batch)."""
    sums = np.array([_sums(b) for b in arm])  # per block: S(dt dc), S(dt dt), S(dc dc), C, T
    if not sums[:, 2].sum():
        return None

    def estimate(picks: np.ndarray) -> tuple[float, float, float]:
        tc, tt, cc, cpu, wall = sums[picks].sum(axis=0)
        share = cpu / wall
        # The CPU a batch holds grows with its length (a longer batch takes in more of the
        # threads' periodic wake-ups) whatever it costs: only its part beyond that, share
        # times the batch's time, measures the cost.
        beyond = cc - share * tc
        k = (tc - share * tt) / beyond if beyond > 0 else 0.0
        return 100 * k * cpu / (wall - k * cpu), k, 100 * share

    slowdown, k, share = estimate(np.arange(len(arm)))
    return {
        "slowdown_pct": slowdown,
        "ci95_pct": bootstrap(lambda picks: estimate(picks)[0], len(arm)),
        "k": k,
        "threads_core_pct": share,
        "batches": int(sum(len(b.durations) for b in arm)),
    }


def dose_response(doses: dict[str, list[Block]], off: list[Block], at: str) -> dict:
    """The slowdown of arm ``at`` from several arms of the same kind at larger doses of it:
    ``k``, the seconds a batch takes longer for each second the watched threads ran during it,
    fitted through the origin (least squares) over every block of ``doses`` against its
    round's ``off`` block: ``time a batch - off's = k * threads' CPU a batch``. The slowdown of
    ``at`` is ``k`` times its threads' CPU a batch over the ``off`` arm's median time a batch,
    with a 95% bootstrap interval over rounds. Many agents cost many times what one does, so a
    slowdown too small to see beside the machine's drift is the slope of ones that are not
    (linearity is checked, not assumed: each arm's own slowdown and dose are given, in % of the
    ``off`` arm's time a batch)."""
    base = float(np.median([b.per_batch for b in off]))
    names = list(doses)
    x = np.array([[b.dose_s for b in doses[a]] for a in names])  # arms x rounds, seconds
    y = np.array([[b.per_batch - o.per_batch for b, o in zip(doses[a], off)] for a in names])
    at_dose = 100 * x[names.index(at)] / base
    # per round, then summed over the rounds a resample picks (every resample at once)
    sxy, sxx = (x * y).sum(axis=0), (x * x).sum(axis=0)
    picks = np.random.default_rng(0).integers(0, x.shape[1], (RESAMPLES, x.shape[1]))
    k_all = sxy[picks].sum(axis=1) / sxx[picks].sum(axis=1)
    slowdown_all = k_all * at_dose[picks].mean(axis=1)
    k = float(sxy.sum() / sxx.sum())
    return {
        "slowdown_pct": k * float(at_dose.mean()),
        "ci95_pct": percentiles(slowdown_all),
        "k": k,
        "k_ci95": percentiles(k_all),
        "doses": {
            a: {
                "dose_pct": 100 * float(x[i].mean()) / base,
                "slowdown_pct": 100 * float(y[i].mean()) / base,
                "ci95_pct": percentiles(100 * y[i][picks].mean(axis=1) / base),
            }
            for i, a in enumerate(names)
        },
    }


def percentiles(values: np.ndarray) -> list[float]:
    """The 95% percentile interval of bootstrap ``values``."""
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _sums(block: Block) -> list[float]:
    dt, dc = np.diff(block.durations), np.diff(block.cpu)
    return [dt @ dc, dt @ dt, dc @ dc, block.cpu.sum(), block.durations.sum()]
