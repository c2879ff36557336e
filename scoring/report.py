"""The report of ``python -m scoring report --out DIR``: one self-contained page, CSV and JSON.

:func:`write_report` writes into ``DIR``:

- ``index.html``: a single file that needs no network (:mod:`scoring.report_page`): the runs
  table, repeat statistics, rankings, the cross-machine table, the Pareto chart and power over
  time, every user string escaped.
- ``scores.csv``: one row per run, every column of :data:`COLUMNS` (the page's and the
  CSV-only ones: GPU power, memory, wall energy, power per domain; each figure's header, format
  and page visibility are its report view in :mod:`scoring.figures`), raw numbers. Shares are
  fractions (``throttled`` 0.23), utilisations percentages (``GPU util %`` 87.5). A text cell
  that a spreadsheet would run as a formula (one that begins with ``=``, ``+``, ``-``, ``@``, a
  tab or a carriage return, such as a run id ``=HYPERLINK(...)``) begins with a ``'`` instead,
  as OWASP recommends; numbers stay numbers.
- ``scores.json``: the runs (``RunScore.as_dict()``), rankings, cross-machine table and repeat
  statistics, strict JSON (:mod:`scoring.jsonout`: infinities and NaN are ``null``).

What they show is gathered once (:class:`~scoring.report_data.Report`). Failed and invalid runs
are listed with their reason, never scored or ranked.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

from exporters.errors import UsageError, shown
from exporters.stores.base import Store
from scoring import jsonout
from scoring.rankings import Entry
from scoring.report_data import COLUMNS, Report
from scoring.report_page import render_page
from scoring.runs import RunScore

__all__ = ["COLUMNS", "MAX_POWER_CHARTS", "csv_cell", "public_url", "write_report"]

MAX_POWER_CHARTS = 50
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list: a spreadsheet runs these


def public_url(url: str) -> str:
    """The store URL without user information or query (where credentials could hide)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if not scheme.startswith("sqlite"):
        path = path.split("?")[0].split("#")[0]
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def csv_cell(value: object) -> str:
    """A value as ``scores.csv`` writes it: numbers as Python reads them back, text that a
    spreadsheet would run as a formula with a ``'`` before it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _write_csv(path: Path, runs: list[RunScore]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([c.header for c in COLUMNS])
        writer.writerows([csv_cell(c.value(r)) for c in COLUMNS] for r in runs)


def _entry_dict(rank: int, e: Entry) -> dict:
    scores = {"composite": e.composite, "canziani": e.canziani, "netscore": e.netscore}
    return {"rank": rank, **asdict(e), **scores}


def _write_json(path: Path, report: Report) -> None:
    document = {
        "title": report.title,
        "generated": report.generated,
        "store": report.store,
        "reference_host": report.reference,
        "runs": [r.as_dict() for r in report.runs],
        "rankings": {h: [_entry_dict(i, e) for i, e in enumerate(es, 1)]
                     for h, es in report.rankings.items()},
        "comparison": [asdict(c) for c in report.comparison],
        "repeats": [asdict(s) | {"spread": s.spread, "flagged": s.flagged}
                    for s in report.repeats],
    }  # fmt: skip
    with path.open("w", encoding="utf-8") as f:
        jsonout.dump(document, f)


def _charts() -> ModuleType:
    try:
        from scoring import charts
    except ImportError as e:
        raise UsageError(
            f"the report draws its charts with matplotlib ({e}): pip install 'tubai[bench]'"
        ) from e
    return charts


def _out_dir(out_dir: Path) -> Path:
    """``out_dir``, made where missing; :class:`UsageError` where it is not a directory the
    report can be written into (a file, a place that is not writable, a bad name)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(out_dir, os.W_OK | os.X_OK)
    except FileExistsError:
        problem = "is a file, not a directory"
    except (OSError, ValueError) as e:
        problem = f"cannot be made ({getattr(e, 'strerror', None) or e})"
    else:
        if writable:
            return out_dir
        problem = "is not writable"
    raise UsageError(f"--out {shown(str(out_dir))} {problem}: give a directory you can write into")


def write_report(
    store: Store,
    out_dir: Path,
    runs: list[RunScore],
    *,
    reference_host: str | None = None,
    title: str = "tubai report",
    max_power_charts: int = MAX_POWER_CHARTS,
) -> Path:
    """Write ``index.html``, ``scores.csv`` and ``scores.json`` into ``out_dir``; returns the
    page's path. ``store`` is read for the power charts of the newest ``max_power_charts``
    finished runs; the cross-machine table is relative to ``reference_host`` (default: the
    first host by name). Raises :class:`UsageError` for a reference host with no scored runs."""
    charts = _charts()
    out_dir = _out_dir(Path(out_dir))
    report = Report.of(runs, public_url(store.url), reference_host, title)
    _write_csv(out_dir / "scores.csv", runs)
    _write_json(out_dir / "scores.json", report)
    path = out_dir / "index.html"
    path.write_text(render_page(store, report, charts, max_power_charts), encoding="utf-8")
    return path
