"""What the benchmark feeds a model: ILSVRC2012 validation images, synthetic images, or digits.

    dataset = open_dataset("/data/imagenet/val", spec, limit=1000)
    for images, labels in dataset.batches(64):   # float32 preprocessed images, int32 labels
        ...

``spec`` is anything with ``input_size``, ``channels`` (3, or 1 for digits) and ``crop_ratio``
(a :class:`benchmark.models.ModelSpec`); the preprocessing is ``preprocess=`` when given, else
``spec.preprocess`` when that is callable, else ``benchmark.models.preprocess_fn(spec)``. It gets
float32 batches of pixel values 0..255, (N, H, W, C), and must be made of TensorFlow ops, since
it runs inside the ``tf.data`` pipeline.

Sources (``data``):

- a directory in the ILSVRC2012 validation class-folder layout, ``DIR/<wnid>/*.JPEG`` (also
  ``.jpg``, ``.jpeg``, ``.png``, any case), or a parent with that layout in ``DIR/val``. The label
  is the wnid's index among the 1,000 classes in ``imagenet_wnids.txt`` (Keras' ImageNet output
  order), whichever folders are present. Or the flat layout, ``DIR/*.JPEG`` with a labels file
  in ``DIR``: ``labels.csv`` or ``val_labels.csv`` (lines ``filename,wnid``; a header line is
  optional; the filename may leave out its extension), or Kaggle's ``LOC_val_solution.csv``
  (``ImageId,PredictionString``; the first token of the prediction string is the wnid), which
  is also looked for up to four folders above ``DIR``, where Kaggle's archive keeps it. Every
  image needs a label and every label an image. A directory with fewer than all 50,000 images
  is fine: :attr:`Dataset.complete` says whether it is the whole validation set.
- ``"synthetic"``: random images of pixel values 0..255 from a fixed seed, no labels. A pool
  of 32 images is made once and cycled: every batch holds pool images 0, 1, ..., 31, 0, 1, ...
  and the same preprocessed batch tensor is handed out again, so feeding costs nothing beyond
  the copy to the device. 1,000 images unless ``limit`` says otherwise.
- ``"digits"``: the held-out split of scikit-learn's 8x8 digits (:mod:`benchmark.digits`),
  labelled 0..9, fully offline.

Image pipeline for files: decode (3 channels, or 1 for a 1-channel model; PNGs and the odd PNG
named ``.JPEG`` too), resize so the shorter side is ``floor(input_size / crop_ratio)`` and the
longer keeps the aspect ratio (truncated, as torchvision's ``Resize(int)`` does; bilinear with
antialiasing), centre-crop ``input_size`` x ``input_size`` (offset ``(excess) // 2``), round to
whole pixel values (as PIL-based reference evaluations do), batch, convert to float32 and
preprocess the batch, prefetch. Decoding runs in parallel and in order: labels always line up
with their images.

``limit`` N keeps N images evenly spread over the sorted list (image ``floor(i * total / N)``
for ``i < N``; class folders sort by class, then file name), so a subset covers as many classes
as it can (limit 1,000 of the full set: one image of every class) and is the same on every
machine.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from exporters.errors import UsageError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import tensorflow as tf

WNIDS_FILE = Path(__file__).with_name("imagenet_wnids.txt")
ILSVRC_VAL_IMAGES = 50_000
ILSVRC_CLASSES = 1000
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
LABEL_FILES = ("labels.csv", "val_labels.csv", "LOC_val_solution.csv")
KAGGLE_LABELS = "LOC_val_solution.csv"
KAGGLE_LEVELS = 4
SYNTHETIC_LIMIT = 1000
SYNTHETIC_POOL = 32
SYNTHETIC_SEED = 2012
DEFAULT_CROP_RATIO = 0.875

_WNID = re.compile(r"n\d{8}")
_LAYOUTS = "DIR/<wnid>/*.JPEG, or DIR/*.JPEG with labels.csv"

Preprocess = Callable[[Any], Any]


class ImageSpec(Protocol):
    """What a dataset needs to know of a model (:class:`benchmark.models.ModelSpec` has it)."""

    input_size: int
    channels: int
    crop_ratio: float


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 ILSVRC2012 WordNet ids in the order Keras' ImageNet models predict them."""
    return tuple(WNIDS_FILE.read_text(encoding="ascii").split())


@functools.cache
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


def resize_size(input_size: int, crop_ratio: float) -> int:
    """The shorter side before the centre crop: ``floor(input_size / crop_ratio)`` (224 -> 256)."""
    return max(input_size, math.floor(input_size / crop_ratio + 1e-6))


