"""What every ``python -m`` command shares: logging set-up and errors as one line.

:func:`main_guard` runs a command function and turns :class:`UsageError` into one line on stderr
with exit status 2, any other :class:`TubaiError` into one line with status 1, and Ctrl-C into
status 130, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from exporters.errors import TubaiError, UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors in the project's one-line form (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_float(text: str) -> float:
    """argparse type: a number above zero."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main_guard(prog: str, run: Callable[[], int | None]) -> int:
    """Run ``run`` and map errors to exit statuses; returns the status."""
    try:
        return run() or 0
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except TubaiError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
