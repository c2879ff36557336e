"""Reading a YAML file a user gives (the exporter's config file, a campaign's plan), with every
way it can fail turned into one :class:`~exporters.errors.UsageError` line.

The message names the file (``what`` and its path, quoted by :func:`~exporters.errors.shown`),
the problem and the fix: unreadable, not UTF-8, not YAML (with the line), nested too deeply, or
holding a value YAML's safe loader cannot convert (a date such as ``2001-13-01``, an integer of
more than 4300 digits, ``!!float x``). What the file must hold is the caller's to check.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from exporters.errors import UsageError, shown

# What PyYAML's safe constructors raise for a scalar they cannot convert (explicit tags such as
# ``!!int 0x`` or ``!!timestamp x``, impossible dates, over-long integers): not YAMLError.
CONVERSION_ERRORS = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError)
# Everything ``yaml.safe_load`` of a user's text may raise, for a caller with a fallback.
LOAD_ERRORS = (yaml.YAMLError, RecursionError, *CONVERSION_ERRORS)


def read_yaml(path: str | Path, what: str, error: type[UsageError] = UsageError) -> object:
    """The document in the YAML file at ``path`` (None where it is empty); ``error`` (a
    :class:`UsageError`) with one line naming ``what`` (e.g. ``"plan"``) where it is unusable."""
    try:
        return yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
    except (OSError, *LOAD_ERRORS) as e:
        raise error(_problem(f"{what} {shown(str(path))}", e)) from e


def _problem(name: str, e: BaseException) -> str:
    """What is wrong with the file ``name`` that raised ``e``, and the fix, in one line."""
    if isinstance(e, OSError):
        return f"cannot read {name}: {e.strerror}; check the path"
    if isinstance(e, UnicodeDecodeError):
        byte = e.object[e.start]
        return f"{name} is not UTF-8 text (byte 0x{byte:02x} at offset {e.start}): save it as UTF-8"
    if isinstance(e, RecursionError):
        return f"{name} is nested too deeply: flatten it"
    if isinstance(e, yaml.YAMLError):
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        if isinstance(e, yaml.reader.ReaderError) and isinstance(e.character, int):
            where = f" (character U+{e.character:04X} at offset {e.position})"  # not allowed
        return f"{name} is not valid YAML{where}: fix the syntax"
    return (
        f"{name} holds a value YAML cannot convert ({shown(str(e))}): fix the value, or quote "
        "it to keep it as text"
    )