@dataclass(frozen=True)
class _Format:
    size: int
    channels: int
    crop_ratio: float
    preprocess: Preprocess

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)


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
) -> Dataset:
    """The dataset ``data`` names ("synthetic", "digits" or a directory), shaped for ``spec``.

    Raises :class:`UsageError` with what was expected and the fix when ``data`` is not a usable
    source or ``limit`` is not positive.
    """
    if limit is not None and (isinstance(limit, bool) or limit <= 0):
        raise UsageError(f"--limit {limit}: must be a positive number of images (or leave it out)")
    fmt = _format(spec, preprocess)
    data = os.fspath(data)
    if data == "synthetic":
        return _synthetic(fmt, limit)
    if data == "digits":
        return _digits(fmt, spec, limit)
    if not data:
        raise UsageError(f"--data is empty: give {_LAYOUTS}, 'synthetic' or 'digits'")
    return _ilsvrc(Path(data), fmt, spec, limit)


def _format(spec: ImageSpec, preprocess: Preprocess | None) -> _Format:
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
            from benchmark.models import preprocess_fn

            preprocess = preprocess_fn(spec)  # type: ignore[arg-type]
    return _Format(size, channels, crop_ratio, preprocess)


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


# -- synthetic ------------------------------------------------------------------------------


def _synthetic(fmt: _Format, limit: int | None) -> Dataset:
    count = SYNTHETIC_LIMIT if limit is None else limit

    def build(batch_size: int, cache: bool) -> tf.data.Dataset:
        import tensorflow as tf

        rng = np.random.default_rng(SYNTHETIC_SEED)
        pool = rng.integers(0, 256, size=(SYNTHETIC_POOL, *fmt.shape), dtype=np.uint8)
        cycled = np.resize(pool, (batch_size, *fmt.shape))  # pool images 0, 1, ..., 0, 1, ...
        images = _preprocess(fmt.preprocess, tf.constant(cycled))
        labels = tf.fill([batch_size], tf.constant(-1, tf.int32))
        full, rest = divmod(count, batch_size)
        ds = tf.data.Dataset.from_tensors((images, labels)).repeat(full)
        if rest:
            ds = ds.concatenate(tf.data.Dataset.from_tensors((images[:rest], labels[:rest])))
        return ds.prefetch(tf.data.AUTOTUNE)

    return Dataset("synthetic", count, False, True, count, 0, fmt.shape, build)


# -- digits ---------------------------------------------------------------------------------


def _digits(fmt: _Format, spec: ImageSpec, limit: int | None) -> Dataset:
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
        images = _preprocess(fmt.preprocess, images)
        ds = tf.data.Dataset.from_tensor_slices((images, tf.constant(y, tf.int32)))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    classes = len(set(y.tolist()))
    return Dataset("digits", len(x), True, True, len(x_test), classes, fmt.shape, build)


# -- ILSVRC2012 validation images -----------------------------------------------------------


def _ilsvrc(path: Path, fmt: _Format, spec: ImageSpec, limit: int | None) -> Dataset:
    shown = os.path.normpath(path)
    if not path.exists():
        raise UsageError(
            f"--data {shown}: no such directory; give an ILSVRC2012 validation directory "
            f"({_LAYOUTS}), 'synthetic' or 'digits'"
        )
    if not path.is_dir():
        raise UsageError(f"--data {shown}: not a directory; give {_LAYOUTS}")
    _check_classes(spec, ILSVRC_CLASSES, "ILSVRC2012")
    root, images, dirs = _val_root(path)
    files, labels = _class_folders(root, images, dirs)
    if not files:
        if not images:
            raise UsageError(
                f"--data {shown}: no images (.JPEG, .jpg, .jpeg, .png) in it or in class "
                f"folders; expected {_LAYOUTS}"
            )
        files, labels = _flat(root, images)
    available = len(files)
    keep = _spread(available, limit)
    files = [files[i] for i in keep]
    labels = [labels[i] for i in keep]
    classes = len(set(labels))
    complete = len(files) == ILSVRC_VAL_IMAGES and classes == ILSVRC_CLASSES
    build = functools.partial(_file_batches, files, labels, fmt)
    name = f"ilsvrc2012-val:{shown}"
    return Dataset(name, len(files), True, complete, available, classes, fmt.shape, build)


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _listing(folder: Path) -> tuple[list[str], list[str]]:
    """Sorted names of the image files and subfolders in ``folder``, hidden ones left out."""
    images, dirs = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    dirs.append(entry.name)
                elif _is_image(entry.name) and entry.is_file():
                    images.append(entry.name)
    except OSError as e:
        raise UsageError(f"cannot read {folder}: {e.strerror or e}; check its permissions") from e
    return sorted(images), sorted(dirs)


def _val_root(path: Path) -> tuple[Path, list[str], list[str]]:
    """``path``, or ``path/val`` where ``path`` holds no images nor class folders but ``val``."""
    images, dirs = _listing(path)
    if not images and not any(_WNID.fullmatch(d) for d in dirs):
        val = next((d for d in dirs if d.lower() == "val"), None)
        if val is not None:
            return (path / val, *_listing(path / val))
    return path, images, dirs


