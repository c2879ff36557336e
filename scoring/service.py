"""The scoring service: scores finished runs and writes ``score`` points for the dashboards.

Each pass reads the runs, skips those already scored (a ``score`` point with their ``run_id``
at their end), failed and unfinished ones, and scores the rest. A run whose window is not yet
covered by samples is given ``grace_s`` after its end for the last samples to arrive, then
scored with its coverage and flagged. The ``score`` point is stamped at the run's end, so
scoring a run again (two services, or a restart mid-pass) rewrites the same point in InfluxDB,
and readers keep one score per run in any store. A run id used again (``benchmark run
--replace``) is its latest run: it ends at another time, and is scored anew. An invalid run (its
events break the schema: :mod:`scoring.events`) is never scored: the service logs it, with its
reason, once, and goes on.

Which figures the point carries, and under which names (``accuracy`` for top-1), is each
figure's ``point`` in :data:`scoring.figures.FIGURES`: energy, the scores, and the run's
statistics (:mod:`scoring.stats`; each a float, so that InfluxDB's field types never change),
with ``throttle_reasons`` and ``flags`` as text. Beside them, two compact JSON strings:
``domain_power`` (``{"source:domain": {"avg_w", "peak_w", "counted"}}``) and ``gpu_stats``
(``{"gpu index": {"util_pct", "mem_util_pct", "mem_used_bytes", "mem_used_pct",
"throttled_share", "throttle"}}``). A figure without a value (no GPU, no wall meter) is left
out; so are infinities, which InfluxDB cannot store.

The service rides out a store that cannot be read or written (InfluxDB stopped, or answering
500): it logs one warning when the outage begins and one line when the store is back, and waits
between tries from ``poll_s``, doubling up to ``backoff_max_s``. Nothing is lost: what was not
scored is scored on the first pass that works.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence

from exporters import clock
from exporters.errors import StoreError
from exporters.schema import RUN, SCORE, FieldValue, Point
from exporters.stores.base import Store
from exporters.window import DEFAULT_COUNTED
from scoring.figures import FIGURES
from scoring.runs import RunScore, annotate_groups, runs_from_events, score_runs, warn_invalid

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


def scored_runs(store: Store) -> dict[tuple[str, int], float | None]:
    """The (``run_id``, end) of every run that has a ``score`` point (stamped at its end), and
    the energy the point says."""
    points = store.read(SCORE, 0, 2**62, fields=["energy_j", "flags"])
    return {(p.tags.get("run_id", ""), p.time_ns): p.fields.get("energy_j") for p in points}


def annotate_new(runs: list[RunScore], new: list[RunScore], done: dict) -> None:
    """Give the runs scored now their group's intervals and their rating
    (:func:`~scoring.runs.annotate_groups`) among every run scored so far: those scored
    before take their energy from their score point (``done``: :func:`scored_runs`)."""
    for run in runs:
        if run.status == "finished" and run.energy_j is None:
            energy_j = done.get((run.run_id, run.end_ns))
            run.energy_j = energy_j if isinstance(energy_j, int | float) else None
    annotate_groups(runs, only=new)


def score_pending(
    store: Store,
    now_ns: int | None = None,
    grace_s: float = 10.0,
    counted: Sequence[str] = DEFAULT_COUNTED,
    reported: set[tuple[str, int]] | None = None,
) -> list[RunScore]:
    """One pass: score every finished, unscored run; returns the runs it scored. An invalid
    run is logged once: its (``run_id``, start) is added to ``reported``, and a run already
    there is not logged again."""
    now_ns = clock.wall_ns() if now_ns is None else now_ns
    reported = set() if reported is None else reported
    done = scored_runs(store)
    scored = []
    runs = runs_from_events(store.read(RUN, 0, 2**62))
    unscored = [r for r in runs if r.status == "finished" and (r.run_id, r.end_ns) not in done]
    score_runs(store, unscored, counted)  # a figure that cannot be computed: invalid
    unscored_ids = {id(r) for r in unscored}
    for run in runs:
        pending = id(run) in unscored_ids
        if run.status == "invalid":
            warn_invalid(run, reported)
            continue
        settled = pending and now_ns - run.end_ns > grace_s * 1e9
        if not pending or ((run.coverage or 0) < 1 and not settled):
            continue  # scored already, not finished, or its last samples may be on their way
        scored.append(run)
    annotate_new(runs, scored, done)
    for run in scored:
        store.write([score_point(run)])
        log.info("scored %s (%s): %s", run.run_id, run.model, _describe(run))
    store.flush()
    return scored


def _describe(run: RunScore) -> str:
    if run.uwh_per_inference is None:
        text = "no energy per inference"
    else:
        text = f"{run.uwh_per_inference:.3f} uWh per inference"
    if run.composite is not None:
        text += f", composite {run.composite:.3g}"
    return text + (f" [{'; '.join(run.flags)}]" if run.flags else "")


class ScoringService:
    """Polls the store and scores what finished, until stopped; rides out store outages."""

    def __init__(
        self, store: Store, poll_s: float = 5.0, grace_s: float = 10.0, backoff_max_s: float = 60.0
    ) -> None:
        self.store, self.poll_s, self.grace_s = store, poll_s, grace_s
        self.backoff_max_s = max(backoff_max_s, poll_s)
        self._stop = threading.Event()
        self._reported: set[tuple[str, int]] = set()  # invalid runs logged already

    def stop(self) -> None:
        self._stop.set()

    def run(self, once: bool = False) -> int:
        """Score until stopped (or one pass with ``once``, where a store error is raised);
        returns how many runs it scored."""
        total, failures, outage_since = 0, 0, 0.0
        while True:
            try:
                total += len(score_pending(self.store, grace_s=self.grace_s,
                                           reported=self._reported))  # fmt: skip
            except StoreError as e:
                if once:
                    raise
                if not failures:
                    outage_since = time.monotonic()
                    log.warning("the store cannot be read or written (%s): scoring waits, "
                                "trying again up to every %g s", e, self.backoff_max_s)  # fmt: skip
                failures += 1
            else:
                if failures:
                    log.info("the store answers again after %.0f s; scoring goes on",
                             time.monotonic() - outage_since)  # fmt: skip
                failures = 0
            wait = min(self.poll_s * 2 ** min(max(failures - 1, 0), 30), self.backoff_max_s)
            if once or self._stop.wait(wait):
                return total
