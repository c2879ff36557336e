"""The project's exception hierarchy, so that every command can turn errors into one clear line.

Every message says what is wrong and what to do about it. Vendor errors (NVML, HTTP, SQLite) are
translated into these where they are caught, with ``raise ... from e``.

- :class:`UsageError`: bad input from the user (config, store URL, arguments, times): exit 2.
- :class:`StoreError`: a store could not be reached or answered with an error: exit 1.
  :class:`DatabaseNotFound`, one of these, is a database not created yet.
- :class:`SourceError`: a source could not read; the agent records it and goes on.

A value quoted back in a message goes through :func:`shown`: its ``repr``, so that it stays on
one line whatever it holds, cut short where it is long.
"""

from __future__ import annotations

from typing import Any

SHOWN = 80  # characters of a value quoted back in a message


class TubaiError(Exception):
    """Base of every error tubai reports to a user as one line."""


class UsageError(TubaiError, ValueError):
    """Bad input: the message names the input, the problem and the fix."""


class ConfigError(UsageError):
    """A configuration file or environment override is wrong."""


class StoreError(TubaiError):
    """A store failed; the message names the store (never its credentials)."""


class DatabaseNotFound(StoreError):
    """The store's database does not exist (an InfluxDB one nothing was written to yet): a
    reader may take it as empty; a write creates it."""


class SourceError(TubaiError):
    """A source could not read; the message says why and what to do about it."""


class SourceUnavailable(SourceError):
    """The hardware or its interface is absent or not readable."""


def shown(value: Any) -> str:
    """``repr(value)`` cut to :data:`SHOWN` characters, to quote a value back in one line."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}..."
