"""The interface both stores implement.

``write`` takes points and returns quickly (InfluxDB spools to disk first); ``read`` returns the
points of one measurement in a time range, oldest first, optionally filtered by exact tag
values. Tag values and field names are user data: implementations never paste them into a query
unescaped. ``flush`` blocks until everything written so far is stored (or spooled durably).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence

from exporters.schema import Point


class Store(ABC):
    """A time-series store of :class:`~exporters.schema.Point`."""

    url: str

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
    ) -> list[Point]:
        """Points of ``measurement`` with ``start_ns <= time_ns <= end_ns``, oldest first.

        ``tags`` keeps only points whose tags have exactly these values; ``fields`` keeps only
        those fields (a point with none of them is left out).
        """

    def flush(self, timeout_s: float | None = None) -> None:  # noqa: B027 - optional hook
        """Block until everything written so far is stored; the default store writes at once."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
