"""The ``run`` events, defined once: the benchmark writes them (:mod:`benchmark.records`) and
scoring reads them (:func:`scoring.runs.runs_from_events`), never the benchmark's registry.

A run is the ``run`` points that share a ``run_id`` tag: a ``start`` event, then ``end``
(finished, with everything the run's scores need) or ``fail`` (with the reason, never scored).
The run's window is the time of its ``start`` to the time of its ``end``.

Every event has the tags of :class:`RunTags` and a field ``event`` naming its kind; its other
fields are those of its class (:class:`RunStart`, :class:`RunEnd`, :class:`RunFail`), each with
the type scoring reads it as and, for numbers, the :class:`Rule` its value must keep (a fraction,
above 0, ...). A field without a value (None) is not written, and reads as None. Numbers are
written as the writer has them (an int stays an int: InfluxDB keeps one type per field) and read
as the class says (``params`` written as an int is read as a float; a count written as 12.0 reads
as 12). User strings (run ids, model names) travel as tag values, which both stores escape;
nothing is pasted into a query.

What the schema says is checked, in one place, both ways: :func:`event_point` refuses to write
an event that breaks it, and :func:`parse_event` refuses to read one (an event written by hand,
by another version, or into another store) with :class:`InvalidEvent`, whose message names the
field and what it must be. A number of the wrong type (a string, a bool, NaN), outside its rule
(accuracy above 1, a negative count, parameters <= 0), a required field or tag that is missing,
an event kind that is none of the three, and a tag holding a control character are all invalid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import ClassVar

from exporters.errors import shown
from exporters.schema import RUN, FieldValue, Point, control_char

EVENT = "event"  # the field that names an event's kind
REQUIRED_TAGS = ("run_id", "model", "host")


class InvalidEvent(ValueError):
    """A ``run`` event that breaks the schema; the message says which field and why."""


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
        """The run tags of a point (missing ones empty), as they are."""
        return cls(*(tags.get(f.name, "") for f in fields(cls)))

    def problem(self) -> str | None:
        """Why these tags cannot make a run (a required one missing, a control character), or
        None."""
        for name, value in self.as_dict().items():
            if not value and name in REQUIRED_TAGS:
                return f"tag {name} is missing"
            char = control_char(value)
            if char is not None:
                return f"tag {name} {shown(value)} holds the control character {char!r}"
        return None


@dataclass(frozen=True)
class Rule:
    """What a number must be beyond its type: ``holds(value)``, which ``says`` in words."""

    says: str
    holds: Callable[[float], bool]


FRACTION = Rule("a fraction from 0 to 1", lambda v: 0 <= v <= 1)
POSITIVE = Rule("above 0", lambda v: v > 0)
NOT_NEGATIVE = Rule("0 or more", lambda v: v >= 0)
AT_LEAST_ONE = Rule("1 or more", lambda v: v >= 1)


def _field(rule: Rule | None = None, required: bool = False) -> Field:
    """A field of an event: None by default, with its rule and whether it must have a value."""
    return field(default=None, metadata={"rule": rule, "required": required})


@dataclass(frozen=True)
class RunStart:
    """``start``: the run's window opens at its time."""

    kind: ClassVar[str] = "start"
    repeat: int | None = _field(AT_LEAST_ONE)  # this measured pass, from 1
    repeats: int | None = _field(AT_LEAST_ONE)  # measured passes in the benchmark
    warmup_batches: int | None = _field(NOT_NEGATIVE)  # batches run before the window
    warmup_end: str | None = _field()  # RFC 3339: when the warm-up ended
    # the operating point (issue 14): what ran the graph and how
    precision: str | None = _field()  # fp32, fp16, bf16 or int8
    jit: str | None = _field()  # "on" (XLA / jit compiled) or "off"
    sweep: str | None = _field()  # the sweep this run is a point of
    # the environment (issue 13): a JSON object (benchmark.manifest) and the machine's id
    manifest: str | None = _field()
    machine_id: str | None = _field()
    cooldown_s: float | None = _field(NOT_NEGATIVE)  # waited for power back at idle
    cooldown_reached: int | None = _field(NOT_NEGATIVE)  # 1: within tolerance, 0: timed out
    # a campaign's point (issue 15) and the Slurm job that ran it
    campaign: str | None = _field()
    campaign_point: str | None = _field()
    slurm_job_id: str | None = _field()
    slurm_array_task_id: str | None = _field()


