"""The ``run`` events, defined once: the benchmark writes them (:mod:`benchmark.records`) and
scoring reads them (:func:`scoring.runs.runs_from_events`), never the benchmark's registry.

A run is the ``run`` points that share a ``run_id`` tag: a ``start`` event, then ``end``
(finished, with everything the run's scores need) or ``fail`` (with the reason, never scored).
The run's window is the time of its ``start`` to the time of its ``end``.

Every event has the tags of :class:`RunTags` and a field ``event`` naming its kind; its other
fields are those of its class (:class:`RunStart`, :class:`RunEnd`, :class:`RunFail`), each with
the type scoring reads it as. A field without a value (None) is not written, and reads as None;
so does a value of another type. Numbers are written as the writer has them (an int stays an
int: InfluxDB keeps one type per field) and read as the class says (``params`` written as an
int is read as a float). User strings (run ids, model names) travel as tag values, which both
stores escape; nothing is pasted into a query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

from exporters.schema import RUN, FieldValue, Point

EVENT = "event"  # the field that names an event's kind


@dataclass(frozen=True)
class RunTags:
    """The tags of every event of one run."""

    run_id: str
    model: str
    backend: str
    dataset: str
    host: str

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of(cls, tags: Mapping[str, str]) -> RunTags:
        """The run tags of a point (missing ones empty)."""
        return cls(*(tags.get(f.name, "") for f in fields(cls)))


@dataclass(frozen=True)
class RunStart:
    """``start``: the run's window opens at its time."""

    kind: ClassVar[str] = "start"
    repeat: int | None = None  # this measured pass, from 1
    repeats: int | None = None  # measured passes in the benchmark
    warmup_batches: int | None = None  # batches run before the window, outside it
    warmup_end: str | None = None  # RFC 3339: when the warm-up ended


@dataclass(frozen=True)
class RunEnd:
    """``end``: the window closes at its time; what the run computed and what it ran."""

    kind: ClassVar[str] = "end"
    inferences: int | None = None
    top1: float | None = None  # a fraction
    top5: float | None = None
    accuracy_source: str | None = None  # "measured" or "published"
    batch_size: int | None = None
    params: float | None = None  # parameters of the model
    macs: float | None = None  # multiply-accumulates per inference
    weights: str | None = None  # "imagenet", "random" or a weights file
    duration_s: float | None = None
    repeat: int | None = None
    repeats: int | None = None
    published_top1: float | None = None
    idle_watts: float | None = None  # the idle baseline measured before the passes
    keras: str | None = None  # Keras version
    pid: int | None = None


@dataclass(frozen=True)
class RunFail:
    """``fail``: the pass broke (an exception, Ctrl-C) at its time; no ``end`` follows."""

    kind: ClassVar[str] = "fail"
    reason: str | None = None


RunEvent = RunStart | RunEnd | RunFail
EVENTS: dict[str, type[RunEvent]] = {cls.kind: cls for cls in (RunStart, RunEnd, RunFail)}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# How a stored value is read, by the field's annotation (every annotation above has one):
# a value of another type reads as None, like a missing one.
_READERS: dict[str, Callable[[object], object]] = {
    "float | None": _number,
    "int | None": lambda value: None if (n := _number(value)) is None else int(n),
    "str | None": lambda value: None if value is None else str(value),
}
assert all(f.type in _READERS for cls in EVENTS.values() for f in fields(cls))


def event_point(tags: RunTags, event: RunEvent, time_ns: int) -> Point:
    """The ``run`` point of one event: ``event`` and every field with a value."""
    values = {f.name: getattr(event, f.name) for f in fields(event)}
    kept: dict[str, FieldValue] = {k: v for k, v in values.items() if v is not None}
    return Point(RUN, tags.as_dict(), {EVENT: event.kind, **kept}, time_ns)


def make_event(kind: str, **values: FieldValue | None) -> RunEvent:
    """The event of ``kind`` with these fields; raises ValueError for an unknown kind and
    TypeError for a field its class does not define."""
    if kind not in EVENTS:
        raise ValueError(f"unknown run event {kind!r}: one of {', '.join(EVENTS)}")
    return EVENTS[kind](**values)


def parse_event(point_fields: Mapping[str, FieldValue]) -> RunEvent | None:
    """The event a ``run`` point's fields hold, each field read as its class says (None for a
    point whose ``event`` is no known kind)."""
    cls = EVENTS.get(str(point_fields.get(EVENT, "")))
    if cls is None:
        return None
    return cls(**{f.name: _READERS[f.type](point_fields.get(f.name)) for f in fields(cls)})
