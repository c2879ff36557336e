"""The optional ``/metrics`` endpoint: the agent's latest values for Prometheus.

Each field of each latest point becomes ``tubai_<measurement>_<field>`` with the point's tags as
labels; ``*_total`` fields are counters, the rest gauges. Values are read when Prometheus scrapes,
so serving costs the sampling loop nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from errno import EACCES, EADDRINUSE, EPERM

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.agent import Agent
from exporters.errors import ConfigError, shown


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
    """Serve ``/metrics`` in a background thread; returns the bound port.

    Raises :class:`ConfigError` when ``addr``:``port`` cannot be listened on: the port is in use
    or not permitted, or the address is not one of this machine's.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatestCollector(agent))
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except (OSError, UnicodeError, ValueError, OverflowError) as e:
        raise ConfigError(_why_not(e, port, addr)) from e
    return server.server_port


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
