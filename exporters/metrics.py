"""The optional HTTP port: ``/metrics`` for Prometheus, ``POST /sample`` for window edges.

``/metrics``: each field of each latest point becomes ``tubai_<measurement>_<field>`` with the
point's tags as labels; ``*_total`` fields are counters, the rest gauges. Values are read when
Prometheus scrapes, so serving costs the sampling loop nothing.

``POST /sample`` reads the power sources now (:meth:`~exporters.agent.Agent.sample_now`: the
points are stored like any sample) and answers, once they are read, with the edge reading as
JSON (:meth:`~exporters.edges.EdgeReading.to_dict`): how a benchmark in another process reads
its windows' edges (:mod:`benchmark.sampling`). Only a client on this machine's loopback may ask
(403 otherwise, whatever address the port listens on); any other method is 405, and 503 once
the agent has stopped.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from errno import EACCES, EADDRINUSE, EPERM
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

from exporters.agent import Agent
from exporters.edges import SAMPLE_PATH
from exporters.errors import ConfigError, shown

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class LatestCollector:
    """A prometheus-client collector over ``Agent.latest``."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for point in list(self.agent.latest.values()):
            for name, value in point.fields.items():
                if isinstance(value, int | float):
                    samples[f"tubai_{point.measurement}_{name}"].append((point.tags, float(value)))
        for name, values in sorted(samples.items()):
            labels = sorted({k for tags, _ in values for k in tags})
            if name.endswith("_total"):
                family: Metric = CounterMetricFamily(name[: -len("_total")], name, labels=labels)
            else:
                family = GaugeMetricFamily(name, name, labels=labels)
            for tags, value in values:
                family.add_metric([tags.get(k, "") for k in labels], value)
            yield family


def serve_metrics(agent: Agent, port: int, addr: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` and ``POST /sample`` in a background thread; returns the bound port.

    Raises :class:`ConfigError` when ``addr``:``port`` cannot be listened on: the port is in use
    or not permitted, or the address is not one of this machine's.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatestCollector(agent))
    try:
        server = start_http_server(port, addr, metrics_app(agent, registry))
    except (OSError, UnicodeError, ValueError, OverflowError) as e:
        raise ConfigError(_why_not(e, port, addr)) from e
    return server.server_port


def metrics_app(agent: Agent, registry: CollectorRegistry) -> WsgiApp:
    """The WSGI app: ``POST /sample`` here, every other path prometheus-client's."""
    prometheus = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != SAMPLE_PATH:
            return prometheus(environ, start_response)
        status, body = _sample(agent, environ)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if status.startswith("405"):
            headers.append(("Allow", "POST"))
        start_response(status, headers)
        return [body]

    return app


def _sample(agent: Agent, environ: dict) -> tuple[str, bytes]:
    """(status, JSON body) of a request to ``/sample``."""
    if environ.get("REQUEST_METHOD") != "POST":
        return "405 Method Not Allowed", _error("POST to sample now; GET /metrics to read")
    if not is_loopback(environ.get("REMOTE_ADDR", "")):
        return "403 Forbidden", _error("only a client on this machine's loopback may sample")
    length = environ.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length):
        environ["wsgi.input"].read(min(int(length), 65536))  # a body means nothing here
    try:
        reading = agent.sample_now()
    except RuntimeError as e:
        return "503 Service Unavailable", _error(str(e))
    return "200 OK", json.dumps(reading.to_dict()).encode()


def _error(why: str) -> bytes:
    return json.dumps({"error": why}).encode()


def is_loopback(addr: str) -> bool:
    """Whether the client address ``addr`` is this machine's loopback (an IPv4-mapped one
    too)."""
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class _Quiet(WSGIRequestHandler):
    """No line on stderr per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def start_http_server(port: int, addr: str, app: WsgiApp) -> WSGIServer:
    """Serve ``app`` on ``addr``:``port`` (IPv4 or IPv6), a thread per request, from a daemon
    thread; OSError where it cannot listen there."""
    family, *_, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = type("Server", (ThreadingWSGIServer,), {"address_family": family})
    server = make_server(sockaddr[0], port, app, server_class, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="tubai-http", daemon=True).start()
    return server


def _why_not(e: Exception, port: int, addr: str) -> str:
    """What is wrong with ``addr``:``port``, and the fix, after listening there raised ``e``."""
    where = f"metrics port {port} on {shown(addr)}"
    errno = getattr(e, "errno", None)
    if errno == EADDRINUSE:
        return (
            f"{where} is in use: choose another with --metrics-port or metrics.port "
            "(0 takes any free port), or stop what listens there"
        )
    if errno in (EACCES, EPERM):
        return (
            f"{where} is not permitted: ports below 1024 need root or CAP_NET_BIND_SERVICE; "
            "choose one from 1024 up with --metrics-port or metrics.port"
        )
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return (
        f"metrics address {shown(addr)} cannot be listened on ({reason}): set metrics.addr to "
        "an address of this machine, such as 127.0.0.1 (this machine only) or 0.0.0.0 (all)"
    )
