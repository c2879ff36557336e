"""Building a registered model with its weights: :func:`build_model`.

Weights: ``auto`` tries the ImageNet weights and falls back to random weights with a loud
warning when they cannot be fetched; ``imagenet`` insists; ``random`` never fetches; a path to a
``.keras`` model or ``.h5`` weights file loads that (:mod:`benchmark.weights` checks and loads
the files, and says how to get weights Keras could not fetch). A model with weights of its own
(``ModelSpec.trained``, the digits CNN) gets those for ``auto`` and ``imagenet``. TensorFlow and
Keras are imported when a model is built.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TYPE_CHECKING

from benchmark.seeding import python_seed
from benchmark.spec import ModelSpec, resolve
from benchmark.weights import (
    checked_path,
    fetch_fix,
    is_fetch_failure,
    load_saved_model,
    load_weights_into,
)
from exporters.errors import UsageError

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

RANDOM_SEED = 2012  # random weights: the same on every build


def _build_keras(spec: ModelSpec, weights: str | None) -> keras.Model:
    constructor = resolve(spec.constructor)
    # Keras prints its download progress on stdout; keep stdout for the commands' output.
    with contextlib.redirect_stdout(sys.stderr):
        return constructor(weights=weights, input_shape=spec.input_shape, classes=spec.num_classes)


def _build_random(spec: ModelSpec) -> keras.Model:
    """The model with random weights: the same ones on every build (a fixed seed), so runs
    with random weights compute the same thing and an export of them can be cached. The
    process's random number generators are left as they were (:mod:`benchmark.seeding`)."""
    import keras  # noqa: F401 - before seeding: a first import of Keras draws from `random`

    constructor = resolve(spec.constructor)  # imports its module, before seeding too
    with python_seed(RANDOM_SEED):
        if spec.is_keras_application:
            return _build_keras(spec, None)
        return constructor()


def _build_pretrained(spec: ModelSpec, weights: str) -> tuple[keras.Model, str]:
    if spec.trained is not None:
        return resolve(spec.trained)(), "trained"
    try:
        return _build_keras(spec, "imagenet"), "imagenet"
    except Exception as e:
        if not is_fetch_failure(e):
            raise
        reason = " ".join(str(e).split())
        if weights == "imagenet":
            raise UsageError(
                f"--weights imagenet: no ImageNet weights for {spec.name} ({reason}): "
                f"{fetch_fix(e)}, or --weights random to measure energy alone"
            ) from e
        log.warning(
            "NO IMAGENET WEIGHTS for %s (%s): running with RANDOM weights, so its accuracy will "
            "be meaningless (energy is still real); to get the weights, %s",
            spec.name,
            reason,
            fetch_fix(e),
        )
        return _build_random(spec), "random"


def _build_from_file(spec: ModelSpec, path: str) -> keras.Model:
    full = checked_path(path)
    if full.endswith(".keras"):
        return load_saved_model(spec, full, path)
    model = _build_random(spec)
    load_weights_into(model, spec, full, path)
    return model


def build_model(spec: ModelSpec, weights: str = "auto") -> tuple[keras.Model, str]:
    """The model for ``spec`` and what weights it got: ``imagenet``, ``random``, ``file:PATH``.

    ``weights``: ``auto`` (ImageNet weights if Keras has or can fetch them, otherwise random
    weights and a warning), ``imagenet`` (a :class:`UsageError` if they cannot be had),
    ``random``, or a path to a ``.keras`` model (loaded whole) or ``.h5`` weights (loaded into
    the architecture). A model with its own trained weights (``spec.trained``, the digits CNN)
    gets those for ``auto`` and ``imagenet``, reported as ``trained``.
    """
    if weights == "random":
        return _build_random(spec), "random"
    if weights in ("auto", "imagenet"):
        return _build_pretrained(spec, weights)
    return _build_from_file(spec, weights), f"file:{weights}"
