"""ONNX Runtime as an engine: the Keras model exported to ONNX, run by an inference session.

The model is built in Keras (float32: Keras exports only that) with its weights, exported with
``model.export(format="onnx")`` through this process's Keras backend (TensorFlow: tf2onnx; JAX:
jax2onnx; torch: torch.onnx), and for ``int8`` quantised with ONNX Runtime's dynamic
quantisation (int8 weights, activations quantised on the fly). Exports are cached in
:func:`benchmark.weights.export_cache_dir`, beside Keras's weights, one file per model, weights
and precision: ``<model>-<weights>-<digest>-<precision>.onnx``, where the digest is a SHA-256
of the weights themselves (random weights come from a fixed seed, so they too are cached).
A session runs on CUDA where ONNX Runtime has it, else on the CPU.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.engines import Engine
from benchmark.engines.keras_engine import build_at
from benchmark.weights import export_cache_dir
from exporters.errors import UsageError

if TYPE_CHECKING:
    from benchmark.spec import ModelSpec

log = logging.getLogger(__name__)

INPUT_NAME = "image"
# What model.export(format="onnx") needs on each Keras backend, and the line that installs it.
_EXPORTERS = {
    "tensorflow": ("tf2onnx", "pip install -e '.[test]' (or pip install tf2onnx)"),
    "jax": ("jax2onnx", "pip install jax2onnx"),
    "torch": ("torch", "pip install -e '.[torch]'"),
}


def weights_digest(model: Any) -> str:
    """16 hex digits of the SHA-256 of every weight of ``model``, in order."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        a = np.ascontiguousarray(w)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def export_path(spec: ModelSpec, weights: str, digest: str, precision: str) -> str:
    """The cached export of ``spec`` with ``weights`` (``file:PATH`` counts as ``file``)."""
    kind = weights.split(":", 1)[0]
    return os.path.join(export_cache_dir(), f"{spec.name}-{kind}-{digest}-{precision}.onnx")


def _export(model: Any, spec: ModelSpec, path: str) -> None:
    """``model`` to ONNX at ``path`` (written whole under another name, then renamed)."""
    import importlib.util

    import keras

    backend = keras.backend.backend()
    package, fix = _EXPORTERS[backend]
    if importlib.util.find_spec(package) is None:
        raise UsageError(
            f"exporting {spec.name} to ONNX on Keras's {backend} backend needs {package}, not "
            f"installed here: {fix}"
        )
    signature = [keras.InputSpec(shape=(None, *spec.input_shape), dtype="float32",
                                 name=INPUT_NAME)]  # fmt: skip
    tmp = f"{path}.{os.getpid()}.tmp"
    quiet = logging.getLogger("tf2onnx")  # logs its optimisers' harmless failures as errors
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    started = time.monotonic()
    try:
        with warnings.catch_warnings():  # Keras's tf2onnx patch trips NumPy's np.object warning
            warnings.simplefilter("ignore", FutureWarning)
            model.export(tmp, format="onnx", verbose=False, input_signature=signature)
        os.replace(tmp, path)
    finally:
        quiet.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported %s to %s in %.1f s", spec.name, path, time.monotonic() - started)


def _quantize(fp32_path: str, path: str) -> None:
    """Dynamic int8 quantisation of the export at ``fp32_path`` into ``path``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = f"{path}.{os.getpid()}.tmp"
    quiet = logging.getLogger()  # quantize_dynamic warns on the root logger about pre-processing
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_dynamic(fp32_path, tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, path)
    finally:
        quiet.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_export(model: Any, spec: ModelSpec, weights: str, precision: str) -> tuple[str, bool]:
    """The ONNX file of ``model`` at ``precision``, exported (and quantised) unless cached;
    and whether it was made now."""
    digest = weights_digest(model)
    path = export_path(spec, weights, digest, precision)
    if os.path.isfile(path):
        return path, False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fp32 = export_path(spec, weights, digest, "fp32")
    if not os.path.isfile(fp32):
        _export(model, spec, fp32)
    if precision == "int8":
        _quantize(fp32, path)
    return path, True


def providers() -> list[str]:
    """CUDA where this ONNX Runtime has it, then the CPU."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def load(spec: ModelSpec, weights: str, precision: str) -> tuple[Engine, str]:
    """ONNX Runtime running ``spec``'s export with ``weights`` at ``precision``."""
    import onnxruntime as ort

    model, got = build_at(spec, weights, "fp32")
    path, made = cached_export(model, spec, got, precision)
    session = ort.InferenceSession(path, providers=providers())
    name = session.get_inputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.asarray(x, np.float32)})[0]

    how = "exported now" if made else "cached"
    notes = [f"onnxruntime ({session.get_providers()[0]}) runs {path} ({how})"]
    return Engine("onnxruntime", precision, "off", predict, model, notes), got
