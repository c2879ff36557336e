"""ILSVRC2012 validation images on disk: the layouts found, and each image's label.

- The class-folder layout, ``DIR/<wnid>/*.JPEG`` (also ``.jpg``, ``.jpeg``, ``.png``, any case),
  or a parent with that layout in ``DIR/val``. The label is the wnid's index among the 1,000
  classes in ``imagenet_wnids.txt`` (Keras' ImageNet output order), whichever folders are
  present.
- The flat layout, ``DIR/*.JPEG`` with a labels file in ``DIR``: ``labels.csv`` or
  ``val_labels.csv`` (lines ``filename,wnid``; a header line is optional; the filename may leave
  out its extension), or Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the
  first token of the prediction string is the wnid), which is also looked for up to four folders
  above ``DIR``, where Kaggle's archive keeps it.

Every image needs a label and every label an image; a labels file that also names images not
in ``DIR`` (a partial copy of the set) is fine, and logged. Files sort by class, then file name.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import re
from pathlib import Path

from exporters.errors import UsageError

log = logging.getLogger(__name__)

WNIDS_FILE = Path(__file__).with_name("imagenet_wnids.txt")
VAL_IMAGES = 50_000
CLASSES = 1000
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
LABEL_FILES = ("labels.csv", "val_labels.csv", "LOC_val_solution.csv")
KAGGLE_LABELS = "LOC_val_solution.csv"
KAGGLE_LEVELS = 4
LAYOUTS = "DIR/<wnid>/*.JPEG, or DIR/*.JPEG with labels.csv"

_WNID = re.compile(r"n\d{8}")


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 ILSVRC2012 WordNet ids in the order Keras' ImageNet models predict them."""
    return tuple(WNIDS_FILE.read_text(encoding="ascii").split())


@functools.cache
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


def labelled_files(path: Path) -> tuple[list[str], list[int]]:
    """The images under the directory ``path`` in either layout, and their class indices.

    Raises :class:`UsageError` saying what was expected when ``path`` holds no images, or images
    that cannot be labelled.
    """
    root, images, dirs = _val_root(path)
    files, labels = _class_folders(root, images, dirs)
    if files:
        return files, labels
    if not images:
        raise UsageError(
            f"--data {os.path.normpath(path)}: no images (.JPEG, .jpg, .jpeg, .png) in it or in "
            f"class folders; expected {LAYOUTS}"
        )
    return _flat(root, images)


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
