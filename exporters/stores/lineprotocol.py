"""Points as InfluxDB line protocol, as influxdb-client's ``Point`` writes it (which escapes each
series' ``measurement,tags`` once; the fields are written here, the same way, for speed).

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

from exporters.errors import UsageError
from exporters.schema import FieldValue, Point, name_problem


def line(point: Point) -> str:
    """One point as line protocol; '' when no field can be stored. Raises UsageError.

    The escaped ``measurement,tags`` part of a series and each checked, escaped field name are
    cached, since every sample of a series repeats them; the fields are written here, as
    influxdb-client's ``Point`` writes them (sorted by name, ``str`` of a float less a trailing
    ``.0``, strings quoted and escaped), at a quarter of its cost.
    """
    prefix = _series_prefix(point.measurement, tuple(point.tags.items()))
    fields = point.fields
    for key in fields:
        if key not in _FIELD_NAMES:
            _check_name("field", key, point)
            _FIELD_NAMES[key] = key.translate(_ESCAPE_KEY)
    parts = []
    for key in sorted(fields):
        value = _field_value(key, fields[key], point)
        if value is not None:
            parts.append(f"{_FIELD_NAMES[key]}={_field_text(value)}")
    return f"{prefix} {','.join(parts)} {int(point.time_ns)}" if parts else ""


_FIELD_NAMES: dict[str, str] = {}  # checked field names, escaped
# influxdb-client's escapes: of a field name, and inside a string field's quotes
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t",
                             "\r": r"\r"})  # fmt: skip
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


def _field_text(value: FieldValue) -> str:
    """A field value (as :func:`_field_value` returns it) in line protocol."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value.translate(_ESCAPE_STRING)}"'
    text = str(value)  # a float
    return text[:-2] if text.endswith(".0") else text


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
