"""The interface both stores implement.

``write`` takes points and returns quickly (InfluxDB spools to disk first); ``read`` returns the
points of one measurement in a time range, oldest first, optionally filtered by exact tag
values. Tag values and field names are user data: implementations never paste them into a query
unescaped. ``flush`` blocks until everything written so far is stored (or spooled durably).
``check_writable`` finds, before anything is sampled, a store that opens but cannot be written.
Names (measurement, tag keys and values, field names) with control characters are refused at
``write`` (:func:`exporters.schema.names_problem`), before any of the batch is stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exporters.schema import FieldValue, Point, names_problem


@dataclass
class Columns:
    """One series as columns: its tags, its times, and each field's values (None if absent)."""

    tags: dict[str, str]
    times: list[int] = field(default_factory=list)
    values: dict[str, list[FieldValue | None]] = field(default_factory=dict)

    @classmethod
    def empty(cls, tags: Mapping[str, str], fields: Sequence[str]) -> Columns:
        """A series with these tags, no samples yet, and a column for each of ``fields``."""
        return cls(dict(tags), [], {f: [] for f in fields})

    def column(self, name: str) -> tuple[list[int], list[FieldValue]]:
        """(times, values) where the field ``name`` has a value."""
        values = self.values.get(name) or []
        pairs = [(t, v) for t, v in zip(self.times, values) if v is not None]
        return [t for t, _ in pairs], [v for _, v in pairs]


class Store(ABC):
    """A time-series store of :class:`~exporters.schema.Point`."""

    url: str

    @classmethod
    def from_url(cls, url: str) -> Store:
        """The store ``url`` names; :func:`exporters.stores.open_store` maps its scheme here."""
        raise NotImplementedError(f"{cls.__name__} cannot be opened from a URL")

    @abstractmethod
    def write(self, points: Iterable[Point]) -> None:
        """Store the points (durably, or queued durably)."""

    @abstractmethod
    def read(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
        *,
        missing_ok: bool = False,
    ) -> list[Point]:
        """Points of ``measurement`` with ``start_ns <= time_ns <= end_ns``, oldest first.

        ``tags`` keeps only points whose tags have exactly these values; ``fields`` keeps only
        those fields (a point with none of them is left out). A database that does not exist
        yet (an InfluxDB one nothing was written to) raises
        :class:`~exporters.errors.DatabaseNotFound`, or holds no points where ``missing_ok``.
        """

    def read_columns(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] = (),
    ) -> list[Columns]:
        """The same points as :meth:`read`, one :class:`Columns` per series: for long windows,
        where building a :class:`Point` per sample would cost more than the query."""
        series: dict[tuple, Columns] = {}
        for p in self.read(measurement, start_ns, end_ns, tags, fields):
            key = tuple(sorted(p.tags.items()))
            cols = series.get(key)
            if cols is None:
                cols = series[key] = Columns.empty(p.tags, fields)
            cols.times.append(p.time_ns)
            for f in fields:
                cols.values[f].append(p.fields.get(f))
        return list(series.values())

    def flush(self, timeout_s: float | None = None) -> None:  # noqa: B027 - optional hook
        """Block until everything written so far is stored; the default store writes at once."""

    def refusal(self, point: Point) -> str | None:
        """Why :meth:`write` would refuse ``point`` (a name no store, or this one, can keep), in
        one line naming the fix; None when it would not."""
        return names_problem(point)

    def check_writable(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~exporters.errors.UsageError` (one line naming the fix) when points
        cannot be written here; called before sampling starts. A store that only spools (or
        writes at once) has nothing to check."""

    def close(self, timeout_s: float | None = None) -> None:  # noqa: B027 - optional hook
        """Flush (for up to ``timeout_s``, else the store's own bound) and release resources."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
