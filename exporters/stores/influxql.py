r"""InfluxQL, written so that user strings never become query syntax.

InfluxQL reads a double-quoted identifier and a single-quoted string literal with the same
escapes: ``\\`` for a backslash, ``\"`` and ``\'`` for the quotes, ``\n`` for a newline (a raw
newline inside quotes is a syntax error). Every measurement, tag key and field name goes through
:func:`quote_ident`, every tag value through :func:`quote_literal`; :func:`select` and
:func:`create_database` are the statements the InfluxDB store runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

_IDENT = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_LITERAL = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n"})


def quote_ident(name: str) -> str:
    r"""``name`` as a double-quoted InfluxQL identifier: ``my "db"`` -> ``"my \"db\""``."""
    return '"' + str(name).translate(_IDENT) + '"'


def quote_literal(value: str) -> str:
    r"""``value`` as a single-quoted InfluxQL string literal: ``it's`` -> ``'it\'s'``."""
    return "'" + str(value).translate(_LITERAL) + "'"


def select(
    measurement: str,
    start_ns: int,
    end_ns: int,
    tags: Mapping[str, str] | None,
    fields: Sequence[str] | None,
) -> str:
    """``fields`` (all when None or empty) of ``measurement`` in ``[start_ns, end_ns]`` whose tags
    have exactly ``tags``' values, one series per tag set (``GROUP BY *``)."""
    what = ", ".join(quote_ident(f) for f in fields) if fields else "*"
    where = [f"time >= {int(start_ns)}", f"time <= {int(end_ns)}"]
    where += [f"{quote_ident(k)} = {quote_literal(v)}" for k, v in (tags or {}).items()]
    return f"SELECT {what} FROM {quote_ident(measurement)} WHERE {' AND '.join(where)} GROUP BY *"


def create_database(name: str) -> str:
    """The statement that creates database ``name`` (nothing when it exists)."""
    return f"CREATE DATABASE {quote_ident(name)}"


__all__ = ["create_database", "quote_ident", "quote_literal", "select"]
