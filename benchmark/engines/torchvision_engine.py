"""torchvision's own models (registry names ``tv_*``) on the torch engine, without Keras.

The model is torchvision's builder with its ``IMAGENET1K_V1`` weights (the ones whose figures
the registry cites; torch keeps them in ``~/.cache/torch``), in eval mode, on CUDA where torch
has it. It gets the same NHWC batches as every engine (the NumPy pipeline, torchvision's
normalisation) and takes them as NCHW. Precision: ``fp16`` and ``bf16`` run under
``torch.autocast``; jit ``on`` is ``torch.compile``, ``auto`` and ``off`` run eagerly. Scores
are the softmax of the logits, as Keras's models give.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.engines import Engine
from benchmark.models import RANDOM_SEED
from benchmark.spec import resolve
from exporters.errors import UsageError

if TYPE_CHECKING:
    from benchmark.spec import ModelSpec

log = logging.getLogger(__name__)

WEIGHTS = "IMAGENET1K_V1"


def _build(spec: ModelSpec, weights: str) -> tuple[Any, str]:
    """The torchvision model with ``weights`` (auto, imagenet, random) and what it got."""
    import torch

    builder = resolve(spec.constructor)
    if weights == "random":
        return random_model(torch, builder), "random"
    if weights not in ("auto", "imagenet"):
        raise UsageError(f"--weights {weights}: {spec.name} takes auto, imagenet or random "
                         "(torchvision's own weights)")  # fmt: skip
    try:
        return builder(weights=WEIGHTS), "imagenet"
    except OSError as e:  # offline, or a cache directory not writable
        reason = " ".join(str(e).split())
        if weights == "imagenet":
            raise UsageError(f"--weights imagenet: no {WEIGHTS} weights for {spec.name} "
                             f"({reason}): put them in ~/.cache/torch/hub/checkpoints, or "
                             "--weights random to measure energy alone") from e  # fmt: skip
        log.warning("NO IMAGENET WEIGHTS for %s (%s): running with RANDOM weights, so its "
                    "accuracy will be meaningless (energy is still real)",
                    spec.name, reason)  # fmt: skip
        return random_model(torch, builder), "random"


def random_model(torch: object, builder: object) -> object:
    """The model with seeded random weights; torch's global generator as it was after."""
    with torch.random.fork_rng(devices=[]):  # CPU generator only, put back on leaving
        torch.manual_seed(RANDOM_SEED)
        return builder(weights=None)


def load(spec: ModelSpec, weights: str, precision: str, jit: str) -> tuple[Engine, str]:
    """torchvision's ``spec`` on torch at ``precision``, compiled where ``jit`` is on."""
    import torch

    model, got = _build(spec, weights)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.eval().to(device)
    run = torch.compile(model) if jit == "on" else model
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

    def predict(x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)
        with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            logits = run(batch.permute(0, 3, 1, 2))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    engine = Engine("torch", precision, "on" if jit == "on" else "off", predict, None)
    engine.notes.append(f"torchvision {spec.constructor} on {device}, not Keras")
    return engine, got
