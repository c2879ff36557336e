"""The image pipeline without TensorFlow: image files to model-ready NumPy batches, with Pillow.

For the engines that run without TensorFlow (JAX, torch, ONNX Runtime) this does what
:mod:`benchmark.images` does in ``tf.data``, step for step: decode (3 channels, or 1; PNGs named
``.JPEG`` too), resize so the shorter side is :func:`benchmark.images.resize_size` and the longer
``floor(long * short' / short)``, bilinear with antialiasing (Pillow's resampling filter widens
with the scale, as TensorFlow's ``antialias=True`` does; each channel is resized as 32-bit float,
so no rounding happens between the horizontal and vertical passes), centre-crop, round to whole
pixel values; then batch as float32 and preprocess (:func:`benchmark.preprocess.preprocess_fn`
with ``numpy=True``). Files are decoded on a few threads, in order: labels line up with images.

Both pipelines give the same crops within rounding: ``tests/test_pipeline.py`` compares them on
real JPEGs and PNGs (at most one grey level apart, on a few pixels; see :data:`MAX_LEVELS_APART`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from benchmark.images import ImageFormat, resize_size

MAX_LEVELS_APART = 1  # the most a crop's pixel differs from the tf.data pipeline's (rounding)
DECODE_THREADS = min(8, os.cpu_count() or 1)


class UndecodableImage(ValueError):
    """An image file that Pillow cannot decode: ``reason`` says why, ``path`` which file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def resize_and_crop_array(pixels: np.ndarray, input_size: int, crop_ratio: float) -> np.ndarray:
    """One image (H, W, C) uint8 -> (input_size, input_size, C) uint8, as
    :func:`benchmark.images.resize_and_crop` does it in TensorFlow."""
    from PIL import Image

    h, w, channels = pixels.shape
    target = resize_size(input_size, crop_ratio)
    short = min(h, w)
    new_h, new_w = h * target // short, w * target // short
    top, left = (new_h - input_size) // 2, (new_w - input_size) // 2
    box = (left, top, left + input_size, top + input_size)  # crop after the whole resize
    planes = []
    for c in range(channels):
        plane = Image.fromarray(np.ascontiguousarray(pixels[:, :, c], np.float32), mode="F")
        resized = plane.resize((new_w, new_h), Image.Resampling.BILINEAR).crop(box)
        planes.append(np.asarray(resized, np.float32))
    crop = np.stack(planes, axis=-1)
    return np.round(np.clip(crop, 0.0, 255.0)).astype(np.uint8)


def decode(path: str, channels: int) -> np.ndarray:
    """The file's pixels as (H, W, channels) uint8; :class:`UndecodableImage` if it has none."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            pixels = np.asarray(image, np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UndecodableImage(path, " ".join(str(e).split()) or type(e).__name__) from e
    return pixels.reshape(*pixels.shape[:2], channels)


def load_crop(path: str, fmt: ImageFormat) -> np.ndarray:
    """One file, decoded, resized and cropped for ``fmt``: (size, size, channels) uint8."""
    return resize_and_crop_array(decode(path, fmt.channels), fmt.size, fmt.crop_ratio)


class ArrayBatches:
    """``(images, labels)`` NumPy batches, made anew on each iteration: what
    :meth:`benchmark.datasets.Dataset.batches` gives on the pipeline without TensorFlow.

    It has the two methods of ``tf.data.Dataset`` the runner uses: :meth:`take` and
    :meth:`as_numpy_iterator`.
    """

    def __init__(self, make: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]) -> None:
        self._make = make

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._make()

    def as_numpy_iterator(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self)

    def take(self, count: int) -> ArrayBatches:
        return ArrayBatches(lambda: itertools.islice(self._make(), count))


def preprocess_array(preprocess: Callable[[Any], Any], images: np.ndarray) -> np.ndarray:
    """``preprocess`` applied to ``images`` as float32, giving a float32 array."""
    return np.asarray(preprocess(np.asarray(images, np.float32)), np.float32)


def file_array_batches(
    files: list[str], labels: list[int], fmt: ImageFormat, batch_size: int, cache: bool
) -> ArrayBatches:
    """``(images, labels)`` batches of ``files`` in order; ``cache`` keeps the cropped images
    (after the first full pass) so later passes skip decoding."""
    kept: dict[int, np.ndarray] = {}

    def crops(start: int, pool: ThreadPoolExecutor) -> list[np.ndarray]:
        chunk = range(start, min(start + batch_size, len(files)))
        if cache and all(i in kept for i in chunk):
            return [kept[i] for i in chunk]
        images = list(pool.map(lambda i: load_crop(files[i], fmt), chunk))
        if cache:
            kept.update(zip(chunk, images))
        return images

    def make() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with ThreadPoolExecutor(DECODE_THREADS) as pool:
            for start in range(0, len(files), batch_size):
                images = np.stack(crops(start, pool))
                y = np.asarray(labels[start : start + batch_size], np.int32)
                yield preprocess_array(fmt.preprocess, images), y

    return ArrayBatches(make)
