"""A model's preprocessing, as TensorFlow ops or in NumPy: :func:`preprocess_fn`.

``ModelSpec.preprocess`` is the dotted path of the family's Keras ``preprocess_input``, or
``"builtin"`` where the model starts with its own rescaling layers and takes 0..255 floats
(MobileNetV3, EfficientNet B0-B7, EfficientNetV2, ConvNeXt; their ``preprocess_input`` is a
pass-through). :func:`preprocess_fn` turns a spec into a function on a float32 NHWC batch in
0..255, written in TensorFlow ops so it runs inside ``tf.data`` whatever the Keras backend, and
checked against Keras's own ``preprocess_input`` by the tests. TensorFlow is imported when the
function runs, not before. ``preprocess_fn(spec, numpy=True)`` is the same arithmetic in NumPy,
for the pipeline without TensorFlow (:mod:`benchmark.pil_images`: JAX, torch, ONNX Runtime).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmark.spec import BUILTIN, preprocess_mode, resolve

if TYPE_CHECKING:
    from benchmark.spec import ModelSpec

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _identity(batch: Any) -> Any:
    """The model rescales its own 0..255 input."""
    return batch


def _preprocess_mode(batch: Any, mode: str) -> Any:
    import tensorflow as tf

    x = tf.cast(batch, tf.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return tf.reverse(x, axis=[-1]) - tf.constant(_CAFFE_BGR_MEAN, tf.float32)
    if mode == "torch":
        mean = tf.constant(_TORCH_MEAN, tf.float32)
        return (x / 255.0 - mean) / tf.constant(_TORCH_STD, tf.float32)
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def _numpy_mode(batch: Any, mode: str) -> Any:
    """:func:`_preprocess_mode` in NumPy: float32 in, a new float32 array out."""
    import numpy as np

    x = np.asarray(batch, np.float32)
    if mode == "tf":
        return x / np.float32(127.5) - np.float32(1.0)
    if mode == "caffe":
        return x[..., ::-1] - np.asarray(_CAFFE_BGR_MEAN, np.float32)
    if mode == "torch":
        mean = np.asarray(_TORCH_MEAN, np.float32)
        return (x / np.float32(255.0) - mean) / np.asarray(_TORCH_STD, np.float32)
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def _numpy_custom(batch: Any, path: str) -> Any:
    """A Keras ``preprocess_input`` (any backend's; they take NumPy arrays) on a copy."""
    import numpy as np

    return np.asarray(resolve(path)(np.array(batch, np.float32)), np.float32)


def _preprocess_custom(batch: Any, path: str) -> Any:
    import tensorflow as tf

    return resolve(path)(tf.cast(batch, tf.float32))


def preprocess_fn(spec: ModelSpec, *, numpy: bool = False) -> Callable[[Any], Any]:
    """What turns a float32 ``(N, size, size, channels)`` batch in 0..255 into model input.

    TensorFlow ops only, so it works in ``tf.data`` maps and on NumPy arrays (which it never
    changes in place); the result is a ``tf.Tensor``, or the batch itself for ``builtin``.
    ``numpy=True``: the same arithmetic in NumPy, giving a NumPy array, without TensorFlow.
    """
    mode = preprocess_mode(spec.preprocess)
    if mode == BUILTIN:
        return _identity
    if mode == "custom":
        custom = _numpy_custom if numpy else _preprocess_custom
        return functools.partial(custom, path=spec.preprocess)
    return functools.partial(_numpy_mode if numpy else _preprocess_mode, mode=mode)
