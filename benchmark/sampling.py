"""Makes sure this host's energy is being sampled into the store while windows are measured.

If an exporter already feeds the store (energy points from this host in the last few seconds),
nothing is started and windows are only tagged. Otherwise (the embedded store, no service) an
agent runs in a background thread for as long as the sampler is open, with the sources the
configuration enables. A store that cannot be written is refused before either (one line,
exit 2, in ``python -m benchmark``). Either way :meth:`Sampler.wait_past` waits until samples
after a window's end are stored, so the window's end edge can be interpolated.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from exporters import clock
from exporters.agent import Agent
from exporters.config import load_config
from exporters.domains import IN_TOTAL, domain_of, domain_roles
from exporters.errors import StoreError
from exporters.schema import ENERGY
from exporters.sources import build_sources
from exporters.stores.base import Store

log = logging.getLogger(__name__)

FRESH_S = 5.0


class Sampler:
    """An exporter found feeding the store, or an agent thread of our own."""

    def __init__(self, store: Store, host: str | None = None, config: dict | None = None):
        self.store = store
        self.config = config or load_config()
        self.host = host or self.config["host"] or socket.gethostname()
        self.agent: Agent | None = None
        self._thread: threading.Thread | None = None
        self.notes: list[str] = []
        self.external = False

    def _recent(self, since_ns: int) -> list:
        try:
            return self.store.read(
                ENERGY, since_ns, clock.wall_ns() + 10**9, tags={"host": self.host}
            )
        except StoreError:
            return []  # an InfluxDB database nobody wrote to yet

    def _exporter_running(self) -> bool:
        """Samples from this host keep arriving: recent ones, and a new one within a while.

        Recent samples alone could be the last of an agent that just stopped (the previous
        benchmark's), so a sample newer than the question is awaited too.
        """
        asked = clock.wall_ns()
        if not self._recent(asked - int(FRESH_S * 1e9)):
            return False
        deadline = time.monotonic() + FRESH_S
        while time.monotonic() < deadline:
            if any(p.time_ns > asked for p in self._recent(asked)):
                return True
            time.sleep(0.2)
        return False

    def start(self) -> Sampler:
        """Check that the store takes writes (a read-only or damaged one raises
        :class:`~exporters.errors.UsageError`), then find an exporter or start an agent."""
        self.store.check_writable()
        if self._exporter_running():
            self.external = True
            return self
        sources, waiting, self.notes = build_sources(self.config)
        self.agent = Agent(
            sources,
            self.store,
            host=self.host,
            intervals=self.config["interval_s"],
            flush_interval_s=min(0.25, self.config["flush_interval_s"]),
            waiting=waiting,
        )
        self._thread = threading.Thread(target=self.agent.run, name="tubai-agent", daemon=True)
        self._thread.start()
        interval = self.config["interval_s"]["power"]
        time.sleep(2.5 * interval)  # samples before the first window opens
        return self

    def describe(self) -> str:
        """One line: who samples, and with which sources."""
        if self.external:
            return f"an exporter already samples {self.host} into this store: marking windows"
        if self.agent is None:
            return "not started"
        used = ", ".join(s.name for s in self.agent.sources) or "nothing"
        missing = [n.split(":")[0] for n in self.notes if ": not available:" in n]
        estimate = " (cpu_model is an ESTIMATE)" if "cpu_model" in used else ""
        line = f"{used}{estimate}"
        if missing:
            line += f"; not available: {', '.join(missing)} (python -m exporters doctor says why)"
        return line

    def wait_past(self, t_ns: int, timeout_s: float = 15.0) -> bool:
        """Block until every energy series of this host has a stored sample after ``t_ns``."""
        deadline = time.monotonic() + timeout_s
        interval = self.config["interval_s"]["power"]
        time.sleep(2 * interval)
        while True:
            before = {p.series_key() for p in self._recent(t_ns - int(60e9)) if p.time_ns <= t_ns}
            after = {p.series_key() for p in self._recent(t_ns) if p.time_ns > t_ns}
            if before and before <= after:
                return True
            if time.monotonic() > deadline:
                log.warning("no energy samples after the window's end within %.0f s", timeout_s)
                return False
            self.store.flush()
            time.sleep(0.1)

    def watts(self) -> float | None:
        """Latest power of the domains a window total counts, with the window's roles (a GPU
        NVML and dcgm both read counts once), from our own agent only."""
        if self.agent is None:
            return None
        latest = [p for p in list(self.agent.latest.values()) if p.measurement == ENERGY]
        roles = domain_roles([domain_of(p.tags) for p in latest])
        counted = [
            p.fields["watts"]
            for p, role in zip(latest, roles)
            if role in IN_TOTAL and "watts" in p.fields
        ]
        return sum(counted) if counted else None

    def stop(self) -> None:
        if self.agent is not None and self._thread is not None:
            self.agent.stop()
            self._thread.join(timeout=30)
            self.agent = None

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
