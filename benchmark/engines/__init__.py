"""The engines that run a model's graph, and the operating points each supports.

An engine is a Keras backend (``tensorflow``, ``jax``, ``torch``: :mod:`.keras_engine`) or ONNX
Runtime running the Keras model exported to ONNX (``onnxruntime``: :mod:`.onnx_engine`). Every
engine runs the same registry entry with the same weights and the same preprocessing; the
``backend`` tag of a run names its engine. torchvision's own models (``tv_*``) run on the torch
engine alone, without Keras (:mod:`.torchvision_engine`; :func:`check_model`).

An operating point is an engine, a precision and a jit setting (:data:`SUPPORTED`):

- precision ``fp32``; ``fp16`` and ``bf16`` as Keras mixed-precision policies
  (``mixed_float16``, ``mixed_bfloat16``) on the Keras backends; ``int8`` as ONNX Runtime's
  dynamic quantisation of the exported model.
- jit ``on`` (XLA on TensorFlow, ``jax.jit``, ``torch.compile``), ``off``, or ``auto`` (Keras's
  own choice: on for JAX, off for TensorFlow on a CPU and for torch). ONNX Runtime compiles
  its graph when the session is made, whatever the setting: ``auto`` only, recorded as ``off``.

:func:`check_point` is the one check of an operating point (the run, sweep and campaign
commands call it before anything runs); :func:`add_arguments` adds ``--backend``,
``--precision`` and ``--jit`` to a command; :func:`load` builds the model and its engine.

Keras fixes its backend when it is first imported in a process (``KERAS_BACKEND``):
:func:`use_backend` sets it before that, and refuses a Keras backend other than the one this
process already runs (that needs a process of its own).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporters.errors import UsageError, shown

if TYPE_CHECKING:
    import numpy as np

    from benchmark.spec import ModelSpec

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
ENGINES = (*KERAS_BACKENDS, "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
JITS = ("auto", "on", "off")
_KERAS_POINTS = (("fp32", "fp16", "bf16"), JITS)
SUPPORTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tensorflow": _KERAS_POINTS,
    "jax": _KERAS_POINTS,
    "torch": _KERAS_POINTS,
    "onnxruntime": (("fp32", "int8"), ("auto",)),
}  # engine -> (precisions, jit settings)

# What each engine needs installed, and the line that installs it.
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorflow": (("tensorflow", "keras"), "pip install -e '.[bench]'"),
    "jax": (("jax", "keras"), "pip install -e '.[test]' (or pip install 'jax[cpu]')"),
    "torch": (("torch", "keras"), "pip install -e '.[torch]'"),
    "onnxruntime": (("onnxruntime", "onnx", "keras"), "pip install -e '.[test]'"),
}


@dataclass
class Engine:
    """A model ready to run: ``predict`` takes a float32 NHWC batch, gives the class scores.

    ``model`` is the Keras model (its parameters and MACs); ``jit`` is what ran, ``on`` or
    ``off``; ``notes`` say what a reader of the results should know (an export made)."""

    backend: str
    precision: str
    jit: str
    predict: Callable[[np.ndarray], Any]
    model: Any
    notes: list[str] = field(default_factory=list)


def available(backend: str) -> str | None:
    """Why ``backend`` cannot run here (the missing package and the line that installs it),
    or None."""
    packages, fix = _NEEDS[backend]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        return f"the {backend} engine needs {', '.join(missing)}, not installed here: {fix}"
    return None


def check_point(backend: str, precision: str, jit: str) -> str | None:
    """Why the operating point ``backend`` x ``precision`` x ``jit`` cannot run here (one line
    naming what is supported), or None."""
    if backend not in SUPPORTED:
        return f"backend {shown(backend)} is not an engine: use one of {', '.join(ENGINES)}"
    precisions, jits = SUPPORTED[backend]
    if precision not in precisions:
        known = "" if precision in PRECISIONS else " (not a precision)"
        return (f"{backend} does not run precision {shown(precision)}{known}: "
                f"it runs {', '.join(precisions)}")  # fmt: skip
    if jit not in jits:
        known = "" if jit in JITS else " (not a jit setting)"
        return f"{backend} does not take jit {shown(jit)}{known}: it takes {', '.join(jits)}"
    return available(backend)


def check_model(spec: ModelSpec, backend: str) -> str | None:
    """Why ``backend`` cannot run the model ``spec`` (a torchvision model on another engine,
    or without torchvision), or None."""
    if not spec.is_torchvision:
        return None
    if backend != "torch":
        return (f"{spec.name} is a torchvision model: only --backend torch runs it (the Keras "
                "applications run on every engine)")  # fmt: skip
    if importlib.util.find_spec("torchvision") is None:
        return f"{spec.name} needs torchvision, not installed here: pip install -e '.[torch]'"
    return None


def default_backend() -> str:
    """The engine a run uses without ``--backend``: the Keras backend of this process (Keras's
    own once imported, else ``KERAS_BACKEND``), else ``tensorflow``."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    wanted = os.environ.get("KERAS_BACKEND", "").strip()
    return wanted if wanted in KERAS_BACKENDS else "tensorflow"