def _class_folders(root: Path, loose: list[str], dirs: list[str]) -> tuple[list[str], list[int]]:
    """Files and global labels of the class-folder layout; empty where ``root`` has none."""
    with_images = {}
    for d in dirs:
        images, _ = _listing(root / d)
        if images:
            with_images[d] = images
    if not with_images:
        return [], []
    index = _wnid_index()
    unknown = [d for d in with_images if d not in index]
    if unknown:
        few = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        raise UsageError(
            f"{root}: {len(unknown)} folder(s) of images are not ILSVRC2012 classes ({few}); "
            "the class-folder layout is DIR/<wnid>/*.JPEG with the 1,000 WordNet ids "
            "(n01440764 ... n15075141) as folder names"
        )
    if loose:
        raise UsageError(
            f"{root}: holds class folders and also {len(loose)} loose image(s) "
            f"(e.g. {loose[0]}); finish sorting them into DIR/<wnid>/ folders or move them out"
        )
    files, labels = [], []
    for d in sorted(with_images, key=index.__getitem__):
        for name in with_images[d]:
            files.append(os.path.join(root, d, name))
            labels.append(index[d])
    return files, labels


def _find_labels(root: Path) -> Path | None:
    for name in LABEL_FILES:
        if (root / name).is_file():
            return root / name
    for parent in root.resolve().parents[:KAGGLE_LEVELS]:
        if (parent / KAGGLE_LABELS).is_file():
            return parent / KAGGLE_LABELS
    return None


def _flat(root: Path, images: list[str]) -> tuple[list[str], list[int]]:
    """Files and labels of the flat layout, labelled by the labels file that goes with them."""
    labels_file = _find_labels(root)
    if labels_file is None:
        raise UsageError(
            f"{root}: {len(images)} image(s) but no labels file; put labels.csv or "
            "val_labels.csv (lines 'filename,wnid') or Kaggle's LOC_val_solution.csv in it, "
            "or sort the images into class folders DIR/<wnid>/"
        )
    wnids = _read_labels(labels_file)
    by_key: dict[str, str] = {}
    for name in images:
        by_key.setdefault(name, name)
        by_key.setdefault(os.path.splitext(name)[0], name)
    labelled: dict[str, str] = {}
    unknown = []
    for key, wnid in wnids.items():
        image = by_key.get(key)
        if image is None:
            unknown.append(key)
        else:
            labelled[image] = wnid
    unlabelled = [name for name in images if name not in labelled]
    if unlabelled:
        raise UsageError(
            f"{labels_file}: no label for {len(unlabelled)} of the {len(images)} images in "
            f"{root} (e.g. {unlabelled[0]}); add a line 'filename,wnid' for each"
        )
    if unknown:  # a partial copy of the set beside the full labels file: fine, and said
        log.info("%s labels %d images that are not in %s (e.g. %s): a partial set",
                 labels_file, len(unknown), root, unknown[0])  # fmt: skip
    index = _wnid_index()
    return [os.path.join(root, name) for name in images], [index[labelled[n]] for n in images]


def _read_labels(path: Path) -> dict[str, str]:
    """``{image name or stem: wnid}`` from ``filename,wnid`` lines or Kaggle's solution file."""
    index = _wnid_index()
    wnids: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"cannot read labels file {path}: {e}; expected a CSV text file") from e
    for lineno, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if len(cells) == 1:
            cells = cells[0].split()
        if not any(cells):
            continue
        tokens = cells[1].split() if len(cells) > 1 else []
        wnid = tokens[0] if tokens else ""
        if not _WNID.fullmatch(wnid):
            if lineno == 1:
                continue  # a header line
            raise UsageError(
                f"{path}:{lineno}: expected 'filename,wnid' with a WordNet id like n01440764 "
                f"(or Kaggle's 'ImageId,PredictionString'), got {','.join(row)!r}"
            )
        if wnid not in index:
            raise UsageError(f"{path}:{lineno}: {wnid} is not one of the 1,000 ILSVRC2012 classes")
        name = cells[0].replace("\\", "/").rsplit("/", 1)[-1]
        if wnids.setdefault(name, wnid) != wnid:
            raise UsageError(
                f"{path}:{lineno}: {name} is labelled twice ({wnids[name]} and {wnid}); "
                "keep one label per image"
            )
    if not wnids:
        raise UsageError(f"{path}: no labels in it; expected lines 'filename,wnid'")
    return wnids


# -- tf.data pipeline -----------------------------------------------------------------------


def _preprocess(preprocess: Preprocess, images: tf.Tensor) -> tf.Tensor:
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


def _load_image(path: tf.Tensor, label: tf.Tensor, fmt: _Format) -> tuple[tf.Tensor, tf.Tensor]:
    import tensorflow as tf

    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=fmt.channels, expand_animations=False)
    image.set_shape((None, None, fmt.channels))
    return resize_and_crop(image, fmt.size, fmt.crop_ratio), label


def _file_batches(
    files: list[str], labels: list[int], fmt: _Format, batch_size: int, cache: bool
) -> tf.data.Dataset:
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
        lambda x, y: (_preprocess(fmt.preprocess, x), y),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    return ds.prefetch(autotune)
