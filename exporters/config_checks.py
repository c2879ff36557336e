"""Checks of one configuration value, each failing as a :class:`ConfigError` in one line.

The line reads ``config key 'KEY' is VALUE: FIX``. :mod:`exporters.config` checks the agent's own
keys with these, each built-in source's spec its settings (:class:`.sources.base.SourceSpec`)
and :mod:`exporters.sources.custom` its entries, so that every check is written once.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from exporters.errors import ConfigError, shown
from exporters.schema import control_char

MIN_SECONDS, MAX_SECONDS = 0.001, 86_400  # a millisecond to a day: intervals a loop can keep
SECONDS = f"give a number of seconds above 0 (from {MIN_SECONDS} to {MAX_SECONDS})"


def require(ok: bool, key: str, value: Any, fix: str) -> None:
    """Raise ``config key KEY is VALUE: FIX`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config key {key!r} is {shown(value)}: {fix}")


def is_number(value: Any) -> bool:
    """An int or float (not a bool) that is finite as a float: not ``.inf``, ``.nan``, nor an
    int too large for a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_seconds(value: Any) -> bool:
    """A number of seconds from :data:`MIN_SECONDS` to :data:`MAX_SECONDS`."""
    return is_number(value) and MIN_SECONDS <= value <= MAX_SECONDS


def positive_seconds(key: str, value: Any, fix: str = SECONDS) -> None:
    require(is_seconds(value), key, value, fix)


def switch(key: str, value: Any, auto: bool = False) -> None:
    """An ``enabled`` setting: true or false, or also "auto" where the source has such a rule."""
    if auto:
        require(isinstance(value, bool) or value == "auto", key, value, "use true, false or auto")
    else:
        require(isinstance(value, bool), key, value, "use true or false")


def nonblank(key: str, value: Any, fix: str, optional: bool = False) -> None:
    """A string with more than blanks in it and no NUL character, or also None where
    ``optional``."""
    ok = isinstance(value, str) and bool(value.strip()) and "\x00" not in value
    require(ok or (optional and value is None), key, value, fix)


def http_url(key: str, value: Any, fix: str) -> None:
    """An ``http://`` or ``https://`` URL with a host (and a port, if any, from 1 to 65535)."""
    try:
        parts = urlsplit(value) if isinstance(value, str) and "\x00" not in value else None
        ok = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and parts.port != 0
    except ValueError:  # a bad port or IPv6 address
        ok = False
    require(ok, key, value, fix)


def tag_problem(text: str) -> str | None:
    """Why ``text`` cannot be a tag value (a host, a run id) in every store, or None."""
    if not text.strip() or len(text) > 200:
        return "give 1 to 200 characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as lone surrogates
        return "give UTF-8 text (this came as bytes that are not UTF-8)"
    if control_char(text) is not None or text.endswith("\\"):
        return (
            "leave out control characters (tabs, line breaks, NUL, ESC...) and a final "
            "backslash (InfluxDB cannot store those)"
        )
    return None


def unknown_key(where: str, key: Any, known: Collection[str], prefix: str = "") -> ConfigError:
    """The error for key ``where`` that is not one of ``known``: the nearest, or all of them."""
    near = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    hint = f"did you mean {prefix + near[0]!r}?" if near else f"known: {', '.join(known)}"
    return ConfigError(f"config key {shown(where)} is unknown: {hint}")
