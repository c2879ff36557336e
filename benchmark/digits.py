"""The fully offline benchmark: scikit-learn's bundled 8x8 digits and a small CNN trained on them.

Nothing here touches the network: :func:`sklearn.datasets.load_digits` ships with scikit-learn,
and the model trains in a few seconds on a CPU the first time it is asked for, then comes from a
cache file::

    from benchmark import digits
    x_train, y_train, x_test, y_test = digits.load_split()   # float32 0..255, (N, 8, 8, 1)
    model = digits.trained_model()                           # data/models/digits_cnn.keras
    print(digits.accuracy(model))                            # top-1 on the held-out split

The split is stratified with a fixed seed (25% held out: 450 of the 1,797 images), so every
machine measures the same test images. The model takes pixel values 0..255 and rescales them
itself (a ``Rescaling`` layer): its preprocessing is "builtin".
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmark.seeding import python_seed

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

SEED = 1797
TEST_FRACTION = 0.25
NUM_CLASSES = 10
INPUT_SHAPE = (8, 8, 1)
CACHE_NAME = "digits_cnn.keras"
DEFAULT_CACHE_DIR = "data/models"
EPOCHS = 15
BATCH_SIZE = 32

_split: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: images float32 0..255 of shape (N, 8, 8, 1).

    Labels are int32 digits 0..9. The digits' 0..16 intensities are scaled by 255/16. The split
    is stratified by digit with a fixed seed; the arrays are computed once per process and are
    read-only, so callers cannot change them for each other.
    """
    global _split
    if _split is None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        x = (data.images.astype(np.float32) * np.float32(255.0 / 16.0)).reshape(-1, *INPUT_SHAPE)
        y = data.target.astype(np.int32)
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=TEST_FRACTION, stratify=y, random_state=SEED
        )
        arrays = tuple(np.ascontiguousarray(a) for a in (x_train, y_train, x_test, y_test))
        for a in arrays:
            a.flags.writeable = False
        _split = arrays  # type: ignore[assignment]
    return _split  # type: ignore[return-value]


def build_digits_cnn() -> keras.Model:
    """An untrained CNN for 8x8x1 inputs of 0..255: two 3x3 convolutions, pooling, dense."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train_digits_cnn(epochs: int | None = None) -> keras.Model:
    """Trains :func:`build_digits_cnn` on the training split with fixed seeds (seconds on a CPU):
    its initial weights and dropout from :func:`~benchmark.seeding.python_seed`, the order of
    the images in each epoch from a seeded shuffle of its own; the process's random number
    generators are left as they were."""
    import keras
    import tensorflow as tf

    epochs = EPOCHS if epochs is None else epochs
    x_train, y_train, _, _ = load_split()
    with python_seed(SEED):
        model = build_digits_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=SEED)  # reshuffled each epoch, the same way every time
        .batch(BATCH_SIZE)
    )
    model.fit(batches, epochs=epochs, shuffle=False, verbose=0)  # shuffled above
    return model


def accuracy(model: keras.Model, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on the held-out split (through ``model.predict``)."""
    _, _, x_test, y_test = load_split()
    scores = np.asarray(model.predict(x_test, batch_size=batch_size, verbose=0))
    return float((scores.argmax(axis=1) == y_test).mean())


def trained_model(cache_dir: str | Path = DEFAULT_CACHE_DIR) -> keras.Model:
    """The trained digits CNN: loaded from ``<cache_dir>/digits_cnn.keras``, trained once if absent.

    A cache file that cannot be loaded (truncated, from an incompatible Keras) is logged as a
    warning and replaced by a freshly trained model. The file is written whole to a temporary
    name and renamed into place, so concurrent first calls never read half a file.
    """
    import keras

    path = Path(cache_dir) / CACHE_NAME
    if path.exists():
        try:
            return keras.models.load_model(path)
        except Exception as e:  # any failure to load means: train again
            log.warning("cannot load %s (%s); training the digits CNN again", path, e)
    started = time.monotonic()
    model = train_digits_cnn()
    log.info(
        "trained the digits CNN in %.1f s: test accuracy %.3f",
        time.monotonic() - started,
        accuracy(model),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        with warnings.catch_warnings():  # Keras 3 saving TF variables under NumPy 2: harmless
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return model
