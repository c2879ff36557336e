"""What the benchmark feeds a model: ILSVRC2012 validation images, synthetic images, or digits.

    dataset = open_dataset("/data/imagenet/val", spec, limit=1000)
    for images, labels in dataset.batches(64):   # float32 preprocessed images, int32 labels
        ...

``spec`` is anything with ``input_size``, ``channels`` (3, or 1 for digits) and ``crop_ratio``
(a :class:`benchmark.spec.ModelSpec`); the preprocessing is ``preprocess=`` when given, else
``spec.preprocess`` when that is callable, else ``benchmark.preprocess.preprocess_fn(spec)``. It
gets float32 batches of pixel values 0..255, (N, H, W, C), and must be made of TensorFlow ops,
since it runs inside the ``tf.data`` pipeline.

``pipeline="numpy"`` builds the same batches without TensorFlow, for the engines that run
without it (JAX, torch, ONNX Runtime; :mod:`benchmark.engines` chooses): images decoded and
resized with Pillow (:mod:`benchmark.pil_images`), preprocessing in NumPy, and
:meth:`Dataset.batches` an :class:`~benchmark.pil_images.ArrayBatches` of NumPy arrays (with
``take`` and ``as_numpy_iterator``, like ``tf.data``). A ``preprocess=`` function must then take
and give NumPy arrays.

Sources (``data``):

- a directory of ILSVRC2012 validation images, in one of the layouts :mod:`benchmark.ilsvrc`
  reads, fed through the image pipeline of :mod:`benchmark.images`. A directory with fewer than
  all 50,000 images is fine: :attr:`Dataset.complete` says whether it is the whole validation set.
- ``"synthetic"``: random images of pixel values 0..255 from a fixed seed, no labels. A pool
  of 32 images is made once and cycled: every batch holds pool images 0, 1, ..., 31, 0, 1, ...
  and the same preprocessed batch tensor is handed out again, so feeding costs nothing beyond
  the copy to the device. 1,000 images unless ``limit`` says otherwise.
- ``"digits"``: the held-out split of scikit-learn's 8x8 digits (:mod:`benchmark.digits`),
  labelled 0..9, fully offline.

``limit`` N keeps N images evenly spread over the sorted list (image ``floor(i * total / N)``
for ``i < N``; class folders sort by class, then file name), so a subset covers as many classes
as it can (limit 1,000 of the full set: one image of every class) and is the same on every
machine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from benchmark import ilsvrc
from benchmark.images import ImageFormat, Preprocess, file_batches, preprocess_batch
from benchmark.pil_images import ArrayBatches, file_array_batches, preprocess_array
from benchmark.preprocess import preprocess_fn
from exporters.errors import UsageError

if TYPE_CHECKING:
    import tensorflow as tf

SYNTHETIC_LIMIT = 1000
SYNTHETIC_POOL = 32
SYNTHETIC_SEED = 2012
DEFAULT_CROP_RATIO = 0.875
PIPELINES = ("tf", "numpy")  # tf.data, or NumPy and Pillow (no TensorFlow)


class ImageSpec(Protocol):
    """What a dataset needs to know of a model (:class:`benchmark.spec.ModelSpec` has it)."""

    input_size: int
    channels: int
    crop_ratio: float


@dataclass(eq=False)
class Dataset:
    """Images to run a model over: :meth:`batches` gives them as a ``tf.data.Dataset``.

    ``size`` is the number of images a pass yields (after ``limit``), ``available`` the number
    the source holds. ``complete`` is False only for a partial ILSVRC2012 validation set: fewer
    than its 50,000 images of 1,000 classes in the pass. ``classes`` counts the distinct labels
    in the pass (0 when unlabelled).
    """

    name: str
    size: int
    labeled: bool
    complete: bool
    available: int
    classes: int
    image_shape: tuple[int, int, int]
    _build: Callable[[int, bool], tf.data.Dataset] = field(repr=False)

    def batches(self, batch_size: int, *, cache: bool = False) -> tf.data.Dataset:
        """``(images, labels)`` batches: float32 preprocessed images, int32 labels (-1: none).

        The order is the same on every pass and every machine; the last batch may be short.
        ``cache=True`` keeps decoded, cropped images in memory after the first full pass over
        the returned dataset (``size * H * W * C`` bytes), so later passes skip the decoding.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch size {batch_size!r}: must be a positive whole number")
        return self._build(batch_size, cache)


