"""Makes sure this host's energy is being sampled into the store while windows are measured,
and reads the counters at each window's edges.

If an exporter already feeds the store (energy points from this host in the last few seconds),
nothing is started and windows are only tagged. Otherwise (the embedded store, no service) an
agent runs in a background thread for as long as the sampler is open, with the sources the
configuration enables; it has read every source once when :meth:`Sampler.start` returns. A
store that cannot be written is refused before either (one line, exit 2, in
``python -m benchmark``).

:meth:`Sampler.edge` reads the counters at a window's edge (:mod:`exporters.edges`): our own
agent reads its sources directly; an exporter is asked over ``POST /sample`` on its metrics
port, on this machine's loopback (``TUBAI_EXPORTER_URL``, default :data:`EXPORTER_URL`: the
Docker stack's). Either way the reading is stored as a sample of each series at the edge's
instant, which :meth:`Sampler.mark` makes the window's edge. Where the exporter cannot be asked
(no metrics port, another host's), the edge is now, and the window's energy is interpolated
between the exporter's samples (said once, and in each result's ``edges``);
:meth:`Sampler.wait_past` waits until samples after a window's end are stored for that.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from exporters import clock
from exporters.agent import Agent
from exporters.config import load_config
from exporters.domains import IN_TOTAL, domain_of, domain_roles
from exporters.edges import SAMPLE_PATH, EdgeReading
from exporters.errors import StoreError, shown
from exporters.schema import ENERGY
from exporters.sources import build_sources
from exporters.stores.base import Store

log = logging.getLogger(__name__)

FRESH_S = 5.0
FIRST_ROUND_S = 15.0  # our agent's first read of every source, at most
EXPORTER_URL = "http://127.0.0.1:9101"  # the stack's exporter: its metrics port, host loopback
EDGE_TIMEOUT_S = 1.0  # an exporter on this machine answers in milliseconds


class EdgeUnavailable(Exception):
    """The exporter could not be asked for an edge reading: why, in words."""


def ask_exporter(url: str, timeout_s: float = EDGE_TIMEOUT_S) -> EdgeReading:
    """``POST /sample`` to the exporter at ``url`` (its metrics port): the edge reading it took.
    :class:`EdgeUnavailable` where it cannot be reached or does not answer with one."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise EdgeUnavailable(f"{shown(url)} is not an http://host:port URL")
    try:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        try:
            connection.request("POST", parts.path.rstrip("/") + SAMPLE_PATH, body=b"")
            response = connection.getresponse()
            body = response.read(1 << 22)
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise EdgeUnavailable(f"{url} cannot be reached ({str(e) or type(e).__name__})") from e
    if response.status != 200:
        raise EdgeUnavailable(f"{url}{SAMPLE_PATH} answered {response.status} {response.reason}")
    try:
        return EdgeReading.from_dict(json.loads(body))
    except ValueError as e:
        raise EdgeUnavailable(f"{url}{SAMPLE_PATH} answered no edge reading ({e})") from e


class Sampler:
    """An exporter found feeding the store, or an agent thread of our own."""

    def __init__(
        self,
        store: Store,
        host: str | None = None,
        config: dict | None = None,
        exporter_url: str | None = None,
        agent_cpu: int | None = None,
    ):
        self.store = store
        self.agent_cpu = agent_cpu  # our agent's thread kept on this CPU (--agent-cpu)
        self.config = config or load_config()
        self.host = host or self.config["host"] or socket.gethostname()
        self.exporter_url = exporter_url or os.environ.get("TUBAI_EXPORTER_URL") or EXPORTER_URL
        self.agent: Agent | None = None
        self._thread: threading.Thread | None = None
        self.notes: list[str] = []
        self.external = False
        self._told: str | None = None  # why the exporter could not be asked, said once

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
        # an exporter hands its samples over every flush_interval_s (this machine's config)
        fresh_s = FRESH_S + float(self.config["flush_interval_s"])
        asked = clock.wall_ns()
        if not self._recent(asked - int(fresh_s * 1e9)):
            return False
        deadline = time.monotonic() + fresh_s
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
            priority=self.config["sampler_priority"],
            cpus=None if self.agent_cpu is None else {self.agent_cpu},
        )
        self._thread = threading.Thread(target=self.agent.run, name="tubai-agent", daemon=True)
        self._thread.start()
        # every source read once (a sample before the first window of those not read at edges)
        self.agent.first_round.wait(FIRST_ROUND_S)
        return self

    def edge(self) -> EdgeReading | None:
        """The counters read now and stored as samples at the reading's instant: by our own
        agent, or by the exporter (``POST /sample``); None where neither can (the window's
        edge is then interpolated between samples)."""
        if self.agent is not None:
            try:
                return self.agent.sample_now()
            except RuntimeError:
                return None  # stopped
        if not self.external:
            return None
        try:
            reading = ask_exporter(self.exporter_url)
        except EdgeUnavailable as e:
            return self._interpolated(str(e))
        if reading.host != self.host:
            return self._interpolated(
                f"the exporter at {self.exporter_url} samples {shown(reading.host)}, "
                f"not {shown(self.host)}"
            )
        return reading

    def _interpolated(self, why: str) -> None:
        if why != self._told:
            self._told = why
            log.warning(
                "window edges are interpolated between the exporter's samples: %s (set "
                "TUBAI_EXPORTER_URL to the exporter's metrics port, --metrics-port)",
                why,
            )

    def mark(self) -> tuple[int, EdgeReading | None]:
        """A window's edge: the instant of an edge reading (:meth:`edge`), and the reading;
        now and None where there is none."""
        reading = self.edge()
        return (clock.wall_ns() if reading is None else reading.time_ns), reading

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
