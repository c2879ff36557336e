"""Engines: the operating points each runs, ONNX Runtime's cached exports, Keras's precisions
and jit, and runs on JAX without TensorFlow installed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from benchmark import engines
from benchmark.digits import load_split
from benchmark.registry import MODELS

DIGITS = MODELS["digits_cnn"]
NEEDS_ORT = pytest.mark.skipif(
    engines.available("onnxruntime") is not None, reason=str(engines.available("onnxruntime"))
)


@pytest.mark.parametrize(
    ("point", "words"),
    [
        (("jax", "int8", "auto"), "jax does not run precision 'int8': it runs fp32, fp16, bf16"),
        (("onnxruntime", "bf16", "auto"), "run precision 'bf16': it runs fp32, int8"),
        (("onnxruntime", "fp32", "on"), "onnxruntime does not take jit 'on': it takes auto"),
        (("tensorflow", "fp8", "auto"), "'fp8' (not a precision): it runs fp32, fp16, bf16"),
        (("tensorflow", "fp32", "yes"), "'yes' (not a jit setting): it takes auto, on, off"),
        (("tensorrt", "fp32", "auto"), "not an engine: use one of tensorflow, jax, torch, onnx"),
    ],
)  # fmt: skip
def test_bad_points_are_named_with_what_is_supported(point, words) -> None:
    assert words in engines.check_point(*point)


def test_good_points_pass_where_their_engine_is_installed() -> None:
    for backend, (precisions, jits) in engines.SUPPORTED.items():
        for precision in precisions:
            for jit in jits:
                why = engines.check_point(backend, precision, jit)
                assert why == engines.available(backend)


def test_a_missing_engine_says_which_package_and_how_to_install_it() -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    why = engines.check_point("torch", "fp32", "auto")
    assert "needs torch, not installed here: pip install -e '.[torch]'" in why


def test_cli_refuses_a_bad_point_in_one_line_exit_2(capsys) -> None:
    from benchmark.__main__ import main

    code = main(["run", "--model", "digits_cnn", "--backend", "onnxruntime",
                 "--precision", "bf16", "--store", "sqlite:///nonexistent/x.db"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == ("benchmark: error: onnxruntime does not run precision 'bf16': "
                       "it runs fp32, int8")  # fmt: skip


def test_another_keras_backend_needs_another_process() -> None:
    import keras

    other = next(b for b in engines.KERAS_BACKENDS if b != keras.backend.backend())
    with pytest.raises(engines.UsageError, match=f"KERAS_BACKEND={other} python -m benchmark"):
        engines.use_backend(other)
    assert engines.use_backend("onnxruntime") == keras.backend.backend()
    assert engines.default_backend() == keras.backend.backend()


def test_precision_is_a_keras_policy_and_jit_is_recorded() -> None:
    import keras

    before = keras.config.dtype_policy().name
    x = load_split()[2][:64]
    fp32, _ = engines.load(DIGITS, "auto", keras.backend.backend(), "fp32", "off")
    bf16, _ = engines.load(DIGITS, "auto", keras.backend.backend(), "bf16", "on")
    assert keras.config.dtype_policy().name == before
    assert (fp32.jit, bf16.jit) == ("off", "on")
    assert bf16.model.layers[-1].dtype_policy.name == "mixed_bfloat16"
    want, got = fp32.predict(x), bf16.predict(x)
    assert (want.argmax(1) == got.argmax(1)).mean() >= 0.9  # bf16 keeps 8 bits of mantissa
    assert not np.array_equal(want, got.astype(np.float32))


@NEEDS_ORT
def test_onnxruntime_runs_the_cached_export_and_int8(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    x, y = load_split()[2:]
    fp32, weights = engines.load(DIGITS, "auto", "onnxruntime", "fp32", "auto")
    assert (weights, fp32.backend, fp32.jit) == ("trained", "onnxruntime", "off")
    assert "(exported now)" in fp32.notes[0]
    np.testing.assert_allclose(fp32.predict(x), fp32.model.predict_on_batch(x), atol=1e-5)
    [export] = (tmp_path / "models" / "onnx").glob("digits_cnn-trained-*-fp32.onnx")
    made = export.stat().st_mtime_ns
    again, _ = engines.load(DIGITS, "auto", "onnxruntime", "fp32", "auto")
    assert "(cached)" in again.notes[0] and export.stat().st_mtime_ns == made
    int8, _ = engines.load(DIGITS, "auto", "onnxruntime", "int8", "auto")
    assert "(exported now)" in int8.notes[0]  # quantised from the cached fp32 export
    assert export.stat().st_mtime_ns == made
    quantised = int8.predict(x)
    assert (quantised.argmax(1) == y).mean() >= 0.9
    assert not np.allclose(quantised, fp32.predict(x), atol=1e-5)


@NEEDS_ORT
def test_other_weights_are_another_export(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    engines.load(DIGITS, "random", "onnxruntime", "fp32", "auto")
    again, _ = engines.load(DIGITS, "random", "onnxruntime", "fp32", "auto")
    assert "(cached)" in again.notes[0]  # random weights come from a fixed seed
    engines.load(DIGITS, "auto", "onnxruntime", "fp32", "auto")
    names = sorted(p.name.split("-")[1] for p in (tmp_path / "models" / "onnx").iterdir())
    assert names == ["random", "trained"]


def site_without_tensorflow(root: Path) -> Path:
    """This interpreter's packages less TensorFlow: a machine where it is not installed."""
    site = Path(sysconfig.get_paths()["purelib"])
    root.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if not name.startswith(("tensorflow", "tf2onnx", "tf_keras", "tensorboard")):
            (root / entry.name).symlink_to(entry)
    return root


