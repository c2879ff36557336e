"""Deterministic Keras builds that leave the process's random number generators alone.

Keras 3 draws the seed of every unseeded initializer and layer (``Dropout``'s generator) from
Python's global :mod:`random` when the layer is made; the values themselves come from stateless
ops on those seeds. So a model built under :func:`python_seed` gets the same weights on every
build, in any process, and :mod:`random`'s state is put back after it: the caller's
``random.random()`` carries on as if nothing had been built. NumPy's and TensorFlow's global
generators are not touched at all (``keras.utils.set_random_seed`` would reseed them all).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def python_seed(seed: int) -> Iterator[None]:
    """Python's global :mod:`random` seeded with ``seed`` inside, as it was before after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
