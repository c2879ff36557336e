"""Where a model's weights come from, and why they could not be had.

Keras keeps downloaded ImageNet weights in ``~/.keras/models`` (``$KERAS_HOME/models``) and uses
them from there, offline. When it cannot fetch them, :func:`is_fetch_failure` recognises the
failure and :func:`fetch_fix` says which file to download and where to put it. A weights file
given by path is a ``.keras`` model (loaded whole, by :func:`load_saved_model`) or ``.h5``
weights (loaded into the architecture, by :func:`load_weights_into`); either must fit the spec.
Exports of a model for another engine (ONNX) are kept beside them, in :func:`export_cache_dir`.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import TYPE_CHECKING

from exporters.errors import UsageError

if TYPE_CHECKING:
    import keras

    from benchmark.spec import ModelSpec

WEIGHTS_SUFFIXES = (".keras", ".h5")


def _keras_models_dir() -> str:
    home = os.environ.get("KERAS_HOME")
    return os.path.join(home, "models") if home else "~/.keras/models"


def export_cache_dir() -> str:
    """Where exports of models for other engines are kept: ``onnx`` beside Keras's weights
    (``$KERAS_HOME/models/onnx``, else ``~/.keras/models/onnx``)."""
    return os.path.join(os.path.expanduser(_keras_models_dir()), "onnx")


def is_fetch_failure(e: BaseException) -> bool:
    """Whether ``e`` is Keras failing to get pre-trained weights (offline, blocked, corrupt)."""
    text = str(e)
    if type(e) is Exception and "URL fetch failure" in text:  # keras.utils.get_file, offline
        return True
    if isinstance(e, ValueError) and "file hash" in text:  # a truncated or corrupt download
        return True
    return isinstance(e, OSError)  # URLError, a cache directory not writable, a bad .h5


def fetch_fix(e: BaseException) -> str:
    """How to get the weights Keras could not fetch: which URL, and the file Keras looks for."""
    url = re.search(r"https?://\S+?\.h5", str(e))
    target = None
    tb = e.__traceback__
    while tb is not None:  # get_file's frame knows where the file belongs (its cache name)
        if tb.tb_frame.f_code.co_name == "get_file":
            target = tb.tb_frame.f_locals.get("download_target")
        tb = tb.tb_next
    if url and target:
        return f"download {url.group(0)} to {target} or pass --weights PATH"
    if url:
        return f"download {url.group(0)} into {_keras_models_dir()} or pass --weights PATH"
    return f"put the .h5 weights in {_keras_models_dir()} or pass --weights PATH"


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def checked_path(path: str) -> str:
    """``path`` with ``~`` expanded, once it names an existing ``.keras`` or ``.h5`` file."""
    full = os.path.expanduser(path)
    if not full.endswith(WEIGHTS_SUFFIXES):
        raise UsageError(
            f"--weights {path}: not a .keras model or .h5 weights file; pass auto, imagenet, "
            "random, or a path to a .keras or .h5 file"
        )
    if not os.path.isfile(full):
        raise UsageError(
            f"--weights {path}: no such file; pass auto, imagenet, random, or a path to a "
            ".keras or .h5 file"
        )
    return full


def _check_loaded(spec: ModelSpec, model: keras.Model, path: str) -> None:
    """A model loaded from a file must take and give what ``spec`` says."""
    got_in = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if got_in is not None and None not in got_in and got_in != spec.input_shape:
        raise UsageError(
            f"--weights {path}: the model takes {got_in} images but {spec.name} takes "
            f"{spec.input_shape}: pass a model saved from {spec.name}"
        )
    got_out = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if got_out is not None and got_out != spec.num_classes:
        raise UsageError(
            f"--weights {path}: the model has {got_out} outputs but {spec.name} has "
            f"{spec.num_classes}: pass a model saved from {spec.name}"
        )


def load_saved_model(spec: ModelSpec, full: str, path: str) -> keras.Model:
    """The ``.keras`` model at ``full`` (``path`` as given), refused unless it fits ``spec``."""
    import keras

    try:
        model = keras.saving.load_model(full)
    except Exception as e:
        raise UsageError(f"--weights {path}: cannot load the model: {_first_line(e)}") from e
    _check_loaded(spec, model, path)
    return model


def load_weights_into(model: keras.Model, spec: ModelSpec, full: str, path: str) -> None:
    """Loads the ``.h5`` weights at ``full`` into ``model``, refused unless every layer gets some.

    Keras warns, layer by layer, where a file has nothing for a layer, and then raises (or, for
    some layouts, leaves those layers at their random initial values): either way the file is
    not this model's.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(full)
        except Exception as e:
            raise UsageError(
                f"--weights {path}: these are not weights for {spec.name}: {_first_line(e)}"
            ) from e
    untrained = [w for w in caught if "freshly-initialized" in str(w.message)]
    if untrained:
        raise UsageError(
            f"--weights {path}: these are not weights for {spec.name}: {len(untrained)} of its"
            " layers found nothing in the file"
        )
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
