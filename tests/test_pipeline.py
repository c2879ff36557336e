"""The pipeline without TensorFlow (NumPy and Pillow) gives the tf.data pipeline's tensors.

Tolerance: a crop's pixels are at most ``MAX_LEVELS_APART`` (one grey level) from the tf.data
crop's, on few pixels (both resize in float32 with the same filter; only values near .5 round
differently); decoding is the same (libjpeg's accurate DCT in both); preprocessing is the same
arithmetic (float32, 1e-5 relative).
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import images
from benchmark.datasets import open_dataset
from benchmark.ilsvrc import imagenet_wnids
from benchmark.pil_images import (
    MAX_LEVELS_APART,
    UndecodableImage,
    decode,
    resize_and_crop_array,
)
from benchmark.preprocess import preprocess_fn
from benchmark.registry import MODELS

tf = pytest.importorskip("tensorflow")
Image = pytest.importorskip("PIL.Image")

DIFFERING_SHARE = 0.005  # at most this share of a crop's values differ (by one level)


def spec(**changes) -> types.SimpleNamespace:
    attrs = dict(name="t", input_size=32, channels=3, crop_ratio=0.875, num_classes=1000,
                 preprocess="builtin")  # fmt: skip
    attrs.update(changes)
    return types.SimpleNamespace(**attrs)


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A photograph-like image: smooth colour gradients, edges and sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(xx / 17.0), 128 + 100 * np.cos(yy / 23.0),
                    ((xx // 40 + yy // 40) % 2) * 200.0], axis=-1)  # fmt: skip
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def val_dir(root: Path) -> Path:
    """Class folders of JPEGs of several shapes, qualities and subsamplings, and a PNG named
    .JPEG (as ILSVRC2012 has)."""
    shapes = [(375, 500, 90, 2), (500, 333, 75, 0), (260, 260, 95, 1), (96, 120, 85, 2),
              (333, 500, 60, 2)]  # fmt: skip
    for i, (h, w, quality, subsampling) in enumerate(shapes):
        folder = root / imagenet_wnids()[i * 7]
        folder.mkdir(parents=True)
        Image.fromarray(photo(h, w, i)).save(folder / f"{i}.JPEG", format="JPEG",
                                             quality=quality, subsampling=subsampling)  # fmt: skip
    Image.fromarray(photo(200, 150, 9)).save(root / imagenet_wnids()[0] / "png.JPEG", "PNG")
    return root


def both(data, model, batch_size: int = 2, **kwargs) -> tuple[np.ndarray, ...]:
    tf_ds = open_dataset(data, model, **kwargs)
    np_ds = open_dataset(data, model, pipeline="numpy", **kwargs)
    a = [(x.numpy(), y.numpy()) for x, y in tf_ds.batches(batch_size)]
    b = list(np_ds.batches(batch_size).as_numpy_iterator())
    assert [len(y) for _, y in a] == [len(y) for _, y in b]
    cat = np.concatenate
    return (
        cat([x for x, _ in a]),
        cat([y for _, y in a]),
        cat([x for x, _ in b]),
        cat([y for _, y in b]),
    )


@pytest.mark.parametrize(("size", "ratio"), [(224, 0.875), (96, 1.0), (75, 0.8)])
def test_numpy_pipeline_matches_tf_data_on_real_jpegs(tmp_path, size, ratio) -> None:
    root = val_dir(tmp_path / "val")
    tf_x, tf_y, np_x, np_y = both(root, spec(input_size=size, crop_ratio=ratio))
    assert np_x.dtype == np.float32 and np_x.shape == tf_x.shape == (6, size, size, 3)
    np.testing.assert_array_equal(np_y, tf_y)
    apart = np.abs(np_x - tf_x)
    assert apart.max() <= MAX_LEVELS_APART
    assert (apart > 0).mean() <= DIFFERING_SHARE


def test_both_decoders_give_the_same_pixels(tmp_path) -> None:
    path = tmp_path / "a.jpg"
    Image.fromarray(photo(120, 160, 3)).save(path, quality=80)
    raw = tf.io.read_file(str(path))
    ours = tf.io.decode_jpeg(raw, 3, dct_method="INTEGER_ACCURATE").numpy()
    np.testing.assert_array_equal(decode(str(path), 3), ours)


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2", "densenet121", "efficientnetv2_s"])
def test_one_channel_and_each_preprocessing_match(tmp_path, name) -> None:
    """Per-model preprocessing (caffe, tf, torch, builtin) on the same crops."""
    root = val_dir(tmp_path / "val")
    model = MODELS[name]
    small = spec(input_size=48, crop_ratio=model.crop_ratio, preprocess=preprocess_fn(model))
    tf_x, _, _, _ = both(root, small)
    numpy_small = spec(input_size=48, crop_ratio=model.crop_ratio,
                       preprocess=preprocess_fn(model, numpy=True))  # fmt: skip
    np_x = np.concatenate([x for x, _ in open_dataset(root, numpy_small, pipeline="numpy")
                           .batches(3)])  # fmt: skip
    level = {"caffe": 1.0, "tf": 1 / 127.5, "torch": 1 / 255 / 0.224}.get(model.preprocess_mode, 1)
    assert np.abs(np_x - tf_x).max() <= MAX_LEVELS_APART * level * 1.0001
    grey_tf, _, grey_np, _ = both(root, spec(input_size=40, channels=1))
    assert grey_np.shape == (6, 40, 40, 1) and np.abs(grey_np - grey_tf).max() <= MAX_LEVELS_APART


@pytest.mark.parametrize(
    "mode_model", ["resnet50", "mobilenetv2", "densenet121", "mobilenetv3_small"]
)
def test_numpy_preprocessing_is_the_tensorflow_arithmetic(mode_model) -> None:
    model = MODELS[mode_model]
    batch = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    kept = batch.copy()
    got = preprocess_fn(model, numpy=True)(batch)
    want = np.asarray(preprocess_fn(model)(batch))
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch, kept)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 140),
    w=st.integers(1, 140),
    size=st.integers(1, 48),
    ratio=st.floats(0.5, 1.0),
    seed=st.integers(0, 2**16),
)
def test_resize_and_crop_agree_for_any_shape(h, w, size, ratio, seed) -> None:
    """Shrinking and enlarging, odd and even excess, noise (the hardest case for rounding)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = resize_and_crop_array(pixels, size, ratio).astype(int)
    theirs = images.resize_and_crop(tf.constant(pixels), size, ratio).numpy().astype(int)
    assert ours.shape == theirs.shape == (size, size, 3)
    assert np.abs(ours - theirs).max() <= MAX_LEVELS_APART


