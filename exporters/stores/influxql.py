r"""Quoting for InfluxQL, so that user strings never become query syntax.

InfluxQL reads a double-quoted identifier and a single-quoted string literal with the same
escapes: ``\\`` for a backslash, ``\"`` and ``\'`` for the quotes, ``\n`` for a newline (a raw
newline inside quotes is a syntax error). Every measurement, tag key and field name goes through
:func:`quote_ident`, every tag value through :func:`quote_literal`.
"""

from __future__ import annotations

_IDENT = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_LITERAL = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n"})


def quote_ident(name: str) -> str:
    r"""``name`` as a double-quoted InfluxQL identifier: ``my "db"`` -> ``"my \"db\""``."""
    return '"' + str(name).translate(_IDENT) + '"'


def quote_literal(value: str) -> str:
    r"""``value`` as a single-quoted InfluxQL string literal: ``it's`` -> ``'it\'s'``."""
    return "'" + str(value).translate(_LITERAL) + "'"


__all__ = ["quote_ident", "quote_literal"]
