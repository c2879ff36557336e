"""Random weights and the digits CNN's training are the same on every build, and leave the
process's random number generators (Python's, NumPy's) as the caller left them."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from benchmark import digits
from benchmark.engines.onnx_engine import weights_digest
from benchmark.models import build_model
from benchmark.registry import get_spec

pytest.importorskip("tensorflow")


def _global_states() -> tuple[object, list[object]]:
    return random.getstate(), [np.asarray(part).tolist() for part in np.random.get_state()]


def _built_twice(build: Callable[[], object]) -> tuple[str, str]:
    """Digests of two builds, the caller's generators seeded differently before each, which
    must find them untouched after each."""
    digests = []
    for caller_seed in (1, 2):
        random.seed(caller_seed)
        np.random.seed(caller_seed)
        before = _global_states()
        digests.append(weights_digest(build()))
        assert _global_states() == before
        random.random(), np.random.random()  # the caller's draws carry on
    return digests[0], digests[1]


def test_random_weights_are_the_same_and_leave_the_generators_alone() -> None:
    spec = get_spec("digits_cnn")
    first, second = _built_twice(lambda: build_model(spec, "random")[0])
    assert first == second
    untrained = weights_digest(digits.build_digits_cnn())  # unseeded: weights of its own
    assert untrained != first


def test_training_is_the_same_and_leaves_the_generators_alone() -> None:
    first, second = _built_twice(lambda: digits.train_digits_cnn(epochs=1))
    assert first == second
