"""The offline digits path: the split, the CNN, its training cache and the digits dataset."""

from __future__ import annotations

import logging
import time
import types

import numpy as np
import pytest

from benchmark import digits
from benchmark.datasets import open_dataset

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def trained(cache_dir):
    started = time.monotonic()
    model = digits.trained_model(cache_dir)
    return model, time.monotonic() - started


def test_split_is_fixed_stratified_and_scaled():
    x_train, y_train, x_test, y_test = digits.load_split()
    assert x_train.shape == (1347, 8, 8, 1) and x_test.shape == (450, 8, 8, 1)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int32
    assert x_test.min() == 0 and x_test.max() == 255
    # stratified: each digit's share of the test split is its share of the whole
    whole = np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    assert np.abs(np.bincount(y_test, minlength=10) - whole / 4).max() <= 1
    assert not x_test.flags.writeable
    # the same split every time: compare with a fresh computation
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) * (255 / 16)
    first = x_test[0, :, :, 0]
    assert any(np.allclose(first, image) for image in images)


def test_cnn_takes_0_to_255_8x8_and_gives_10_probabilities():
    model = digits.build_digits_cnn()
    assert tuple(model.input_shape) == (None, 8, 8, 1)
    assert tuple(model.output_shape) == (None, 10)
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    out = np.asarray(model.predict(np.full((2, 8, 8, 1), 255, np.float32), verbose=0))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.timing
def test_trained_model_is_accurate_and_cached(trained, cache_dir):
    model, first_s = trained
    path = cache_dir / digits.CACHE_NAME
    assert path.is_file()
    assert digits.accuracy(model) > 0.95
    mtime = path.stat().st_mtime_ns
    started = time.monotonic()
    again = digits.trained_model(cache_dir)
    assert path.stat().st_mtime_ns == mtime  # loaded, not trained and saved again
    assert time.monotonic() - started < first_s
    _, _, x_test, _ = digits.load_split()
    np.testing.assert_allclose(
        model.predict(x_test[:32], verbose=0), again.predict(x_test[:32], verbose=0), atol=1e-6
    )
    assert not list(cache_dir.glob(".*tmp*"))  # no temporary file left behind


def test_unreadable_cache_is_trained_again(tmp_path, monkeypatch, caplog):
    path = tmp_path / digits.CACHE_NAME
    path.write_bytes(b"not a keras file")
    monkeypatch.setattr(digits, "EPOCHS", 1)
    with caplog.at_level(logging.WARNING, logger="benchmark.digits"):
        model = digits.trained_model(tmp_path)
    assert "cannot load" in caplog.text and "training the digits CNN again" in caplog.text
    assert tuple(model.output_shape) == (None, 10)
    keras.models.load_model(path)  # replaced by a good file


def test_digits_dataset_is_the_labelled_test_split(trained):
    spec = types.SimpleNamespace(
        name="digits_cnn", input_size=8, channels=1, crop_ratio=1.0, num_classes=10
    )
    dataset = open_dataset("digits", spec, preprocess=lambda x: x)
    assert (dataset.name, dataset.size, dataset.labeled) == ("digits", 450, True)
    assert dataset.complete is True and dataset.classes == 10
    assert dataset.image_shape == (8, 8, 1)
    model, _ = trained
    correct = total = 0
    for x, y in dataset.batches(64):
        assert x.shape[1:] == (8, 8, 1) and x.dtype.name == "float32"
        scores = model.predict(x.numpy(), verbose=0)
        correct += int((scores.argmax(axis=1) == y.numpy()).sum())
        total += len(y)
    assert total == 450
    assert correct / total > 0.9
    _, _, _, y_test = digits.load_split()
    labels = np.concatenate([y.numpy() for _, y in dataset.batches(100)])
    np.testing.assert_array_equal(labels, y_test)
    limited = open_dataset("digits", spec, limit=45, preprocess=lambda x: x)
    assert limited.size == 45 and limited.available == 450


def test_digits_dataset_resized_for_other_inputs():
    spec = types.SimpleNamespace(input_size=16, channels=3, crop_ratio=0.875, num_classes=10)
    dataset = open_dataset("digits", spec, limit=10, preprocess=lambda x: x)
    x, _ = next(iter(dataset.batches(10)))
    assert x.shape == (10, 16, 16, 3)
    np.testing.assert_allclose(x[..., 0], x[..., 2])
