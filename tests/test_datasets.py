"""Datasets: the wnid list, ILSVRC2012 layouts and labels, resize and crop, errors, synthetic."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest

from benchmark import datasets, ilsvrc
from benchmark.datasets import open_dataset
from benchmark.ilsvrc import imagenet_wnids
from benchmark.images import resize_and_crop, resize_size
from benchmark.listing import registry_json
from exporters.errors import UsageError

tf = pytest.importorskip("tensorflow")

WNIDS = imagenet_wnids()
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def make_spec(**changes) -> types.SimpleNamespace:
    attrs = dict(
        name="test_model",
        input_size=32,
        channels=3,
        crop_ratio=0.875,
        num_classes=1000,
        preprocess=lambda x: x,
    )
    attrs.update(changes)
    return types.SimpleNamespace(**attrs)


def write_image(path: Path, pixels: np.ndarray | tuple[int, ...], size=(40, 50)) -> Path:
    """A JPEG (or PNG, by suffix) of ``pixels``, or of one colour filling ``size`` (h, w)."""
    if isinstance(pixels, tuple):
        pixels = np.broadcast_to(np.array(pixels, np.uint8), (*size, len(pixels)))
    image = tf.constant(np.ascontiguousarray(pixels, np.uint8))
    is_png = path.suffix.lower() == ".png"
    data = tf.io.encode_png(image) if is_png else tf.io.encode_jpeg(image, quality=95)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.numpy())
    return path


def collect(dataset, batch_size: int = 4, **kwargs) -> tuple[np.ndarray, np.ndarray, list[int]]:
    images, labels, sizes = [], [], []
    for x, y in dataset.batches(batch_size, **kwargs):
        images.append(x.numpy())
        labels.append(y.numpy())
        sizes.append(len(y))
    return np.concatenate(images), np.concatenate(labels), sizes


def class_folders(root: Path, wnid_indices, per_class: int = 1) -> None:
    for i in wnid_indices:
        for k in range(per_class):
            write_image(root / WNIDS[i] / f"img{k}.JPEG", (i % 256, k * 40, 100))


# -- the class list -------------------------------------------------------------------------


def test_wnid_list_is_the_1000_sorted_ilsvrc2012_classes():
    lines = ilsvrc.WNIDS_FILE.read_text().splitlines()
    assert lines == list(WNIDS)
    assert len(lines) == 1000
    assert len(set(lines)) == 1000
    assert lines == sorted(lines)
    assert all(re.fullmatch(r"n\d{8}", w) for w in lines)
    assert lines[0] == "n01440764"  # tench, Keras class 0
    assert lines[999] == "n15075141"  # toilet tissue, Keras class 999
    assert lines[1] == "n01443537" and lines[500] == "n03042490"  # goldfish, cliff dwelling


def test_resize_size_follows_the_crop_ratio():
    assert resize_size(224, 0.875) == 256
    assert resize_size(299, 0.875) == 342  # 341.7: rounded, as torchvision's Inception eval
    assert resize_size(600, 0.9494) == 632  # EfficientNet B7: 600 + 32 (floor would give 631)
    assert resize_size(32, 1.0) == 32


def test_every_model_is_resized_as_the_registry_lists(monkeypatch):
    """`benchmark models --json` lists each model's resize_size: the pipeline resizes to it."""
    resized = []
    real_resize = tf.image.resize

    def spy(image, size, *args, **kwargs):
        resized.append(tuple(int(d) for d in size))
        return real_resize(image, size, *args, **kwargs)

    monkeypatch.setattr(tf.image, "resize", spy)
    for listed in registry_json():
        resized.clear()
        image = tf.zeros((70, 100, listed["channels"]), tf.uint8)  # landscape, 10:7
        out = resize_and_crop(image, listed["input_size"], listed["crop_ratio"])
        assert out.shape == (listed["input_size"], listed["input_size"], listed["channels"])
        [(height, width)] = resized
        assert height == listed["resize_size"], listed["name"]  # the shorter side
        assert width == 100 * height // 70, listed["name"]


# -- class folders --------------------------------------------------------------------------


def test_class_folders_get_global_imagenet_indices(tmp_path):
    class_folders(tmp_path, [999, 0, 500])
    dataset = open_dataset(tmp_path, make_spec())
    assert dataset.name == f"ilsvrc2012-val:{tmp_path}"
    assert dataset.labeled and dataset.size == dataset.available == 3
    assert dataset.classes == 3 and dataset.image_shape == (32, 32, 3)
    assert dataset.complete is False
    images, labels, sizes = collect(dataset, batch_size=2)
    assert labels.tolist() == [0, 500, 999]
    assert labels.dtype == np.int32
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
    assert sizes == [2, 1]
    # solid colours survive the pipeline: class 500's image is (500 % 256, 0, 100)
    np.testing.assert_allclose(images[1].mean(axis=(0, 1)), (244, 0, 100), atol=3)


