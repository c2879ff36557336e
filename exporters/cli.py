"""What every ``python -m`` command shares: logging set-up and errors as one line.

:func:`main_guard` runs a command function and turns :class:`UsageError` into one line on stderr
with exit status 2, any other :class:`TubaiError` into one line with status 1, and Ctrl-C into
status 130, never a traceback.
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import sys
from collections.abc import Callable

from exporters.errors import TubaiError, UsageError, shown


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors in the project's one-line form (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: object) -> str:
    """``message`` on one line: any line breaks (from a quoted argument, say) become spaces."""
    return " ".join(str(message).splitlines())


MAX_SECONDS = 1e9  # about 31 years: longer is a typo, and too long for a timer


def positive_float(text: str) -> float:
    """argparse type: a number of seconds above 0, at most :data:`MAX_SECONDS`, in ASCII digits
    (``float`` would also read ``١٢`` and ``１２``)."""
    try:
        value = float(text) if text.isascii() else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a number of seconds above 0 (at most {MAX_SECONDS:.0e})"
        )
    return value


def whole_number(text: str) -> int:
    """argparse type: a whole number, 0 or more, in ASCII digits (``int`` would also read
    ``١٢``); its range is the option's own check."""
    digits = text.strip()
    if not re.fullmatch(r"[0-9]{1,30}", digits):
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a whole number (0 or more)")
    return int(digits)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main_guard(prog: str, run: Callable[[], int | None]) -> int:
    """Run ``run`` and map errors to exit statuses; returns the status.

    Output never fails on text the terminal cannot encode (a name given as bytes that are not
    UTF-8 reaches Python as surrogates): such characters are printed as escapes."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        return run() or 0
    except UsageError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except TubaiError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
