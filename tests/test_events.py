"""The run events, defined once (scoring/events.py): what the benchmark writes is what scoring
reads, field by field and type by type, in both stores."""

from __future__ import annotations

from dataclasses import fields

import pytest

from benchmark.records import read_events, write_event
from exporters.schema import Point
from scoring.events import (
    EVENTS,
    InvalidEvent,
    RunEnd,
    RunFail,
    RunStart,
    RunTags,
    event_point,
    parse_event,
)
from scoring.runs import runs_from_events

TAGS = RunTags("r1", "resnet50", "tensorflow", "synthetic", "lab")
SAMPLE = {"int | None": 7, "float | None": 0.25, "str | None": 'it\'s "x", y=z'}


def _full(cls):
    """An event of ``cls`` with a value in every field."""
    return cls(**{f.name: SAMPLE[f.type] for f in fields(cls)})


def test_every_field_of_every_event_round_trips_through_the_store(store) -> None:
    for i, cls in enumerate(EVENTS.values()):
        write_event(store, TAGS, _full(cls), 1_000 + i)
    store.flush()
    events = read_events(store, "r1")
    assert [e.tags for e in events] == [TAGS.as_dict()] * 3
    assert [parse_event(e) for e in events] == [_full(cls) for cls in EVENTS.values()]


def _point(fields: dict, tags: dict | None = None) -> Point:
    return Point("run", TAGS.as_dict() if tags is None else tags, fields, 1_000)


def test_numbers_are_read_as_the_schema_says() -> None:
    end = parse_event(_point({"event": "end", "params": 2_554_968, "batch_size": 32.0, "top1": 1,
                              "inferences": 5, "weights": 3}))  # fmt: skip
    assert isinstance(end, RunEnd)
    assert end.params == 2_554_968.0 and type(end.params) is float  # written as an int
    assert end.batch_size == 32 and type(end.batch_size) is int  # InfluxDB gives floats back
    assert end.top1 == 1.0 and type(end.top1) is float
    assert end.inferences == 5 and end.top5 is None and end.macs is None
    assert end.weights == "3"  # text fields take any value as text
    assert parse_event(_point({"event": "start"})) == RunStart()


END = {"event": "end", "inferences": 1000, "top1": 0.75}


@pytest.mark.parametrize(
    ("fields", "tags", "reason"),
    [
        ({**END, "top1": 1.7}, None, "end event: top1 1.7 is not a fraction from 0 to 1"),
        ({**END, "top5": -0.1}, None, "end event: top5 -0.1 is not a fraction from 0 to 1"),
        ({**END, "top1": float("nan")}, None, "end event: top1 nan is not a finite number"),
        ({**END, "inferences": -5}, None, "end event: inferences -5 is not 1 or more"),
        ({**END, "inferences": 0}, None, "end event: inferences 0 is not 1 or more"),
        ({**END, "inferences": "many"}, None, "end event: inferences 'many' is not a number"),
        ({**END, "inferences": True}, None, "end event: inferences True is not a number"),
        ({**END, "batch_size": 2.5}, None, "end event: batch_size 2.5 is not a whole number"),
        ({**END, "params": 0}, None, "end event: params 0 is not above 0"),
        ({**END, "macs": -3e8}, None, "end event: macs -300000000.0 is not above 0"),
        ({**END, "top1": "0.9"}, None, "end event: top1 '0.9' is not a number"),
        ({"event": "end", "top1": 0.5}, None, "end event: inferences is missing"),
        ({"event": "start", "repeat": 0}, None, "start event: repeat 0 is not 1 or more"),
        ({"event": "pause"}, None, "event 'pause' is unknown: a run event is one of start, end"),
        ({"inferences": 5}, None, "field event is missing: a run event is one of start, end"),
        (END, TAGS.as_dict() | {"run_id": "r\x1b[2J"}, "tag run_id 'r\\x1b[2J' holds the "
         "control character '\\x1b'"),
        (END, TAGS.as_dict() | {"host": "lab\tb"}, "tag host 'lab\\tb' holds the control"),
        (END, {"run_id": "r", "model": "m"}, "tag host is missing"),
    ],
)  # fmt: skip
def test_a_malformed_event_is_refused_with_what_is_wrong(fields, tags, reason) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(_point(fields, tags))
    assert str(refused.value).startswith(reason)
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)


def test_the_writer_refuses_what_the_reader_would_and_writes_nothing(store) -> None:
    write_event(store, RunTags("other", "m", "b", "d", "h"), "start", 1_000)
    with pytest.raises(InvalidEvent, match=r"top1 1\.5 is not a fraction from 0 to 1"):
        write_event(store, TAGS, "end", 2_000, inferences=5, top1=1.5)
    with pytest.raises(InvalidEvent, match="params -1 is not above 0"):
        write_event(store, TAGS, RunEnd(inferences=5, params=-1), 2_000)
    with pytest.raises(InvalidEvent, match="inferences is missing"):
        write_event(store, TAGS, RunEnd(top1=0.5), 2_000)
    with pytest.raises(InvalidEvent, match="tag model 'm\\\\x1b' holds the control"):
        write_event(store, RunTags("r1", "m\x1b", "b", "d", "h"), "start", 2_000)
    store.flush()
    assert read_events(store, "r1") == []


def test_a_field_or_kind_the_schema_lacks_is_refused_and_nothing_written(store) -> None:
    write_event(store, RunTags("other", "m", "b", "d", "h"), "start", 1_000)
    with pytest.raises(TypeError, match="top_1"):
        write_event(store, TAGS, "end", 2_000, inferences=5, top_1=0.7)
    with pytest.raises(ValueError, match="unknown run event 'stop'"):
        write_event(store, TAGS, "stop", 2_000)
    with pytest.raises(TypeError):
        write_event(store, TAGS, RunFail(reason="x"), 2_000, reason="y")
    store.flush()
    assert read_events(store, "r1") == []


def test_fields_without_a_value_are_not_written() -> None:
    point = event_point(TAGS, RunEnd(inferences=5, top1=None, weights="random"), 9)
    assert point.measurement == "run" and point.time_ns == 9
    assert dict(point.fields) == {"event": "end", "inferences": 5, "weights": "random"}
    assert dict(event_point(TAGS, RunFail(), 9).fields) == {"event": "fail"}


def test_scoring_reads_the_runs_the_writer_wrote(store) -> None:
    write_event(store, TAGS, RunStart(repeat=1, repeats=1), 1_000)
    write_event(store, TAGS, RunEnd(inferences=48, top1=0.681, top5=0.874, params=2_554_968,
                                    macs=56_000_000, accuracy_source="published", batch_size=16,
                                    weights="random", idle_watts=2.5), 3_000)  # fmt: skip
    other = RunTags("r2", "m", "tensorflow", "synthetic", "lab")
    write_event(store, other, "start", 4_000)
    write_event(store, other, "fail", 5_000, reason="OOM")
    store.flush()
    finished, failed = runs_from_events(store.read("run", 0, 2**62))
    assert (finished.status, finished.start_ns, finished.end_ns) == ("finished", 1_000, 3_000)
    assert (finished.run_id, finished.model, finished.host) == ("r1", "resnet50", "lab")
    assert finished.inferences == 48 and finished.top1 == 0.681 and finished.top5 == 0.874
    assert finished.params == 2_554_968.0 and finished.macs == 56e6
    assert (finished.accuracy_source, finished.batch_size, finished.weights) == (
        "published", 16, "random")  # fmt: skip
    assert finished.idle_w == 2.5
    assert (failed.status, failed.reason, failed.end_ns) == ("failed", "OOM", 5_000)
