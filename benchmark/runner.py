"""The inference runner: a model over a dataset, each pass one tagged energy window.

Order of a benchmark: build the model and open the dataset; make sure this host is sampled
(:class:`~benchmark.sampling.Sampler`); measure an idle baseline if asked; run warm-up batches
outside any window (tracing, allocation, caches); then for each repeat write a ``start`` event,
run every batch through the compiled predict function, and write an ``end`` event with the
results. An exception or Ctrl-C during a pass writes a ``fail`` event with the reason and no
``end``. Each edge of a window (a pass, the idle baseline) is an edge reading
(:meth:`~benchmark.sampling.Sampler.mark`): the counters read at that instant and stored as
samples, whose instant the event carries, so that nothing at the edges is interpolated.
Afterwards the energy of each window comes from the same store query as every score.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmark.manifest import pass_environment
from benchmark.records import RunEnd, RunFail, RunStart, RunTags, ids_in_use, write_event
from benchmark.sampling import Sampler
from benchmark.steadiness import BatchTimer, CpuClock, check_cooldown, cool_down, window_watts
from exporters import clock
from exporters.errors import StoreError, UsageError, shown
from exporters.stores.base import Store
from exporters.times import format_time
from exporters.window import WindowEnergy, window_energy
from scoring.runs import RunScore

log = logging.getLogger(__name__)

MIN_SAMPLES = 20


@dataclass(frozen=True)
class RunOptions:
    model: str
    data: str = "auto"
    batch_size: int = 32
    limit: int | None = None
    repeats: int = 1
    weights: str = "auto"
    idle_s: float = 0.0
    run_id: str | None = None
    warmup_batches: int = 2
    progress: bool = True
    min_duration_s: float = 0.0  # pass over the data again until the window is this long
    # the operating point (issue 14): the engine that runs the graph, its precision, jit
    backend: str = "tensorflow"
    precision: str = "fp32"
    jit: str = "auto"
    cooldown_s: float = 0.0  # wait at most this long before each pass for power at idle
    sweep: str | None = None  # the sweep this benchmark is a point of
    campaign: str | None = None  # the campaign (issue 15) and its point's key
    campaign_point: str | None = None


@dataclass
class RunResult(RunScore):
    """One pass as scoring sees it (a :class:`~scoring.runs.RunScore`: its window, what it
    computed, its energy and every figure), with its window's energy per domain and the
    benchmark's notes."""

    energy: WindowEnergy | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """What ``python -m benchmark run`` prints; energy, energy per inference and the
        composite score are the run's figures (:mod:`scoring.figures`)."""
        measured = self.energy_j is not None
        return {
            "run_id": self.run_id,
            "model": self.model,
            "dataset": self.dataset,
            "backend": self.backend,
            "weights": self.weights,
            "batch_size": self.batch_size,
            "start": format_time(self.start_ns),
            "end": format_time(self.end_ns),
            "images": self.inferences,
            "seconds": self.duration_s,
            "images_per_s": self.images_per_s,
            "top1": self.top1,
            "top5": self.top5,
            "accuracy_source": self.accuracy_source,
            "joules": self.energy_j,
            "uwh_per_inference": self.uwh_per_inference,
            "composite": self.composite,
            "estimated": self.estimated if measured else None,
            "coverage": self.coverage,
            "idle_watts": self.idle_w,
            "net_joules": self.net_energy_j,
            "notes": self.notes,
        }