@pytest.mark.skipif(engines.available("jax") is not None, reason=str(engines.available("jax")))
def test_jax_runs_without_tensorflow(tmp_path) -> None:
    """python -m benchmark run --backend jax on a machine without TensorFlow: the NumPy and
    Pillow pipeline, Keras on JAX; the run's tags and start event say which."""
    from benchmark.records import read_events
    from exporters.stores.sqlite import SQLiteStore

    repo = Path(__file__).resolve().parents[1]
    site = site_without_tensorflow(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{site}", "KERAS_BACKEND": "tensorflow"}
    argv = [sys.executable, "-S", "-c", "import tensorflow"]
    assert subprocess.run(argv, env=env, capture_output=True).returncode != 0
    argv = [sys.executable, "-S", "-m", "benchmark", "run", "--model", "digits_cnn", "--backend",
            "jax", "--precision", "bf16", "--limit", "64", "--batch-size", "32", "--run-id", "j",
            "--store", f"sqlite:///{tmp_path}/r.db", "--json", "--no-progress"]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=repo)
    assert done.returncode == 0, done.stderr[-2000:]
    [run] = json.loads(done.stdout)["runs"]
    assert (run["backend"], run["images"], run["accuracy_source"]) == ("jax", 64, "measured")
    assert run["top1"] >= 0.9
    with SQLiteStore(tmp_path / "r.db") as store:
        start = read_events(store, "j")[0]
    assert start.tags["backend"] == "jax"
    assert (start.fields["precision"], start.fields["jit"]) == ("bf16", "on")


def test_torchvision_entries_cite_their_weights_and_run_on_torch_alone() -> None:
    tv = {name: s for name, s in MODELS.items() if s.is_torchvision}
    assert set(tv) == {"tv_resnet50", "tv_efficientnet_v2_s"}
    assert (tv["tv_resnet50"].resize_size, tv["tv_efficientnet_v2_s"].resize_size) == (256, 384)
    for s in tv.values():
        assert s.preprocess_mode == "torch" and "IMAGENET1K_V1" in s.source
        assert s.macs > s.params > 0 and 0 < s.top1 < s.top5 < 1
        why = engines.check_model(s, "jax")
        assert (
            why == f"{s.name} is a torchvision model: only --backend torch runs it "
            "(the Keras applications run on every engine)"
        )
    assert engines.check_model(MODELS["mobilenetv3_small"], "onnxruntime") is None
    if importlib.util.find_spec("torchvision") is None:
        assert "needs torchvision, not installed here: pip install -e '.[torch]'" in (
            engines.check_model(tv["tv_resnet50"], "torch")
        )


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None,
    reason="torchvision is not installed (optional: pip install -e '.[torch]')",
)
def test_torchvision_model_predicts_softmax_scores() -> None:
    engine, weights = engines.load(MODELS["tv_resnet50"], "random", "torch", "fp32", "off")
    x = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
    scores = engine.predict(x)
    assert weights == "random" and scores.shape == (2, 1000)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    bf16, _ = engines.load(MODELS["tv_resnet50"], "random", "torch", "bf16", "off")
    assert (bf16.predict(x).argmax(1) == scores.argmax(1)).all()


@NEEDS_ORT
def test_run_on_onnxruntime_int8_records_its_point(tmp_path, monkeypatch, capsys) -> None:
    from benchmark.__main__ import main
    from benchmark.records import read_events
    from exporters.stores.sqlite import SQLiteStore

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    code = main(["run", "--model", "digits_cnn", "--backend", "onnxruntime", "--precision",
                 "int8", "--limit", "64", "--batch-size", "32", "--run-id", "o", "--json",
                 "--store", f"sqlite:///{tmp_path}/r.db", "--no-progress"])  # fmt: skip
    assert code == 0
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert (run["backend"], run["images"], run["weights"]) == ("onnxruntime", 64, "trained")
    assert run["top1"] >= 0.9 and "int8.onnx (exported now)" in run["notes"][0]
    with SQLiteStore(tmp_path / "r.db") as store:
        start, end = read_events(store, "o")
    assert start.tags["backend"] == "onnxruntime"
    assert (start.fields["precision"], start.fields["jit"]) == ("int8", "off")
    assert end.fields["inferences"] == 64
