"""A rating anyone can read: five classes, A (frugal) to E (hungry), of energy per inference
against reference models measured on the same machine.

Energy per inference depends on the machine as much as on the model: an A100 and a laptop
differ by an order of magnitude on the same network, so an absolute scale rates machines, not
models (Hugging Face's AI Energy Score avoids this by rating on one GPU type only). tubai rates a
model against *reference models measured on the same machine, at the same operating point*
(backend, precision, jit, batch size) and for the same task: the ratio of its energy per
inference to the geometric mean of the references' (each reference: the mean over its
passes). The machine's speed cancels out of the ratio, so ratings from different machines
compare.

**References** (:data:`REFERENCES`), per task (:func:`task_of`: the model's task as the
benchmark recorded it with the run, from the model's registry family):

- ImageNet classification (synthetic ImageNet-sized images or ILSVRC2012): ``mobilenetv3_large``,
  ``efficientnetv2_s`` and ``nasnet_large``, three of the reference paper's eight models
  (Waltsburger et al., ISCAS 2023, Table I), chosen to span its range: 0.7, 6.3 and 15 Wh over
  the validation set on its A100, the small, the middle and the large end. All three must have
  been measured for a rating: a geometric mean over whichever happened to be measured would move
  the scale from machine to machine.
- Digits (models of the ``digits`` family, on the offline digits set or synthetic 8x8
  images): ``digits_cnn``, the only model of that task.

**Bands** (:data:`EDGES`): log-spaced, a factor of :data:`BAND_FACTOR` (3) each, centred on the
references: C is within a factor sqrt(3) (0.58x to 1.73x) of them, B and D the next factor 3
either side (0.19x to 0.58x, 1.73x to 5.2x), A and E beyond. Energy per inference is a ratio
scale spanning orders of magnitude, so equal *ratios*, not equal differences, make classes
that mean the same at every size; with factor 3 the five classes span 3^5 = 243x, the spread
of ImageNet models from MobileNets to the largest EfficientNets (the paper's eight span 53x on
one GPU, and on its A100 they fall into all five classes: ``tests/test_rating.py``).

:func:`annotate` gives each finished run its ``rating`` and ``rating_ratio`` (figures of
:mod:`scoring.figures`); a run without all references measured beside it has none, and
:func:`missing_references` says which to run.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scoring.runs import RunScore

IMAGENET, DIGITS = "imagenet classification", "digits classification"
REFERENCES: dict[str, tuple[str, ...]] = {
    IMAGENET: ("mobilenetv3_large", "efficientnetv2_s", "nasnet_large"),
    DIGITS: ("digits_cnn",),
}
CLASSES = "ABCDE"
BAND_FACTOR = 3.0
# the upper edges of A, B, C and D as ratios to the references: 3^-1.5, 3^-0.5, 3^0.5, 3^1.5
EDGES: tuple[float, ...] = tuple(BAND_FACTOR ** (k - 1.5) for k in range(len(CLASSES) - 1))


def task_of(run: RunScore) -> str:
    """The task a run's model performs: the manifest's ``task``, which the benchmark records
    from the model's registry family (:func:`benchmark.manifest.model_task`), so a digits
    model fed synthetic images is still rated among digits models. A run without one (older,
    or written by other code): digits for the digits set or the digits reference model, else
    ImageNet classification."""
    recorded = run.manifest.get("task")
    if isinstance(recorded, str) and recorded:
        return recorded
    return DIGITS if run.dataset == "digits" or run.model in REFERENCES[DIGITS] else IMAGENET


def rating_of(ratio: float) -> str:
    """The class of an energy per inference ``ratio`` times the references' (above 0)."""
    if not ratio > 0 or not math.isfinite(ratio):
        raise ValueError(f"a rating needs a finite ratio above 0, not {ratio!r}")
    return CLASSES[bisect.bisect_right(EDGES, ratio)]


def basis_key(run: RunScore) -> tuple:
    """What a run and its references share: machine, task and operating point."""
    return (run.host, task_of(run), run.backend, run.precision, run.jit, run.batch_size)


def _rated(runs: Iterable[RunScore]) -> list[RunScore]:
    return [r for r in runs if r.status == "finished" and r.uwh_per_inference is not None]


def reference_uwh(runs: Iterable[RunScore]) -> dict[tuple, float]:
    """Per :func:`basis_key` where every reference of its task was measured: the geometric
    mean of the references' energy per inference (each the mean over its passes)."""
    by_model: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in _rated(runs):
        key = basis_key(r)
        if r.model in REFERENCES.get(key[1], ()):
            by_model[key][r.model].append(r.uwh_per_inference)
    out = {}
    for key, models in by_model.items():
        wanted = REFERENCES[key[1]]
        if all(m in models for m in wanted):
            out[key] = statistics.geometric_mean(statistics.fmean(models[m]) for m in wanted)
    return out


def missing_references(runs: Sequence[RunScore]) -> dict[tuple, list[str]]:
    """Per :func:`basis_key` of the finished runs that lacks some reference: the reference
    models not measured there."""
    measured: dict[tuple, set[str]] = defaultdict(set)
    for r in _rated(runs):
        measured[basis_key(r)].add(r.model)
    return {
        key: missing
        for key, models in measured.items()
        if (missing := [m for m in REFERENCES.get(key[1], ()) if m not in models])
    }


def annotate(runs: Sequence[RunScore], only: Iterable[RunScore] | None = None) -> None:
    """Give each finished run of ``only`` (default: all of ``runs``) its ``rating`` and
    ``rating_ratio`` against the references among ``runs``."""
    references = reference_uwh(runs)
    for run in _rated(runs if only is None else only):
        reference = references.get(basis_key(run))
        if reference:
            run.rating_ratio = run.uwh_per_inference / reference
            run.rating = rating_of(run.rating_ratio)


def bands_text() -> str:
    """The bands in words: ``A < 0.19x <= B < 0.58x <= C < 1.73x <= D < 5.2x <= E``."""
    parts = [CLASSES[0]]
    for edge, cls in zip(EDGES, CLASSES[1:], strict=True):
        parts.append(f"< {edge:.2g}x <= {cls}")
    return " ".join(parts)
