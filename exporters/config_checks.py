"""Checks of one configuration value, each failing as a :class:`ConfigError` in one line.

The line reads ``config key 'KEY' is VALUE: FIX``. :mod:`exporters.config` checks the agent's own
keys with these, each built-in source's spec its settings (:class:`.sources.base.SourceSpec`)
and :mod:`exporters.sources.custom` its entries, so that every check is written once.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any

from exporters.errors import ConfigError

SECONDS = "give a number of seconds above 0"


def require(ok: bool, key: str, value: Any, fix: str) -> None:
    """Raise ``config key KEY is VALUE: FIX`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config key {key!r} is {value!r}: {fix}")


def is_seconds(value: Any) -> bool:
    """A number (not a bool) above zero."""
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def positive_seconds(key: str, value: Any, fix: str = SECONDS) -> None:
    require(is_seconds(value), key, value, fix)


def switch(key: str, value: Any, auto: bool = False) -> None:
    """An ``enabled`` setting: true or false, or also "auto" where the source has such a rule."""
    if auto:
        require(isinstance(value, bool) or value == "auto", key, value, "use true, false or auto")
    else:
        require(isinstance(value, bool), key, value, "use true or false")


def nonblank(key: str, value: Any, fix: str, optional: bool = False) -> None:
    """A string with more than blanks in it, or also None where ``optional``."""
    ok = isinstance(value, str) and bool(value.strip())
    require(ok or (optional and value is None), key, value, fix)


def unknown_key(where: str, key: Any, known: Collection[str], prefix: str = "") -> ConfigError:
    """The error for key ``where`` that is not one of ``known``: the nearest, or all of them."""
    near = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    hint = f"did you mean {prefix + near[0]!r}?" if near else f"known: {', '.join(known)}"
    return ConfigError(f"config key {where!r} is unknown: {hint}")
