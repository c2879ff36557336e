"""Window edges read, not interpolated: the counters read at the instant a window opens or closes.

An :class:`EdgeReading` is what :meth:`exporters.agent.Agent.sample_now` returns (and what the
exporter's ``POST /sample`` answers, :mod:`exporters.metrics`): the instant of the read (its
middle, on the steady wall clock of :mod:`exporters.clock`), how long the read took, and per
``energy`` series ``(host, source, domain)`` its ``joules_total`` then, with the counter's
segment; ``joules_total`` is None where the series gives no total at that instant (power only,
a source with a cadence of its own, a reading held as suspect). The agent stores the same
readings as ordinary samples of their series, stamped at that instant, so the stored-sample
computation (:mod:`exporters.window`) finds a sample at exactly each edge and interpolates
nothing.

:func:`edge_energy` is a window's energy from its two edge readings alone, without the store:
``C(end) - C(start)`` for each counter read at both edges within one segment. The domains it
cannot give that way (power only, a segment broken between the edges, a series not read) are
returned apart: the counted ones among them need the stored samples (:func:`with_stored`), the
others are left to the stored samples altogether (a wall meter, peak power).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from exporters.domains import DEFAULT_COUNTED, IN_TOTAL, Domain, domain_roles
from exporters.window import READ, DomainEnergy, WindowEnergy, with_roles

SAMPLE_PATH = "/sample"  # POST there, on the exporter's metrics port: an edge reading


@dataclass(frozen=True)
class EdgeSeries:
    """One ``energy`` series at an edge: its total (None: none then) and the total's segment."""

    estimated: bool = False
    joules_total: float | None = None
    segment: str | None = None  # the agent's and the counter's: totals compare within one

    def continues_to(self, later: EdgeSeries) -> bool:
        """Whether ``later``'s total follows on from this one's in the same segment."""
        return (
            self.joules_total is not None
            and later.joules_total is not None
            and self.segment is not None
            and self.segment == later.segment
            and later.joules_total >= self.joules_total
        )


@dataclass(frozen=True)
class EdgeReading:
    """Every energy series of ``host`` read at ``time_ns`` (the read took ``read_ns``)."""

    time_ns: int
    read_ns: int
    host: str
    series: Mapping[Domain, EdgeSeries]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``POST /sample`` answers with."""
        return {
            "time_ns": self.time_ns,
            "read_ns": self.read_ns,
            "host": self.host,
            "series": [
                {"source": key[1], "domain": key[2], **asdict(s)}
                for key, s in sorted(self.series.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: object) -> EdgeReading:
        """The reading :meth:`to_dict` gave; ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError("an edge reading is a JSON object")
        time_ns, read_ns, host = data.get("time_ns"), data.get("read_ns"), data.get("host")
        entries = data.get("series")
        if not (_whole(time_ns) and _whole(read_ns) and isinstance(host, str)):
            raise ValueError("an edge reading needs time_ns, read_ns (integers) and host")
        if not isinstance(entries, list):
            raise ValueError("an edge reading's series is a list")
        return cls(time_ns, read_ns, host, dict(_series_entry(host, e) for e in entries))


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _series_entry(host: str, entry: object) -> tuple[Domain, EdgeSeries]:
    if not isinstance(entry, dict):
        raise ValueError("each series of an edge reading is a JSON object")
    source, domain, total = entry.get("source"), entry.get("domain"), entry.get("joules_total")
    estimated, segment = entry.get("estimated", False), entry.get("segment")
    number = isinstance(total, int | float) and not isinstance(total, bool) and math.isfinite(total)
    if not (isinstance(source, str) and isinstance(domain, str) and isinstance(estimated, bool)):
        raise ValueError("a series of an edge reading needs source, domain and estimated")
    if not (total is None or number) or not (segment is None or isinstance(segment, str)):
        raise ValueError("a series' joules_total is a finite number or null, its segment text")
    return (host, source, domain), EdgeSeries(estimated, total, segment)


def edge_energy(
    start: EdgeReading, end: EdgeReading, counted: Sequence[str] = DEFAULT_COUNTED
) -> tuple[WindowEnergy, list[Domain]]:
    """The window ``[start, end]`` from its two edge readings: the energy of every counter read
    at both edges within one segment, and the counted domains it does not give (they need the
    stored samples). Roles are judged among every series either reading knows."""
    keys = sorted({*start.series, *end.series})
    found, rest = [], []
    for key in keys:
        a, b = start.series.get(key), end.series.get(key)
        if a is not None and b is not None and a.continues_to(b):
            joules = b.joules_total - a.joules_total  # type: ignore[operator]
            found.append(_exact(key, joules, a.estimated))
        else:
            rest.append(key)
    roles = dict(zip(keys, domain_roles(keys, counted)))
    missing = [key for key in rest if roles[key] in IN_TOTAL]
    return with_roles(start.time_ns, end.time_ns, found, counted, known=rest), missing


def _exact(key: Domain, joules: float, estimated: bool) -> dict[str, Any]:
    host, source, domain = key
    return dict(
        host=host, source=source, domain=domain, joules=joules, method="counter",
        estimated=estimated, coverage=1.0, samples=2, edges=READ,
    )  # fmt: skip


def with_stored(
    edges: WindowEnergy, stored: WindowEnergy, counted: Sequence[str] = DEFAULT_COUNTED
) -> WindowEnergy:
    """``edges``' domains, and from ``stored`` (the same window from the stored samples) every
    domain ``edges`` lacks; roles judged anew among them all."""
    have = {(d.host, d.source, d.domain) for d in edges.domains}
    extra = [d for d in stored.domains if (d.host, d.source, d.domain) not in have]
    found = [_fields(d) for d in [*edges.domains, *extra]]
    return with_roles(edges.start_ns, edges.end_ns, found, counted)


def _fields(d: DomainEnergy) -> dict[str, Any]:
    """What :func:`exporters.window.with_roles` takes back: the fields but the role."""
    return {f.name: getattr(d, f.name) for f in fields(d) if f.init and f.name != "role"}