def test_synthetic_and_digits_are_the_same_arrays() -> None:
    tf_x, tf_y, np_x, np_y = both("synthetic", spec(input_size=16), batch_size=7, limit=30)
    np.testing.assert_array_equal(np_x, tf_x)
    np.testing.assert_array_equal(np_y, tf_y)
    digits = spec(name="digits_cnn", input_size=8, channels=1, crop_ratio=1.0, num_classes=10)
    tf_x, tf_y, np_x, np_y = both("digits", digits, batch_size=64, limit=100)
    np.testing.assert_array_equal(np_x, tf_x)
    np.testing.assert_array_equal(np_y, tf_y)


def test_take_cache_and_passes_repeat(tmp_path) -> None:
    root = val_dir(tmp_path / "val")
    batches = open_dataset(root, spec(), pipeline="numpy").batches(4, cache=True)
    first = [x.copy() for x, _ in batches]
    again = [x for x, _ in batches]  # from the cache
    assert [len(x) for x in first] == [4, 2]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert len(list(batches.take(1))) == 1


def test_an_undecodable_file_names_itself(tmp_path) -> None:
    root = val_dir(tmp_path / "val")
    broken = next(root.glob("*/0.JPEG"))
    broken.write_bytes(broken.read_bytes()[:50])
    with pytest.raises(UndecodableImage) as caught:
        list(open_dataset(root, spec(), pipeline="numpy").batches(2))
    assert caught.value.path == str(broken)
    assert images.undecodable(caught.value).startswith(str(broken))