def open_dataset(
    data: str | os.PathLike[str],
    spec: ImageSpec,
    limit: int | None = None,
    *,
    preprocess: Preprocess | None = None,
    pipeline: str = "tf",
) -> Dataset:
    """The dataset ``data`` names ("synthetic", "digits" or a directory), shaped for ``spec``,
    through ``pipeline`` (``tf``: ``tf.data``; ``numpy``: NumPy and Pillow, no TensorFlow).

    Raises :class:`UsageError` with what was expected and the fix when ``data`` is not a usable
    source or ``limit`` is not positive.
    """
    if limit is not None and (isinstance(limit, bool) or limit <= 0):
        raise UsageError(f"--limit {limit}: must be a positive number of images (or leave it out)")
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline {pipeline!r}: expected one of {PIPELINES}")
    numpy = pipeline == "numpy"
    fmt = _format(spec, preprocess, numpy)
    data = os.fspath(data)
    if data == "synthetic":
        return _synthetic(fmt, limit, numpy)
    if data == "digits":
        return _digits(fmt, spec, limit, numpy)
    if not data:
        raise UsageError(f"--data is empty: give {ilsvrc.LAYOUTS}, 'synthetic' or 'digits'")
    return _ilsvrc(Path(data), fmt, spec, limit, numpy)


def _format(spec: ImageSpec, preprocess: Preprocess | None, numpy: bool) -> ImageFormat:
    size = int(spec.input_size)
    channels = int(getattr(spec, "channels", 3))
    crop_ratio = float(getattr(spec, "crop_ratio", DEFAULT_CROP_RATIO))
    if size < 1 or channels not in (1, 3) or not 0 < crop_ratio <= 1:
        raise ValueError(
            f"model spec: input_size {size}, channels {channels}, crop_ratio {crop_ratio}: "
            "need input_size >= 1, channels 1 or 3, 0 < crop_ratio <= 1"
        )
    if preprocess is None:
        preprocess = getattr(spec, "preprocess", None)
        if not callable(preprocess):
            preprocess = preprocess_fn(spec, numpy=numpy)  # type: ignore[arg-type]
    return ImageFormat(size, channels, crop_ratio, preprocess)


