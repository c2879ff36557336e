"""Measurement windows in users' own code, in joules, on the same store query as every score.

    import benchmark
    with benchmark.measure("preprocessing") as w:
        run_my_code()
    print(w.result.total_joules, w.result.joules)      # per counted domain

or, for windows that overlap or span functions, a :class:`Monitor`::

    monitor = benchmark.Monitor()
    monitor.begin_window("epoch-1")
    ...
    result = monitor.end_window("epoch-1")
    monitor.close()

Beginning a window whose name is open, or ending one that is not, raises ``ValueError``. Without
an exporter feeding the store, the monitor samples this host itself while it is open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from benchmark.sampling import Sampler
from exporters import clock
from exporters.stores import open_store
from exporters.stores.base import Store
from exporters.window import WindowEnergy, window_energy


@dataclass(frozen=True)
class WindowResult:
    """Energy of one named window: joules per counted domain and their total."""

    name: str
    start_ns: int
    end_ns: int
    joules: dict[str, float]
    total_joules: float
    estimated: bool
    coverage: float
    energy: WindowEnergy = field(repr=False)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def watts(self) -> float:
        return self.total_joules / self.duration_s if self.duration_s > 0 else 0.0


class Monitor:
    """Opens the store (a URL or a :class:`Store`) and samples until :meth:`close`."""

    def __init__(self, store: str | Store | None = None, host: str | None = None) -> None:
        self._own_store = not isinstance(store, Store)
        self.store = open_store(store) if self._own_store else store
        self.sampler = Sampler(self.store, host).start()
        self._open: dict[str, int] = {}

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"window {name!r} is already open: end it first or use another name")
        self._open[name] = clock.wall_ns()

    def end_window(self, name: str) -> WindowResult:
        if name not in self._open:
            raise ValueError(f"window {name!r} was never begun (open: {sorted(self._open)})")
        start_ns, end_ns = self._open.pop(name), clock.wall_ns()
        self.sampler.wait_past(end_ns)
        energy = window_energy(self.store, start_ns, end_ns, host=self.sampler.host)
        joules = {f"{d.source}:{d.domain}": d.joules for d in energy.counted}
        return WindowResult(
            name, start_ns, end_ns, joules, energy.total_joules, energy.estimated,
            energy.coverage, energy,
        )  # fmt: skip

    def close(self) -> None:
        self.sampler.stop()
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Window:
    """What ``measure`` yields; ``result`` is filled when the block ends."""

    name: str
    result: WindowResult | None = None


@contextmanager
def measure(
    name: str, store: str | Store | None = None, host: str | None = None
) -> Iterator[Window]:
    """Measure the energy of the ``with`` block as one window named ``name``."""
    window = Window(name)
    with Monitor(store, host) as monitor:
        monitor.begin_window(name)
        try:
            yield window
        finally:
            window.result = monitor.end_window(name)