@dataclass(frozen=True)
class RunEnd:
    """``end``: the window closes at its time; what the run computed and what it ran."""

    kind: ClassVar[str] = "end"
    inferences: int | None = _field(AT_LEAST_ONE, required=True)
    top1: float | None = _field(FRACTION)
    top5: float | None = _field(FRACTION)
    accuracy_source: str | None = _field()  # "measured" or "published"
    batch_size: int | None = _field(AT_LEAST_ONE)
    params: float | None = _field(POSITIVE)  # parameters of the model
    macs: float | None = _field(POSITIVE)  # multiply-accumulates per inference
    weights: str | None = _field()  # "imagenet", "random" or a weights file
    duration_s: float | None = _field(NOT_NEGATIVE)
    repeat: int | None = _field(AT_LEAST_ONE)
    repeats: int | None = _field(AT_LEAST_ONE)
    published_top1: float | None = _field(FRACTION)
    idle_watts: float | None = _field(NOT_NEGATIVE)  # the idle baseline before the passes
    keras: str | None = _field()  # Keras version
    pid: int | None = _field(NOT_NEGATIVE)
    # steadiness (issue 13): per-batch latency percentiles, throughput at ~1 s (a JSON list of
    # images/s), the longest gap without a finished batch, other processes' CPU time, the idle
    # baseline measured again after the passes
    latency_p50_s: float | None = _field(NOT_NEGATIVE)
    latency_p90_s: float | None = _field(NOT_NEGATIVE)
    latency_p99_s: float | None = _field(NOT_NEGATIVE)
    throughput_series: str | None = _field()
    stall_s: float | None = _field(NOT_NEGATIVE)
    other_cpu_s: float | None = _field(NOT_NEGATIVE)
    idle_watts_after: float | None = _field(NOT_NEGATIVE)


@dataclass(frozen=True)
class RunFail:
    """``fail``: the pass broke (an exception, Ctrl-C) at its time; no ``end`` follows."""

    kind: ClassVar[str] = "fail"
    reason: str | None = _field()


RunEvent = RunStart | RunEnd | RunFail
EVENTS: dict[str, type[RunEvent]] = {cls.kind: cls for cls in (RunStart, RunEnd, RunFail)}


def _read(f: Field, value: object) -> FieldValue | None:
    """The value of field ``f`` as its class has it; raises :class:`InvalidEvent` where the
    value breaks the field's type or rule, or a required field has none."""
    if value is None:
        if f.metadata["required"]:
            raise InvalidEvent(f"{f.name} is missing")
        return None
    if f.type == "str | None":
        return str(value)
    whole, rule = f.type == "int | None", f.metadata["rule"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        why = "is not a number"
    elif not math.isfinite(value):
        why = "is not a finite number"
    elif whole and value != int(value):
        why = "is not a whole number"
    elif rule is not None and not rule.holds(value):
        why = f"is not {rule.says}"
    else:
        return int(value) if whole else float(value)
    raise InvalidEvent(f"{f.name} {shown(value)} {why}")


assert all(f.type in ("str | None", "int | None", "float | None")
           for cls in EVENTS.values() for f in fields(cls))  # fmt: skip


def _checked(cls: type[RunEvent], values: Mapping[str, object]) -> RunEvent:
    """The event of ``cls`` with ``values`` read as its fields; :class:`InvalidEvent` naming the
    kind and the field where one breaks the schema."""
    try:
        return cls(**{f.name: _read(f, values.get(f.name)) for f in fields(cls)})
    except InvalidEvent as e:
        raise InvalidEvent(f"{cls.kind} event: {e}") from None


def event_point(tags: RunTags, event: RunEvent, time_ns: int) -> Point:
    """The ``run`` point of one event: ``event`` and every field with a value. Raises
    :class:`InvalidEvent` for tags or an event that break the schema (nothing is written)."""
    problem = tags.problem()
    if problem:
        raise InvalidEvent(problem)
    values = {f.name: getattr(event, f.name) for f in fields(event)}
    _checked(type(event), values)
    kept: dict[str, FieldValue] = {k: v for k, v in values.items() if v is not None}
    return Point(RUN, tags.as_dict(), {EVENT: event.kind, **kept}, time_ns)


def make_event(kind: str, **values: FieldValue | None) -> RunEvent:
    """The event of ``kind`` with these fields; raises ValueError for an unknown kind and
    TypeError for a field its class does not define."""
    if kind not in EVENTS:
        raise ValueError(f"unknown run event {kind!r}: one of {', '.join(EVENTS)}")
    return EVENTS[kind](**values)


def parse_event(point: Point) -> RunEvent:
    """The event a ``run`` point holds, each field read as its class says. Raises
    :class:`InvalidEvent` (one line: what is wrong) for tags or fields that break the schema,
    or a point whose ``event`` is no known kind."""
    problem = RunTags.of(point.tags).problem()
    if problem:
        raise InvalidEvent(problem)
    kind = point.fields.get(EVENT)
    cls = EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        what = "field event is missing" if kind is None else f"event {shown(kind)} is unknown"
        raise InvalidEvent(f"{what}: a run event is one of {', '.join(EVENTS)}")
    return _checked(cls, point.fields)
