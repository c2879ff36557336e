"""The inference runner: a model over a dataset, each pass one tagged energy window.

Order of a benchmark: build the model and open the dataset; make sure this host is sampled
(:class:`~benchmark.sampling.Sampler`); measure an idle baseline if asked; run warm-up batches
outside any window (tracing, allocation, caches); then for each repeat write a ``start`` event,
run every batch through the compiled predict function, and write an ``end`` event with the
results. An exception or Ctrl-C during a pass writes a ``fail`` event with the reason and no
``end``. Afterwards the energy of each window comes from the same store query as every score.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.records import RunTags, write_event
from benchmark.sampling import Sampler
from exporters import clock
from exporters.stores.base import Store
from exporters.times import format_time
from exporters.window import WindowEnergy, window_energy
from scoring.scores import composite, uwh_per_inference

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


@dataclass
class RunResult:
    """One pass: its window, what it computed, and what it cost."""

    run_id: str
    model: str
    dataset: str
    backend: str
    weights: str
    batch_size: int
    start_ns: int
    end_ns: int
    inferences: int
    top1: float | None
    top5: float | None
    accuracy_source: str
    energy: WindowEnergy | None = None
    idle_watts: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def summary(self) -> dict:
        out = {
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
            "images_per_s": self.inferences / self.duration_s,
            "top1": self.top1,
            "top5": self.top5,
            "accuracy_source": self.accuracy_source,
            "joules": None,
            "uwh_per_inference": None,
            "composite": None,
            "estimated": None,
            "coverage": None,
            "idle_watts": self.idle_watts,
            "net_joules": None,
            "notes": self.notes,
        }
        if self.energy is not None and self.energy.counted and self.energy.coverage > 0:
            joules = self.energy.total_joules
            uwh = uwh_per_inference(joules, self.inferences)
            out.update(
                joules=joules,
                uwh_per_inference=uwh,
                composite=composite(self.top1, uwh) if self.top1 is not None else None,
                estimated=self.energy.estimated,
                coverage=self.energy.coverage,
            )
            if self.idle_watts is not None:
                out["net_joules"] = joules - self.idle_watts * self.duration_s
        return out


def default_run_id(model: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{model}-{stamp}-{secrets.token_hex(2)}"


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


def prepare(opts: RunOptions) -> Prepared:
    """Resolve the model, open the dataset and build the model with its weights."""
    from benchmark.datasets import open_dataset
    from benchmark.models import build_model, get_spec

    spec = get_spec(opts.model)
    data = opts.data
    if data == "auto":
        data = "digits" if spec.family == "digits" else "synthetic"
    dataset = open_dataset(data, spec, opts.limit)
    model, weights = build_model(spec, opts.weights)
    notes = []
    if weights == "random" and dataset.labeled:
        notes.append("random weights: measured accuracy is meaningless, energy is real")
    if not dataset.labeled:
        notes.append(f"{dataset.name} has no labels: accuracy is the published figure")
    if getattr(dataset, "complete", True) is False:
        notes.append(f"partial ILSVRC2012 validation set: {dataset.size} of 50,000 images")
    import keras

    return Prepared(spec, dataset, model, weights, keras.backend.backend(), notes)


def run_benchmark(
    opts: RunOptions, store: Store, sampler: Sampler, prepared: Prepared | None = None
) -> list[RunResult]:
    """Run ``opts.repeats`` measured passes; returns one result per pass, energy included."""
    import keras
    from tqdm import tqdm

    from benchmark.models import count_macs

    p = prepared or prepare(opts)
    spec, dataset, model, weights, backend, notes = (
        p.spec, p.dataset, p.model, p.weights, p.backend, list(p.notes)
    )  # fmt: skip
    base_id = opts.run_id or default_run_id(spec.name)
    ds = dataset.batches(opts.batch_size)

    idle_watts = None
    if opts.idle_s > 0:
        idle_start = clock.wall_ns()
        time.sleep(opts.idle_s)
        idle_end = clock.wall_ns()
        sampler.wait_past(idle_end)
        idle = window_energy(store, idle_start, idle_end, host=sampler.host)
        idle_watts = idle.total_joules / ((idle_end - idle_start) / 1e9)

    for x, _ in _batches(ds.take(opts.warmup_batches), backend):
        model.predict_on_batch(x)
    warmup_end_ns = clock.wall_ns()

    results = []
    for repeat in range(1, opts.repeats + 1):
        run_id = base_id if opts.repeats == 1 else f"{base_id}.{repeat}"
        tags = RunTags(run_id, spec.name, backend, dataset.name, sampler.host)
        accuracy = _Accuracy()
        bar = tqdm(
            total=dataset.size, unit="img", disable=not opts.progress, desc=run_id, leave=False
        )
        start_ns = write_event(
            store, tags, "start", repeat=repeat, repeats=opts.repeats,
            warmup_batches=opts.warmup_batches, warmup_end=format_time(warmup_end_ns),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + opts.min_duration_s
            while True:
                for x, y in _batches(ds, backend):
                    scores = np.asarray(model.predict_on_batch(x))
                    accuracy.add(scores, np.asarray(y))
                    bar.update(len(scores))
                    watts = sampler.watts()
                    if watts is not None:
                        bar.set_postfix(watts=f"{watts:.1f}", refresh=False)
                if time.monotonic() >= deadline:
                    break
                bar.total += dataset.size
        except BaseException as e:
            reason = "interrupted (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else _reason(e)
            write_event(store, tags, "fail", reason=reason[:1000])
            store.flush()
            raise
        finally:
            bar.close()
        end_ns = clock.wall_ns()
        measured = dataset.labeled
        top1 = accuracy.top1 / accuracy.n if measured else spec.top1
        top5 = accuracy.top5 / accuracy.n if measured else spec.top5
        write_event(
            store, tags, "end", end_ns,
            inferences=accuracy.n, top1=top1, top5=top5,
            accuracy_source="measured" if measured else "published",
            batch_size=opts.batch_size, params=spec.params or model.count_params(),
            macs=spec.macs or count_macs(model), weights=weights,
            duration_s=(end_ns - start_ns) / 1e9,
            repeat=repeat, repeats=opts.repeats, published_top1=spec.top1,
            idle_watts=idle_watts, keras=keras.__version__, pid=os.getpid(),
        )  # fmt: skip
        results.append(
            RunResult(
                run_id,
                spec.name,
                dataset.name,
                backend,
                weights,
                opts.batch_size,
                start_ns,
                end_ns,
                accuracy.n,
                top1,
                top5,
                "measured" if measured else "published",
                idle_watts=idle_watts,
                notes=notes,
            )
        )
    shortest = min(r.duration_s for r in results)
    interval = sampler.config["interval_s"]["power"]
    if shortest < MIN_SAMPLES * interval:
        notes.append(
            f"a window of {shortest:.2f} s spans fewer than {MIN_SAMPLES} power samples: "
            "raise --limit or the batch count for a steadier figure"
        )
    store.flush()
    sampler.wait_past(results[-1].end_ns)
    for r in results:
        r.energy = window_energy(store, r.start_ns, r.end_ns, host=sampler.host)
    return results