def test_centre_crop_of_a_wide_and_a_tall_image(tmp_path):
    # 300 wide x 200 high: left half red, right half blue, a green band at the far left that
    # the resize (shorter side 200 -> 37) and centre crop (32 of 55 columns) must cut away.
    wide = np.zeros((200, 300, 3), np.uint8)
    wide[:, :150], wide[:, 150:], wide[:, :40] = RED, BLUE, GREEN
    write_image(tmp_path / WNIDS[1] / "wide.JPEG", wide)
    # 200 wide x 300 high: top half red, bottom half blue, a green band at the bottom.
    tall = np.zeros((300, 200, 3), np.uint8)
    tall[:150], tall[150:], tall[-40:] = RED, BLUE, GREEN
    write_image(tmp_path / WNIDS[2] / "tall.png", tall)
    images, labels, _ = collect(open_dataset(tmp_path, make_spec()))
    assert labels.tolist() == [1, 2]
    wide_crop, tall_crop = images
    np.testing.assert_allclose(wide_crop[:, :14].reshape(-1, 3).mean(axis=0), RED, atol=4)
    np.testing.assert_allclose(wide_crop[:, 18:].reshape(-1, 3).mean(axis=0), BLUE, atol=4)
    np.testing.assert_allclose(tall_crop[:14].reshape(-1, 3).mean(axis=0), RED, atol=1)
    np.testing.assert_allclose(tall_crop[18:].reshape(-1, 3).mean(axis=0), BLUE, atol=1)
    for crop in images:
        assert crop[..., 1].max() < 30  # no green: it lies outside the centre
        assert crop.min() >= 0 and crop.max() <= 255
        np.testing.assert_array_equal(crop, np.round(crop))  # whole pixel values


def test_resize_and_crop_shapes_and_channels():
    for h, w in [(37, 1000), (1000, 37), (8, 8), (224, 224)]:
        out = resize_and_crop(tf.zeros((h, w, 3), tf.uint8), 24, 0.875)
        assert out.shape == (24, 24, 3) and out.dtype == tf.uint8


def test_one_channel_models_get_grey_images(tmp_path):
    write_image(tmp_path / WNIDS[3] / "a.jpg", (90, 90, 90))
    images, _, _ = collect(open_dataset(tmp_path, make_spec(channels=1, input_size=16)))
    assert images.shape == (1, 16, 16, 1)
    np.testing.assert_allclose(images.mean(), 90, atol=2)


def test_val_folder_inside_the_given_directory(tmp_path):
    class_folders(tmp_path / "val", [7, 8])
    class_folders(tmp_path / "train", [9])
    dataset = open_dataset(tmp_path, make_spec())
    assert dataset.size == 2
    assert collect(dataset)[1].tolist() == [7, 8]


def test_suffixes_any_case_and_other_files_ignored(tmp_path):
    write_image(tmp_path / WNIDS[4] / "a.PNG", (10, 20, 30))
    write_image(tmp_path / WNIDS[4] / "b.Jpeg", (10, 20, 30))
    write_image(tmp_path / WNIDS[4] / "c.JPEG.png", (10, 20, 30))
    (tmp_path / WNIDS[4] / "notes.txt").write_text("not an image")
    (tmp_path / WNIDS[4] / ".hidden.JPEG").write_text("not an image either")
    (tmp_path / "README").write_text("hello")
    (tmp_path / "annotations").mkdir()  # a folder without images is no class folder
    # a PNG saved under a .JPEG name (ILSVRC2012 has one) decodes too
    write_image(tmp_path / WNIDS[5] / "x.png", (1, 2, 3)).rename(tmp_path / WNIDS[5] / "x.JPEG")
    images, labels, _ = collect(open_dataset(tmp_path, make_spec()))
    assert labels.tolist() == [4, 4, 4, 5]
    np.testing.assert_allclose(images[3].mean(axis=(0, 1)), (1, 2, 3), atol=0.01)


def test_order_is_deterministic_and_cache_gives_the_same(tmp_path):
    class_folders(tmp_path, [40, 30, 20, 10], per_class=3)
    dataset = open_dataset(tmp_path, make_spec())
    first = collect(dataset, batch_size=5)
    second = collect(dataset, batch_size=5)
    cached = dataset.batches(5, cache=True)
    for _ in range(2):
        images = np.concatenate([x.numpy() for x, _ in cached])
        np.testing.assert_array_equal(images, first[0])
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1].tolist() == [10] * 3 + [20] * 3 + [30] * 3 + [40] * 3
    # each image is its own colour: images line up with their labels
    np.testing.assert_allclose(first[0][:, 10, 10, 0], first[1], atol=2)


