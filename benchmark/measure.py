"""Measurement windows in users' own code, in joules, from counters read at their edges.

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

Each window's edges are read, not interpolated (:mod:`exporters.edges`): beginning and ending it
read every power source's counters at that instant (our own agent directly, a running exporter
over ``POST /sample``), and store those readings as samples of their series; the window's times
are those readings' instants. :meth:`Monitor.end_window` then takes each counter domain's energy
straight from its two edge readings, ``C(end) - C(start)``, without reading the store, so it
returns in about a millisecond, whatever the sampling cadence. A counted domain the edges do not
give (power only, a counter reset between them, a source with a cadence of its own) is computed
from the stored samples as before, after samples past the window's end are stored; so are all
domains where the exporter cannot be asked (``result.edges`` is then ``"interpolated"``).
Domains that are not counted and not read at the edges (a wall meter) are in
:meth:`Monitor.stored_energy`, which computes the whole window from the stored samples, edge
samples included, as scoring does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from benchmark.sampling import Sampler
from exporters.edges import EdgeReading, edge_energy, with_stored
from exporters.stores import open_store
from exporters.stores.base import Store
from exporters.window import WindowEnergy, window_energy

Edge = tuple[int, EdgeReading | None]  # a window's edge: its instant, and the reading taken then


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
    readings: tuple[EdgeReading | None, EdgeReading | None] = field(
        default=(None, None), repr=False
    )
    """The edge readings at its start and end (None where an edge was not read)."""

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def edges(self) -> str:
        """``"read"`` where every counted domain was read at both edges, else
        ``"interpolated"`` (:attr:`exporters.window.WindowEnergy.edges`)."""
        return self.energy.edges

    @property
    def watts(self) -> float:
        return self.total_joules / self.duration_s if self.duration_s > 0 else 0.0


class Monitor:
    """Opens the store (a URL or a :class:`Store`) and samples until :meth:`close`."""

    def __init__(self, store: str | Store | None = None, host: str | None = None) -> None:
        self._own_store = not isinstance(store, Store)
        self.store = open_store(store) if self._own_store else store
        # No waiting for first samples: each window's start edge is a sample of every series
        # read at edges; our agent has read every source once when the sampler has started.
        self.sampler = Sampler(self.store, host).start()
        self._open: dict[str, Edge] = {}

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"window {name!r} is already open: end it first or use another name")
        self._open[name] = self.sampler.mark()

    def end_window(self, name: str) -> WindowResult:
        if name not in self._open:
            raise ValueError(f"window {name!r} was never begun (open: {sorted(self._open)})")
        start_ns, start = self._open.pop(name)
        end_ns, end = self.sampler.mark()
        energy = self._energy(start_ns, end_ns, start, end)
        joules = {f"{d.source}:{d.domain}": d.joules for d in energy.counted}
        return WindowResult(
            name, start_ns, end_ns, joules, energy.total_joules, energy.estimated,
            energy.coverage, energy, (start, end),
        )  # fmt: skip

    def _energy(
        self, start_ns: int, end_ns: int, start: EdgeReading | None, end: EdgeReading | None
    ) -> WindowEnergy:
        """From the edge readings where both were taken (the store only for the counted
        domains they do not give), else from the stored samples."""
        if start is None or end is None:
            return self._stored(start_ns, end_ns)
        energy, missing = edge_energy(start, end)
        return with_stored(energy, self._stored(start_ns, end_ns)) if missing else energy

    def stored_energy(self, result: WindowResult) -> WindowEnergy:
        """Every domain of this host in ``result``'s window from the stored samples (the edge
        samples included): what scoring computes, a wall meter too. It waits until samples
        after the window's end are stored."""
        return self._stored(result.start_ns, result.end_ns)

    def _stored(self, start_ns: int, end_ns: int) -> WindowEnergy:
        self.sampler.wait_past(end_ns)
        return window_energy(self.store, start_ns, end_ns, host=self.sampler.host)

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
