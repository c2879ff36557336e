"""The optional ``/metrics`` endpoint: the agent's latest values for Prometheus.

Each field of each latest point becomes ``tubai_<measurement>_<field>`` with the point's tags as
labels; ``*_total`` fields are counters, the rest gauges. Values are read when Prometheus scrapes,
so serving costs the sampling loop nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.agent import Agent


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
    """Serve ``/metrics`` in a background thread; returns the bound port."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatestCollector(agent))
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server.server_port
