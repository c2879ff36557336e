"""Strict JSON: how every ``--json`` output and ``scores.json`` is written.

JSON has no infinity and no NaN; Python's ``json`` would write them as ``Infinity`` and ``NaN``,
which strict parsers (``jq``, browsers' ``JSON.parse``, Go, Rust) refuse. Here they become
``null``, as a figure without a value is, and the encoder is told to refuse any that remain.
"""

from __future__ import annotations

import json
import math
import sys
from typing import IO


def finite(obj: object) -> object:
    """``obj`` with every infinite or NaN float as ``None``, through dicts (keys as text),
    lists and tuples."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dump(obj: object, stream: IO[str] | None = None) -> None:
    """Write ``obj`` as strict, indented JSON and a line break to ``stream`` (stdout); what
    JSON has no type for is written as its text."""
    out = sys.stdout if stream is None else stream
    json.dump(finite(obj), out, indent=2, allow_nan=False, default=str)
    out.write("\n")