def _installed_keras_backend() -> str:
    """A Keras backend to build (and export) with where the engine is not one: TensorFlow where
    installed, else JAX, else torch."""
    for name in KERAS_BACKENDS:
        if importlib.util.find_spec(name) is not None:
            return name
    return "tensorflow"


def use_backend(backend: str) -> str:
    """Sets Keras's backend for ``backend`` before Keras is imported; returns the Keras
    backend of this process. A Keras backend other than the one Keras already runs here is a
    :class:`UsageError` (it needs a process of its own)."""
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if backend in KERAS_BACKENDS and backend != current:
            raise UsageError(
                f"--backend {backend}: Keras already runs {current} in this process, and "
                f"fixes its backend at import: run {backend} in a process of its own "
                f"(KERAS_BACKEND={backend} python -m benchmark ...)"
            )
        return current
    if backend in KERAS_BACKENDS:
        os.environ["KERAS_BACKEND"] = backend
    elif os.environ.get("KERAS_BACKEND", "").strip() not in KERAS_BACKENDS:
        os.environ["KERAS_BACKEND"] = _installed_keras_backend()
    return os.environ["KERAS_BACKEND"]


def pipeline_for(backend: str) -> str:
    """The image pipeline of ``backend``'s runs (:func:`benchmark.datasets.open_dataset`):
    ``tf.data`` for TensorFlow, NumPy and Pillow for the engines that run without it."""
    return "tf" if backend == "tensorflow" else "numpy"


def load(
    spec: ModelSpec, weights: str, backend: str, precision: str, jit: str
) -> tuple[Engine, str]:
    """The engine running ``spec`` with ``weights`` at the operating point, and what weights
    it got (as :func:`benchmark.models.build_model` says). The point must pass
    :func:`check_point` and :func:`check_model`, and :func:`use_backend` must have run."""
    if spec.is_torchvision:
        from benchmark.engines import torchvision_engine

        return torchvision_engine.load(spec, weights, precision, jit)
    if backend == "onnxruntime":
        from benchmark.engines import onnx_engine

        return onnx_engine.load(spec, weights, precision)
    from benchmark.engines import keras_engine

    return keras_engine.load(spec, weights, backend, precision, jit)


def add_arguments(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """``--backend``, ``--precision`` and ``--jit`` on a command (``--backends`` and
    ``--precisions``, comma-separated, where ``several``); checked by :func:`check_point`."""
    if several:
        parser.add_argument("--backends", type=_names, default=None, metavar="B,...",
                            help=f"comma-separated engines: {', '.join(ENGINES)}")  # fmt: skip
        parser.add_argument("--precisions", type=_names, default=["fp32"], metavar="P,...",
                            help=f"comma-separated: {', '.join(PRECISIONS)} (fp32)")  # fmt: skip
    else:
        parser.add_argument(
            "--backend", default=None, metavar="ENGINE",
            help=f"{', '.join(ENGINES)} (default: KERAS_BACKEND, else tensorflow)",
        )  # fmt: skip
        parser.add_argument("--precision", default="fp32", help=f"{', '.join(PRECISIONS)} "
                            "where the engine runs it (fp32)")  # fmt: skip
    parser.add_argument("--jit", default="auto", help="on (XLA / jit compiled), off, or auto "
                        "(the engine's default)")  # fmt: skip


def _names(text: str) -> list[str]:
    """argparse type: a comma-separated list of names, in order, without repeats."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{shown(text)}: give at least one name")
    return list(dict.fromkeys(names))
