"""Points as InfluxDB line protocol, written by influxdb-client's ``Point``.

Line protocol cannot carry everything a string can: a control character (NUL, tab, a line
break: :func:`exporters.schema.name_problem`, what no store keeps) in a name or tag value, a
backslash in a measurement or key, a tag value ending in a backslash, a measurement starting
with ``#``, an empty key or the key ``time``. Such a point is refused with a
:class:`~exporters.errors.UsageError` before anything is spooled, rather than stored as
something else. Numbers are written as floats, so a field never changes type between points.
"""

from __future__ import annotations

import functools
import math

from influxdb_client import Point as LinePoint
from influxdb_client import WritePrecision

from exporters.errors import UsageError
from exporters.schema import FieldValue, Point, name_problem


def line(point: Point) -> str:
    """One point as line protocol; '' when no field can be stored. Raises UsageError.

    The escaped ``measurement,tags`` part of a series and the check of field names are cached,
    since every sample of a series repeats them: ingest runs several times faster.
    """
    prefix = _series_prefix(point.measurement, tuple(point.tags.items()))
    fields = LinePoint("_")
    for key, value in point.fields.items():
        if key not in _CHECKED_FIELDS:
            _check_name("field", key, point)
            _CHECKED_FIELDS.add(key)
        fields.field(key, _field_value(key, value, point))
    rest = fields.time(int(point.time_ns), WritePrecision.NS).to_line_protocol()
    return f"{prefix}{rest[1:]}" if rest else ""


_CHECKED_FIELDS: set[str] = set()


@functools.lru_cache(maxsize=4096)
def _series_prefix(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,tag=value,...`` escaped by influxdb-client's Point (line protocol)."""
    point = Point(measurement, dict(tags), {}, 0)
    _check_name("measurement", measurement, point)
    if measurement.startswith("#"):
        raise UsageError(f"measurement {measurement!r} starts with '#': rename it")
    lp = LinePoint(measurement)
    for key, value in tags:
        _check_name("tag key", key, point)
        if value:
            _check_name(f"value of tag {key!r}", value, point, tag_value=True)
        lp.tag(key, value)
    line = lp.field("_", 0).to_line_protocol()
    return line[: -len(" _=0i")]


def _check_name(what: str, value: object, point: Point, *, tag_value: bool = False) -> None:
    """Refuse what line protocol cannot carry: InfluxDB would store something else."""
    problem = name_problem(what, value, point.measurement)
    if problem:
        raise UsageError(problem)
    text = str(value)  # it is one: name_problem says so
    if text.endswith("\\") if tag_value else "\\" in text:
        where = "a trailing backslash" if tag_value else "a backslash"
        raise UsageError(
            f"{what} {text!r} of a {point.measurement!r} point has {where}, which InfluxDB "
            "cannot store: remove it"
        )
    if text == "time" and what in ("tag key", "field"):
        raise UsageError(f"{what} 'time' of a {point.measurement!r} point is reserved: rename it")


def _field_value(key: str, value: FieldValue, point: Point) -> FieldValue | None:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise UsageError(
                f"field {key!r} of a {point.measurement!r} point is too large"
            ) from None
        return number if math.isfinite(number) else None
    raise UsageError(
        f"field {key!r} of a {point.measurement!r} point has type {type(value).__name__}: "
        "use float, int, bool or str"
    )
