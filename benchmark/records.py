"""Writing and reading a benchmark's ``run`` events. What they hold is defined once, in
:mod:`scoring.events` (the tags :class:`RunTags`; the fields of each kind, :class:`RunStart`,
:class:`RunEnd` and :class:`RunFail`), which is also what scoring parses them with."""

from __future__ import annotations

from collections.abc import Iterable

from exporters import clock
from exporters.schema import RUN, FieldValue, Point
from exporters.stores.base import Store
from scoring.events import (
    EVENT,
    RunEnd,
    RunEvent,
    RunFail,
    RunStart,
    RunTags,
    event_point,
    make_event,
)

__all__ = ["RunEnd", "RunFail", "RunStart", "RunTags", "ids_in_use", "read_events", "write_event"]


def write_event(
    store: Store,
    tags: RunTags,
    event: RunEvent | str,
    time_ns: int | None = None,
    **fields: FieldValue | None,
) -> int:
    """Write one ``run`` event now (or at ``time_ns``) and return its time. ``event`` is the
    event (:class:`RunStart`, :class:`RunEnd`, :class:`RunFail`), or the name of its kind with
    its ``fields``: a field its kind does not define is a TypeError. Fields without a value
    are left out. Tags or fields that break the schema (a top-1 above 1, a control character in
    a tag...) raise :class:`~scoring.events.InvalidEvent` and nothing is written."""
    if isinstance(event, str):
        event = make_event(event, **fields)
    elif fields:
        raise TypeError("give the fields in the event, or its kind by name with the fields")
    stamp = clock.wall_ns() if time_ns is None else time_ns
    store.write([event_point(tags, event, stamp)])
    return stamp


def read_events(store: Store, run_id: str, start_ns: int = 0, end_ns: int = 2**62) -> list[Point]:
    """Every event of one run, oldest first."""
    return store.read(RUN, start_ns, end_ns, tags={"run_id": run_id})


def ids_in_use(store: Store, run_ids: Iterable[str]) -> list[str]:
    """Those of ``run_ids`` that already have events in the store, in the order given."""
    return [i for i in run_ids if store.read(RUN, 0, 2**62, tags={"run_id": i}, fields=[EVENT])]