def test_preprocess_gets_float32_batches_of_0_to_255(tmp_path):
    write_image(tmp_path / WNIDS[6] / "a.JPEG", (255, 255, 255))
    write_image(tmp_path / WNIDS[6] / "b.JPEG", (0, 0, 0))
    seen = []

    def preprocess(x):
        seen.append((x.dtype, x.shape.rank))
        return x / 127.5 - 1.0

    images, _, _ = collect(
        open_dataset(tmp_path, make_spec(preprocess=None), preprocess=preprocess)
    )
    assert seen and all(s == (tf.float32, 4) for s in seen)
    np.testing.assert_allclose(images[0], 1.0, atol=0.02)
    np.testing.assert_allclose(images[1], -1.0, atol=0.02)


# -- flat layout with a labels file ---------------------------------------------------------


def flat_images(root: Path, names) -> None:
    for name in names:
        write_image(root / name, (50, 60, 70))


def test_flat_layout_with_labels_csv(tmp_path):
    flat_images(tmp_path, ["v2.JPEG", "v1.JPEG", "v3.jpg"])
    (tmp_path / "labels.csv").write_text(
        f"filename,wnid\nv1.JPEG,{WNIDS[10]}\nv2.JPEG,{WNIDS[0]}\nv3,{WNIDS[999]}\n"
    )
    dataset = open_dataset(tmp_path, make_spec())
    assert dataset.size == 3 and dataset.labeled
    assert collect(dataset)[1].tolist() == [10, 0, 999]  # v1, v2, v3: sorted by file name


def test_flat_layout_with_val_labels_csv_without_header(tmp_path):
    flat_images(tmp_path, ["a.jpeg", "b.jpeg"])
    (tmp_path / "val_labels.csv").write_text(f"a.jpeg,{WNIDS[1]}\n\nb.jpeg,{WNIDS[2]}\n")
    assert collect(open_dataset(tmp_path, make_spec()))[1].tolist() == [1, 2]


KAGGLE = (
    "ImageId,PredictionString\n"
    f"ILSVRC2012_val_00000002,{WNIDS[321]} 1 2 30 40 {WNIDS[321]} 5 6 70 80\n"
    f"ILSVRC2012_val_00000001,{WNIDS[65]} 10 20 300 400 \n"
)


