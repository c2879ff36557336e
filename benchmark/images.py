"""The image pipeline: image files to model-ready batches, in ``tf.data``.

For each file: decode (3 channels, or 1 for a 1-channel model; PNGs and the odd PNG named
``.JPEG`` too; JPEGs with libjpeg's accurate integer DCT, as Pillow decodes them), resize so the
shorter side is :func:`resize_size` and the longer keeps the aspect ratio (truncated, as
torchvision's ``Resize(int)`` does; bilinear with antialiasing), centre-crop
``input_size`` x ``input_size`` (offset ``(excess) // 2``), round to whole pixel values (as
PIL-based reference evaluations do). Then batch, convert to float32 and preprocess the batch,
prefetch. Decoding runs in parallel and in order: labels always line up with their images.

:func:`resize_size` is the one formula for the resize before the crop: the registry lists it
(:attr:`benchmark.spec.ModelSpec.resize_size`) and :func:`resize_and_crop` does it. TensorFlow is
imported only when a pipeline is built, so the registry can use the formula without it.
:mod:`benchmark.pil_images` is the same pipeline in NumPy and Pillow, for engines without
TensorFlow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorflow as tf

Preprocess = Callable[[Any], Any]
_DECODE = "decode_image"  # the name of the decoding op, which TensorFlow's errors quote


def resize_size(input_size: int, crop_ratio: float) -> int:
    """The shorter side before the centre crop: ``round(input_size / crop_ratio)``.

    224 at 0.875 -> 256; 299 at 0.875 -> 342 (torchvision's Inception evaluation); EfficientNet's
    ``size / (size + 32)`` ratios, kept to four digits, give back ``size + 32`` (600 -> 632).
    """
    return round(input_size / crop_ratio)


@dataclass(frozen=True)
class ImageFormat:
    """What a model takes: ``size`` x ``size`` x ``channels`` images, cropped at ``crop_ratio``,
    then ``preprocess`` (TensorFlow ops on a float32 batch of 0..255)."""

    size: int
    channels: int
    crop_ratio: float
    preprocess: Preprocess

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)


def preprocess_batch(preprocess: Preprocess, images: tf.Tensor) -> tf.Tensor:
    """``preprocess`` applied to ``images`` as float32, giving float32."""
    import tensorflow as tf

    return tf.cast(preprocess(tf.cast(images, tf.float32)), tf.float32)


def resize_and_crop(image: tf.Tensor, input_size: int, crop_ratio: float) -> tf.Tensor:
    """One decoded image (H, W, C) -> (input_size, input_size, C) uint8, as the pipeline does it.

    The shorter side becomes :func:`resize_size`, the longer ``floor(long * short' / short)``;
    bilinear with antialiasing; then the centre ``input_size`` square, rounded to whole values.
    """
    import tensorflow as tf

    target = resize_size(input_size, crop_ratio)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    short = tf.minimum(h, w)
    new_h, new_w = h * target // short, w * target // short
    resized = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    top, left = (new_h - input_size) // 2, (new_w - input_size) // 2
    crop = tf.slice(resized, tf.stack([top, left, 0]), [input_size, input_size, -1])
    crop = tf.cast(tf.round(tf.clip_by_value(crop, 0.0, 255.0)), tf.uint8)
    return tf.ensure_shape(crop, (input_size, input_size, image.shape[-1]))


def undecodable(e: BaseException) -> str | None:
    """The decoder's reason where ``e`` says an image of a pipeline could not be decoded (a
    corrupt or truncated file, or no image at all), else None.

    TensorFlow raises that from the pipeline as an ``InvalidArgumentError`` that names the
    decoding op (not the file): ``... ParallelMapV2: Input is empty. [[{{node
    decode_image}}]]``; the reason is the end of its first line. The pipeline without TensorFlow
    raises :class:`benchmark.pil_images.UndecodableImage`, which names the file.
    """
    from benchmark.pil_images import UndecodableImage

    if isinstance(e, UndecodableImage):
        return str(e)
    message = str(getattr(e, "message", None) or e)
    if type(e).__name__ != "InvalidArgumentError" or f"{{{{node {_DECODE}" not in message:
        return None
    first = message.strip().splitlines()[0]
    return first.rsplit(": ", 1)[-1].strip() or first


def _load_image(path: tf.Tensor, label: tf.Tensor, fmt: ImageFormat) -> tuple[tf.Tensor, tf.Tensor]:
    import tensorflow as tf

    raw = tf.io.read_file(path)
    # decode_jpeg decodes PNG, GIF, BMP and WebP too; the accurate DCT is Pillow's (and libjpeg's)
    image = tf.io.decode_jpeg(raw, fmt.channels, dct_method="INTEGER_ACCURATE", name=_DECODE)
    image.set_shape((None, None, fmt.channels))
    return resize_and_crop(image, fmt.size, fmt.crop_ratio), label


def file_batches(
    files: list[str], labels: list[int], fmt: ImageFormat, batch_size: int, cache: bool
) -> tf.data.Dataset:
    """``(images, labels)`` batches of ``files`` in order; ``cache`` keeps the cropped images."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files, tf.string), tf.constant(labels, tf.int32))
    )
    ds = ds.map(
        functools.partial(_load_image, fmt=fmt), num_parallel_calls=autotune, deterministic=True
    )
    if cache:
        ds = ds.cache()
    ds = ds.batch(batch_size, num_parallel_calls=autotune, deterministic=True)
    ds = ds.map(
        lambda x, y: (preprocess_batch(fmt.preprocess, x), y),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    return ds.prefetch(autotune)