def default_run_id(model: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{model}-{stamp}-{secrets.token_hex(2)}"


def run_ids(base: str, repeats: int) -> list[str]:
    """The run ids of a benchmark's passes: ``base`` for one pass, ``base.1``, ``base.2``, ...
    for several."""
    return [base] if repeats == 1 else [f"{base}.{i}" for i in range(1, repeats + 1)]


def claim_run_id(
    store: Store, wanted: str | None, model: str, repeats: int, replace: bool = False
) -> str:
    """The base run id of a benchmark of ``model``.

    ``wanted`` (``--run-id``): refused with :class:`UsageError` where one of its passes' ids
    already has events in the store, unless ``replace``: the older events then stay, and scoring
    takes the newest run under the id. None: a new default id, none of whose ids is in use. A
    store that cannot be read is logged and not checked."""
    try:
        if wanted is None:
            base = default_run_id(model)
            while ids_in_use(store, run_ids(base, repeats)):
                base = default_run_id(model)
            return base
        used = [] if replace else ids_in_use(store, run_ids(wanted, repeats))
    except StoreError as e:
        log.warning("could not check whether the run id is in use (%s): going on", e)
        return wanted or default_run_id(model)
    if used:
        raise UsageError(
            f"--run-id {shown(wanted)} is in use: {shown(used[0])} already has run events in "
            f"{store.url}; give another --run-id, or add --replace to run it again (the older "
            "events stay, scoring takes the newest)"
        )
    return wanted


class _Accuracy:
    def __init__(self) -> None:
        self.n = self.top1 = self.top5 = 0

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        k = min(5, scores.shape[1])
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        self.top1 += int((scores.argmax(axis=1) == labels).sum())
        self.top5 += int((best == labels[:, None]).any(axis=1).sum())
        self.n += len(labels)


def _reason(e: BaseException) -> str:
    """One line: the exception's type and message (TensorFlow keeps it in ``.message``)."""
    text = getattr(e, "message", None) or str(e)
    return f"{type(e).__name__}: {' '.join(text.split())}"


def _batches(ds, backend: str):
    return ds.as_numpy_iterator() if backend != "tensorflow" else iter(ds)


@dataclass
class Prepared:
    """What a benchmark needs before any window opens: all bad input is found here."""

    spec: Any
    dataset: Any
    model: Any
    weights: str
    backend: str
    notes: list[str]
    engine: Any = None  # benchmark.engines.Engine: what predicts, at which precision and jit


def data_source(data: str, spec: Any) -> str:
    """What ``--data`` names for ``spec``: ``auto`` is the digits set for ``digits_cnn``,
    synthetic images otherwise."""
    if data != "auto":
        return data
    return "digits" if spec.family == "digits" else "synthetic"


def prepare(opts: RunOptions) -> Prepared:
    """Check the operating point, resolve the model, open the dataset and build the model
    with its weights on its engine (:mod:`benchmark.engines`)."""
    from benchmark import engines
    from benchmark.datasets import open_dataset
    from benchmark.registry import get_spec

    why = engines.check_point(opts.backend, opts.precision, opts.jit)
    if why:
        raise UsageError(why)
    engines.use_backend(opts.backend)  # before Keras is first imported
    spec = get_spec(opts.model)
    why = engines.check_model(spec, opts.backend)
    if why:
        raise UsageError(why)
    pipeline = engines.pipeline_for(opts.backend)
    dataset = open_dataset(data_source(opts.data, spec), spec, opts.limit, pipeline=pipeline)
    engine, weights = engines.load(spec, opts.weights, opts.backend, opts.precision, opts.jit)
    notes = list(engine.notes)
    if weights == "random" and dataset.labeled:
        notes.append("random weights: measured accuracy is meaningless, energy is real")
    if not dataset.labeled:
        notes.append(f"{dataset.name} has no labels: accuracy is the published figure")
    if getattr(dataset, "complete", True) is False:
        notes.append(f"partial ILSVRC2012 validation set: {dataset.size} of 50,000 images")
    return Prepared(spec, dataset, engine.model, weights, engine.backend, notes, engine)


@dataclass
class _Bench:
    """A benchmark under way: what each of its passes needs."""

    opts: RunOptions
    store: Store
    sampler: Sampler
    prepared: Prepared
    base_id: str
    batches: Any  # the dataset in batches of opts.batch_size
    idle_watts: float | None
    warmup_end_ns: int
    notes: list[str]  # shared by every pass's result


def run_benchmark(
    opts: RunOptions, store: Store, sampler: Sampler, prepared: Prepared | None = None
) -> list[RunResult]:
    """Run ``opts.repeats`` measured passes; returns one result per pass, energy included."""
    check_cooldown(opts.cooldown_s, opts.idle_s)
    p = prepared or prepare(opts)
    batches = p.dataset.batches(opts.batch_size)
    idle_watts = _idle_watts(opts.idle_s, store, sampler)
    warmup_end_ns = _warm_up(p, batches, opts.warmup_batches)
    bench = _Bench(opts, store, sampler, p, opts.run_id or default_run_id(p.spec.name), batches,
                   idle_watts, warmup_end_ns, list(p.notes))  # fmt: skip
    results = [_measured_pass(bench, repeat) for repeat in range(1, opts.repeats + 1)]
    _note_short_windows(results, sampler, bench.notes)
    store.flush()
    sampler.wait_past(results[-1].end_ns)
    for r in results:
        r.energy = window_energy(store, r.start_ns, r.end_ns, host=sampler.host)
        r.set_energy(r.energy)
    return results


def _idle_watts(idle_s: float, store: Store, sampler: Sampler) -> float | None:
    """The host's power over ``idle_s`` seconds of doing nothing (None for no baseline)."""
    return window_watts(sampler, idle_s) if idle_s > 0 else None


def _warm_up(p: Prepared, batches: Any, count: int) -> int:
    """Run ``count`` batches outside any window (tracing, allocation, caches); returns when
    the warm-up ended."""
    for x, _ in _batches(batches.take(count), p.backend):
        p.engine.predict(x)
    return clock.wall_ns()


def _measured_pass(bench: _Bench, repeat: int) -> RunResult:
    """One window: a ``start`` event, every batch (again until ``min_duration_s``), then an
    ``end`` event with the results, or a ``fail`` event with the reason if anything breaks."""
    opts, store, p = bench.opts, bench.store, bench.prepared
    run_id = run_ids(bench.base_id, opts.repeats)[repeat - 1]
    tags = RunTags(run_id, p.spec.name, p.backend, p.dataset.name, bench.sampler.host)
    start = RunStart(repeat=repeat, repeats=opts.repeats, warmup_batches=opts.warmup_batches,
                     warmup_end=format_time(bench.warmup_end_ns),
                     sweep=opts.sweep, campaign=opts.campaign, campaign_point=opts.campaign_point,
                     slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                     slurm_array_task_id=os.environ.get("SLURM_ARRAY_TASK_ID"),
                     precision=p.engine.precision, jit=p.engine.jit,
                     **pass_environment(bench.sampler, p.backend, spec=p.spec))  # fmt: skip
    start = replace(start, **_cool_down(bench))  # --cooldown: power back near idle first
    bar = tqdm(total=p.dataset.size, unit="img", disable=not opts.progress, desc=run_id,
               leave=False)  # fmt: skip
    start_ns = write_event(store, tags, start, bench.sampler.mark()[0])  # the edge's instant
    timer, cpu = BatchTimer(), CpuClock()
    timer.start(clock.monotonic_at(start_ns))  # the series spans the window, edge to edge
    cpu.start()
    try:
        accuracy = _predict_all(bench, bar, timer)
    except BaseException as e:
        reason = "interrupted (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else _reason(e)
        write_event(store, tags, RunFail(reason=reason[:1000]))
        store.flush()
        raise
    finally:
        bar.close()
    end_ns, _ = bench.sampler.mark()
    timer.finish(clock.monotonic_at(end_ns))
    end = _end_event(bench, accuracy, repeat, (end_ns - start_ns) / 1e9)
    end = replace(end, **timer.fields(), other_cpu_s=cpu.other_s())
    try:
        end = replace(end, **_idle_after(bench, repeat))
    finally:  # interrupted while measuring idle, the pass still ends
        write_event(store, tags, end, end_ns)
    result = RunResult.started(tags, start_ns, notes=bench.notes)
    result.finish(end, end_ns)
    return result


def _predict_all(bench: _Bench, bar: tqdm, timer: BatchTimer) -> _Accuracy:
    """Every batch through the model, over the data again until the pass has lasted
    ``min_duration_s``, each timed by ``timer``; the progress bar shows the images and the
    host's watts."""
    p, sampler = bench.prepared, bench.sampler
    accuracy = _Accuracy()
    deadline = time.monotonic() + bench.opts.min_duration_s
    while True:
        for x, y in _batches(bench.batches, p.backend):
            scores = np.asarray(p.engine.predict(x))
            timer.batch(len(scores))
            accuracy.add(scores, np.asarray(y))
            bar.update(len(scores))
            watts = sampler.watts()
            if watts is not None:
                bar.set_postfix(watts=f"{watts:.1f}", refresh=False)
        if time.monotonic() >= deadline:
            return accuracy
        bar.total += p.dataset.size


def _cool_down(bench: _Bench) -> dict[str, float | int]:
    """``--cooldown``: wait for the host's power back near the idle baseline; what the pass's
    ``start`` event says of the wait (nothing without a cool-down)."""
    if bench.opts.cooldown_s <= 0 or not bench.idle_watts:  # no baseline to wait for
        return {}
    cooled = cool_down(bench.sampler, bench.idle_watts, bench.opts.cooldown_s)
    return {"cooldown_s": round(cooled.waited_s, 3), "cooldown_reached": int(cooled.reached)}


def _idle_after(bench: _Bench, repeat: int) -> dict[str, float]:
    """After the last pass, with ``--idle``: the idle baseline measured again (after the
    cool-down, with ``--cooldown``), for the last pass's ``end`` event."""
    if repeat < bench.opts.repeats or bench.idle_watts is None:
        return {}
    _cool_down(bench)
    return {"idle_watts_after": window_watts(bench.sampler, bench.opts.idle_s)}


def _end_event(bench: _Bench, accuracy: _Accuracy, repeat: int, duration_s: float) -> RunEnd:
    """The ``end`` event of a pass: measured accuracy where the dataset has labels, else the
    published figure; everything else its scores need, and what ran."""
    import keras

    from benchmark.macs import count_macs

    opts, p = bench.opts, bench.prepared
    spec, model, measured = p.spec, p.model, p.dataset.labeled
    return RunEnd(
        inferences=accuracy.n,
        top1=accuracy.top1 / accuracy.n if measured else spec.top1,
        top5=accuracy.top5 / accuracy.n if measured else spec.top5,
        accuracy_source="measured" if measured else "published",
        batch_size=opts.batch_size, params=spec.params or model.count_params() or None,
        macs=spec.macs or count_macs(model) or None, weights=p.weights, duration_s=duration_s,
        repeat=repeat, repeats=opts.repeats, published_top1=spec.top1,
        idle_watts=bench.idle_watts, keras=keras.__version__, pid=os.getpid(),
    )  # fmt: skip


def _note_short_windows(results: list[RunResult], sampler: Sampler, notes: list[str]) -> None:
    """Note a window too short for a steady figure: fewer than MIN_SAMPLES power samples."""
    shortest = min(r.duration_s for r in results)
    interval = sampler.config["interval_s"]["power"]
    if shortest < MIN_SAMPLES * interval:
        notes.append(
            f"a window of {shortest:.2f} s spans fewer than {MIN_SAMPLES} power samples: "
            "raise --limit or the batch count for a steadier figure"
        )
