"""The Keras backends as engines: TensorFlow, JAX and torch run the Keras model itself.

Precision is Keras's dtype policy while the model is built: ``fp32`` is ``float32``, ``fp16``
``mixed_float16`` and ``bf16`` ``mixed_bfloat16`` (float32 weights, 16-bit computation). A
model loaded whole (a ``.keras`` file, the digits CNN) keeps the policy it was saved with, so it
is cloned under the wanted one, with its weights. jit is the model's
``jit_compile`` for its predict function: XLA on TensorFlow, ``jax.jit``, ``torch.compile``;
``auto`` keeps Keras's choice. The run records what ran (``on`` or ``off``): Keras turns jit
off, with a warning, for a model some layer of which cannot be compiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.engines import Engine
from benchmark.models import build_model

if TYPE_CHECKING:
    from benchmark.spec import ModelSpec

POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


def build_at(spec: ModelSpec, weights: str, precision: str) -> tuple[object, str]:
    """:func:`benchmark.models.build_model` under the dtype policy of ``precision``; the
    process's policy is back as it was afterwards. fp32 leaves the policy alone (and Keras
    unimported until the model is built: bad weights paths are refused without it)."""
    if precision == "fp32":
        return build_model(spec, weights)
    import keras

    policy = POLICIES[precision]
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model, got = build_model(spec, weights)
    finally:
        keras.config.set_dtype_policy(before)
    return with_policy(model, policy), got


def with_policy(model: Any, policy: str) -> Any:
    """``model`` where every layer computes under ``policy``, else a clone that does, with the
    same weights (inputs keep their dtype)."""
    import keras

    if all(la.dtype_policy.name == policy for la in model.layers if not _is_input(la)):
        return model

    def clone(layer: Any) -> Any:
        if _is_input(layer):
            return layer
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _is_input(layer: Any) -> bool:
    return type(layer).__name__ == "InputLayer"


def load(
    spec: ModelSpec, weights: str, backend: str, precision: str, jit: str
) -> tuple[Engine, str]:
    """The Keras model of ``spec`` on this process's Keras backend (``backend``)."""
    model, got = build_at(spec, weights, precision)
    # compile() resolves "auto" afresh (a loaded model brings the choice it was saved with)
    model.compile(jit_compile={"on": True, "off": False}.get(jit, "auto"))
    ran = "on" if model.jit_compile else "off"

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(x))

    return Engine(backend, precision, ran, predict, model), got
