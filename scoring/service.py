"""The scoring service: scores finished runs and writes ``score`` points for the dashboards.

Each pass reads the runs, skips those already scored (a ``score`` point with their ``run_id``),
failed and unfinished ones, and scores the rest. A run whose window is not yet covered by
samples is given ``grace_s`` after its end for the last samples to arrive, then scored with its
coverage and flagged. The ``score`` point is stamped at the run's end, so scoring a run again
(two services, or a restart mid-pass) rewrites the same point in InfluxDB, and readers keep one
score per run in any store.

Which figures the point carries, and under which names (``accuracy`` for top-1), is each
figure's ``point`` in :data:`scoring.figures.FIGURES`: energy, the scores, and the run's
statistics (:mod:`scoring.stats`; each a float, so that InfluxDB's field types never change),
with ``throttle_reasons`` and ``flags`` as text. Beside them, two compact JSON strings:
``domain_power`` (``{"source:domain": {"avg_w", "peak_w", "counted"}}``) and ``gpu_stats``
(``{"gpu index": {"util_pct", "mem_util_pct", "mem_used_bytes", "mem_used_pct",
"throttled_share", "throttle"}}``). A figure without a value (no GPU, no wall meter) is left
out; so are infinities (a zero-energy composite), which InfluxDB cannot store.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence

from exporters import clock
from exporters.schema import RUN, SCORE, FieldValue, Point
from exporters.stores.base import Store
from exporters.window import DEFAULT_COUNTED
from scoring.figures import FIGURES
from scoring.runs import RunScore, runs_from_events, score_run

log = logging.getLogger(__name__)


def score_point(run: RunScore) -> Point:
    """The ``score`` point of a scored run: every figure that :data:`~scoring.figures.FIGURES`
    gives a point field, and the JSON of its domains' power and its GPUs (fields without a
    value, and infinities, are left out)."""
    fields: dict[str, FieldValue | None] = {
        f.point_field: f.shown(run) for f in FIGURES if f.point_field is not None
    }
    if run.stats is not None and run.stats.power:
        fields["domain_power"] = run.stats.domain_power_json()
    if run.stats is not None and run.stats.gpus:
        fields["gpu_stats"] = run.stats.gpu_stats_json()
    tags = {"run_id": run.run_id, "model": run.model, "host": run.host}
    values = {
        k: v
        for k, v in fields.items()
        if v is not None and not (isinstance(v, float) and not math.isfinite(v))
    }
    return Point(SCORE, tags, values, run.end_ns or run.start_ns)


def scored_ids(store: Store) -> set[str]:
    return {
        p.tags.get("run_id", "") for p in store.read(SCORE, 0, 2**62, fields=["energy_j", "flags"])
    }


def score_pending(
    store: Store,
    now_ns: int | None = None,
    grace_s: float = 10.0,
    counted: Sequence[str] = DEFAULT_COUNTED,
) -> list[RunScore]:
    """One pass: score every finished, unscored run; returns the runs it scored."""
    now_ns = clock.wall_ns() if now_ns is None else now_ns
    done = scored_ids(store)
    scored = []
    for run in runs_from_events(store.read(RUN, 0, 2**62)):
        if run.status != "finished" or run.run_id in done or run.end_ns is None:
            continue
        score_run(store, run, counted)
        settled = now_ns - run.end_ns > grace_s * 1e9
        if (run.coverage or 0) < 1 and not settled:
            continue  # the last samples may still be on their way
        store.write([score_point(run)])
        scored.append(run)
        log.info("scored %s (%s): %s", run.run_id, run.model, _describe(run))
    store.flush()
    return scored


def _describe(run: RunScore) -> str:
    if run.uwh_per_inference is None:
        return "no energy in its window"
    text = f"{run.uwh_per_inference:.3f} uWh per inference"
    if run.composite is not None:
        text += f", composite {run.composite:.3g}"
    return text + (f" [{'; '.join(run.flags)}]" if run.flags else "")


class ScoringService:
    """Polls the store and scores what finished, until stopped."""

    def __init__(self, store: Store, poll_s: float = 5.0, grace_s: float = 10.0) -> None:
        self.store, self.poll_s, self.grace_s = store, poll_s, grace_s
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self, once: bool = False) -> int:
        """Score until stopped (or one pass with ``once``); returns how many runs it scored."""
        total = 0
        while True:
            total += len(score_pending(self.store, grace_s=self.grace_s))
            if once or self._stop.wait(self.poll_s):
                return total
