"""The reference paper's published tables (``paper/`` at the repository root), as rows."""

from __future__ import annotations

import csv
from pathlib import Path

PAPER = Path(__file__).resolve().parents[1] / "paper"


def paper_rows(name: str) -> list[dict[str, str]]:
    """Every row of ``paper/NAME`` (a CSV with a header line), as dicts of strings."""
    with (PAPER / name).open(newline="") as f:
        return list(csv.DictReader(f))