def _spread(total: int, limit: int | None) -> list[int]:
    """Indices of ``limit`` items evenly spread over ``total`` (all of them without a limit)."""
    if limit is None or limit >= total:
        return list(range(total))
    return [i * total // limit for i in range(limit)]


def _check_classes(spec: ImageSpec, expected: int, what: str) -> None:
    n = getattr(spec, "num_classes", None)
    if n is not None and n != expected:
        name = getattr(spec, "name", "the model")
        raise UsageError(
            f"{name} predicts {n} classes but {what} has {expected}: "
            "use a matching model, or --data synthetic to measure energy alone"
        )


def _synthetic_batch(fmt: ImageFormat, batch_size: int) -> np.ndarray:
    """The synthetic batch, uint8: pool images 0, 1, ..., 31, 0, 1, ..."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    pool = rng.integers(0, 256, size=(SYNTHETIC_POOL, *fmt.shape), dtype=np.uint8)
    return np.resize(pool, (batch_size, *fmt.shape))


def _repeated(images: np.ndarray, labels: np.ndarray, count: int) -> ArrayBatches:
    """``count`` images in batches of ``images``: the same arrays each time, then a short one."""
    full, rest = divmod(count, len(images))

    def make():
        for _ in range(full):
            yield images, labels
        if rest:
            yield images[:rest], labels[:rest]

    return ArrayBatches(make)


def _synthetic(fmt: ImageFormat, limit: int | None, numpy: bool) -> Dataset:
    count = SYNTHETIC_LIMIT if limit is None else limit

    def build_arrays(batch_size: int, cache: bool) -> ArrayBatches:
        images = preprocess_array(fmt.preprocess, _synthetic_batch(fmt, batch_size))
        return _repeated(images, np.full(batch_size, -1, np.int32), count)

    def build(batch_size: int, cache: bool) -> tf.data.Dataset:
        import tensorflow as tf

        cycled = _synthetic_batch(fmt, batch_size)
        images = preprocess_batch(fmt.preprocess, tf.constant(cycled))
        labels = tf.fill([batch_size], tf.constant(-1, tf.int32))
        full, rest = divmod(count, batch_size)
        ds = tf.data.Dataset.from_tensors((images, labels)).repeat(full)
        if rest:
            ds = ds.concatenate(tf.data.Dataset.from_tensors((images[:rest], labels[:rest])))
        return ds.prefetch(tf.data.AUTOTUNE)

    builder = build_arrays if numpy else build
    return Dataset("synthetic", count, False, True, count, 0, fmt.shape, builder)


def _digits(fmt: ImageFormat, spec: ImageSpec, limit: int | None, numpy: bool) -> Dataset:
    from benchmark import digits

    _check_classes(spec, digits.NUM_CLASSES, "the digits dataset")
    _, _, x_test, y_test = digits.load_split()
    # 450 test images take milliseconds: a larger limit cycles them, for a measurable window.
    keep = (
        _spread(len(x_test), limit)
        if (limit or 0) <= len(x_test)
        else [i % len(x_test) for i in range(limit)]
    )
    x, y = x_test[keep], y_test[keep]

    def build(batch_size: int, cache: bool) -> tf.data.Dataset:
        import tensorflow as tf

        images = tf.constant(x)
        if fmt.size != images.shape[1]:
            images = tf.image.resize(images, (fmt.size, fmt.size), method="bilinear")
        if fmt.channels == 3:
            images = tf.image.grayscale_to_rgb(images)
        images = preprocess_batch(fmt.preprocess, images)
        ds = tf.data.Dataset.from_tensor_slices((images, tf.constant(y, tf.int32)))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def build_arrays(batch_size: int, cache: bool) -> ArrayBatches:
        images = preprocess_array(fmt.preprocess, _digit_images(x, fmt))
        labels = np.asarray(y, np.int32)

        def make():
            for start in range(0, len(images), batch_size):
                yield images[start : start + batch_size], labels[start : start + batch_size]

        return ArrayBatches(make)

    classes = len(set(y.tolist()))
    builder = build_arrays if numpy else build
    return Dataset("digits", len(x), True, True, len(x_test), classes, fmt.shape, builder)


def _digit_images(x: np.ndarray, fmt: ImageFormat) -> np.ndarray:
    """The digits (N, 8, 8, 1) float32 at ``fmt``'s size (bilinear) and channels, in NumPy."""
    if fmt.size != x.shape[1]:
        from PIL import Image

        x = np.stack([
            np.asarray(Image.fromarray(np.ascontiguousarray(img[:, :, 0]), mode="F").resize(
                (fmt.size, fmt.size), Image.Resampling.BILINEAR), np.float32)[:, :, None]
            for img in x
        ])  # fmt: skip
    return np.repeat(x, 3, axis=-1) if fmt.channels == 3 else x


def _ilsvrc(
    path: Path, fmt: ImageFormat, spec: ImageSpec, limit: int | None, numpy: bool
) -> Dataset:
    shown = os.path.normpath(path)
    if not path.exists():
        raise UsageError(
            f"--data {shown}: no such directory; give an ILSVRC2012 validation directory "
            f"({ilsvrc.LAYOUTS}), 'synthetic' or 'digits'"
        )
    if not path.is_dir():
        raise UsageError(f"--data {shown}: not a directory; give {ilsvrc.LAYOUTS}")
    _check_classes(spec, ilsvrc.CLASSES, "ILSVRC2012")
    files, labels = ilsvrc.labelled_files(path)
    available = len(files)
    keep = _spread(available, limit)
    files = [files[i] for i in keep]
    labels = [labels[i] for i in keep]
    classes = len(set(labels))
    complete = len(files) == ilsvrc.VAL_IMAGES and classes == ilsvrc.CLASSES
    build = functools.partial(file_array_batches if numpy else file_batches, files, labels, fmt)
    name = f"ilsvrc2012-val:{shown}"
    return Dataset(name, len(files), True, complete, available, classes, fmt.shape, build)