def test_flat_layout_with_kaggle_solution_file(tmp_path):
    flat_images(tmp_path, ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"])
    (tmp_path / "LOC_val_solution.csv").write_text(KAGGLE)
    assert collect(open_dataset(tmp_path, make_spec()))[1].tolist() == [65, 321]


def test_kaggle_solution_file_found_above_its_image_folder(tmp_path):
    val = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    flat_images(val, ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"])
    (tmp_path / "LOC_val_solution.csv").write_text(KAGGLE)
    assert collect(open_dataset(val, make_spec()))[1].tolist() == [65, 321]


# -- limit and completeness -----------------------------------------------------------------


def test_limit_spreads_over_the_classes(tmp_path):
    class_folders(tmp_path, [100, 200, 300, 400], per_class=3)
    dataset = open_dataset(tmp_path, make_spec(), limit=4)
    assert (dataset.size, dataset.available, dataset.classes) == (4, 12, 4)
    assert collect(dataset)[1].tolist() == [100, 200, 300, 400]
    assert open_dataset(tmp_path, make_spec(), limit=6).classes == 4
    assert open_dataset(tmp_path, make_spec(), limit=50).size == 12


def test_complete_means_every_image_of_every_class(tmp_path, monkeypatch):
    class_folders(tmp_path, [1, 2, 3], per_class=2)
    monkeypatch.setattr(ilsvrc, "VAL_IMAGES", 6)
    monkeypatch.setattr(ilsvrc, "CLASSES", 3)
    spec = make_spec(num_classes=None)
    assert open_dataset(tmp_path, spec).complete is True
    assert open_dataset(tmp_path, spec, limit=5).complete is False


# -- errors ---------------------------------------------------------------------------------


def error_of(data, spec=None, limit=None) -> str:
    with pytest.raises(UsageError) as info:
        open_dataset(data, spec or make_spec(), limit)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_directory_and_a_file(tmp_path):
    message = error_of(tmp_path / "nope")
    assert "no such directory" in message and "synthetic" in message
    (tmp_path / "file.JPEG").write_text("x")
    assert "not a directory" in error_of(tmp_path / "file.JPEG")


def test_directory_without_images(tmp_path):
    (tmp_path / WNIDS[0]).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    message = error_of(tmp_path)
    assert "no images" in message and "DIR/<wnid>/*.JPEG" in message


def test_class_folders_that_are_not_wnids(tmp_path):
    class_folders(tmp_path, [0])
    for name in ["cats", "dogs", "n99999999", "zebras"]:
        write_image(tmp_path / name / "a.jpg", (1, 1, 1))
    message = error_of(tmp_path)
    assert "4 folder(s)" in message and "not ILSVRC2012 classes" in message
    assert "cats, dogs, n99999999, ..." in message and "n01440764" in message


def test_loose_images_beside_class_folders(tmp_path):
    class_folders(tmp_path, [0])
    flat_images(tmp_path, ["stray.JPEG"])
    assert "loose image" in error_of(tmp_path)


def test_flat_images_without_a_labels_file(tmp_path):
    flat_images(tmp_path, ["a.JPEG", "b.JPEG"])
    message = error_of(tmp_path)
    assert "2 image(s) but no labels file" in message
    for name in ("labels.csv", "val_labels.csv", "LOC_val_solution.csv", "DIR/<wnid>/"):
        assert name in message


def test_partial_set_beside_the_full_labels_file(tmp_path, caplog):
    flat_images(tmp_path, ["b.JPEG"])
    (tmp_path / "labels.csv").write_text(
        f"a.JPEG,{WNIDS[0]}\nb.JPEG,{WNIDS[7]}\nc.JPEG,{WNIDS[2]}\n"
    )
    with caplog.at_level("INFO", logger="benchmark.ilsvrc"):
        dataset = open_dataset(tmp_path, make_spec())
    assert dataset.size == 1 and not dataset.complete
    assert collect(dataset)[1].tolist() == [7]
    assert "labels 2 images that are not in" in caplog.text


def test_images_without_labels(tmp_path):
    flat_images(tmp_path, ["a.JPEG", "b.JPEG", "c.JPEG"])
    (tmp_path / "labels.csv").write_text(f"a.JPEG,{WNIDS[0]}\n")
    message = error_of(tmp_path)
    assert "no label for 2 of the 3 images" in message and "b.JPEG" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("a.JPEG,n01440764\nb.JPEG,tench\n", ":2: expected 'filename,wnid'"),
        ("a.JPEG,n00000001\n", "n00000001 is not one of the 1,000"),
        ("a.JPEG,n01440764\na.JPEG,n01443537\n", "labelled twice"),
        ("filename,wnid\n", "no labels in it"),
    ],
)
def test_bad_labels_files(tmp_path, content, words):
    flat_images(tmp_path, ["a.JPEG"])
    (tmp_path / "labels.csv").write_text(content)
    assert words in error_of(tmp_path)


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_must_be_positive(limit):
    assert "--limit" in error_of("synthetic", limit=limit)


def test_batch_size_must_be_positive():
    dataset = open_dataset("synthetic", make_spec())
    with pytest.raises(UsageError, match="batch size"):
        dataset.batches(0)


def test_model_with_other_classes_is_refused(tmp_path):
    class_folders(tmp_path, [0])
    message = error_of(tmp_path, make_spec(num_classes=10))
    assert "predicts 10 classes" in message and "synthetic" in message
    assert "predicts 1000 classes" in error_of("digits", make_spec())


# -- synthetic ------------------------------------------------------------------------------


def test_synthetic_images():
    dataset = open_dataset("synthetic", make_spec(), limit=10)
    assert (dataset.name, dataset.size, dataset.labeled) == ("synthetic", 10, False)
    assert dataset.complete is True and dataset.classes == 0
    images, labels, sizes = collect(dataset, batch_size=4)
    assert sizes == [4, 4, 2]
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.float32
    assert set(labels.tolist()) == {-1}
    assert images.min() >= 0 and images.max() <= 255 and images.std() > 50
    np.testing.assert_array_equal(images, np.round(images))
    again = collect(open_dataset("synthetic", make_spec(), limit=10), batch_size=4)[0]
    np.testing.assert_array_equal(images, again)  # a fixed seed
    assert not np.array_equal(images[0], images[1])


def test_synthetic_default_size_channels_and_preprocess():
    dataset = open_dataset("synthetic", make_spec(channels=1, input_size=8))
    assert dataset.size == datasets.SYNTHETIC_LIMIT == 1000
    images, _, sizes = collect(dataset, batch_size=64)
    assert images.shape == (1000, 8, 8, 1) and len(sizes) == 16
    scaled = collect(open_dataset("synthetic", make_spec(preprocess=lambda x: x / 255.0)))[0]
    assert scaled.max() <= 1.0 and scaled.max() > 0.9
