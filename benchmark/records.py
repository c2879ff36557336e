"""The ``run`` events a benchmark writes: ``start``, then ``end`` with everything the run's
scores need, or ``fail`` with the reason. Scoring reads only these, never the registry.

Tags: ``run_id``, ``model``, ``backend``, ``dataset`` and ``host``. The window of a run is the
time of its ``start`` event to the time of its ``end`` event. User strings (run ids, model
names) travel as tag values, which both stores escape; nothing is pasted into a query.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporters import clock
from exporters.schema import RUN, FieldValue, Point
from exporters.stores.base import Store


@dataclass(frozen=True)
class RunTags:
    run_id: str
    model: str
    backend: str
    dataset: str
    host: str

    def as_dict(self) -> dict[str, str]:
        return {
            "run_id": self.run_id,
            "model": self.model,
            "backend": self.backend,
            "dataset": self.dataset,
            "host": self.host,
        }


def write_event(
    store: Store, tags: RunTags, event: str, time_ns: int | None = None, **fields: FieldValue
) -> int:
    """Write one ``run`` event now (or at ``time_ns``) and return its time."""
    stamp = clock.wall_ns() if time_ns is None else time_ns
    values = {"event": event, **{k: v for k, v in fields.items() if v is not None}}
    store.write([Point(RUN, tags.as_dict(), values, stamp)])
    return stamp


def read_events(store: Store, run_id: str, start_ns: int = 0, end_ns: int = 2**62) -> list[Point]:
    """Every event of one run, oldest first."""
    return store.read(RUN, start_ns, end_ns, tags={"run_id": run_id})
