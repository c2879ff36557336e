"""What the report shows, gathered once from the runs: the runs table's columns (the page's and
``scores.csv``'s) and :class:`Report`, the rankings, comparison and repeats of the runs.

Each figure's header, format and page visibility are its report view in
:mod:`scoring.figures`; beside them, power by domain and the notes (why a run failed or is
invalid, then its flags).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from exporters.domains import WALL
from exporters.errors import UsageError
from scoring.figures import ALWAYS, FIGURES, NEVER, SOME, Figure, printable
from scoring.rankings import Comparison, Entry, compare, entries, ranking
from scoring.runs import RepeatStats, RunScore, repeat_stats


@dataclass(frozen=True)
class Column:
    """A column of the runs table: its header, its raw value, how the page shows a number.

    ``page``: :data:`~scoring.figures.ALWAYS`, :data:`~scoring.figures.SOME` (only where some
    run has a value: no GPU columns for a report without GPUs) or :data:`~scoring.figures.NEVER`
    (in the CSV only). The CSV has every column, always."""

    header: str
    value: Callable[[RunScore], object]
    spec: str = ""
    page: str = ALWAYS

    @classmethod
    def of(cls, figure: Figure) -> Column:
        """The column of a figure with a report view."""
        view = figure.report
        if not view.finished_only:
            return cls(view.header, figure.shown, view.fmt, view.show)
        return cls(view.header, lambda r: figure.shown(r) if r.status == "finished" else None,
                   view.fmt, view.show)  # fmt: skip


def text(value: object, spec: str = "") -> str:
    """A value as the page shows it (not yet escaped); empty for missing, control characters
    escaped (:func:`~scoring.figures.printable`)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if spec and isinstance(value, int | float):
        return format(value, spec)
    return printable(str(value))


def notes(r: RunScore) -> list[str]:
    """Why the run failed or is invalid, then its flags; control characters escaped."""
    return [printable(n) for n in r.remarks]


def _domain_power(r: RunScore) -> str:
    """Average/peak watts of the counted and the wall domains:
    ``rapl:package-0 41.2/55.0 W; ipmi:wall 230.1/260.0 W``."""
    if r.stats is None:
        return ""
    parts = []
    for d in r.stats.power:
        if d.counted or d.role == WALL:
            avg, peak = text(d.avg_w, ".1f") or "-", text(d.peak_w, ".1f") or "-"
            parts.append(f"{d.source}:{d.domain} {avg}/{peak} W")
    return printable("; ".join(parts))


# The runs table and scores.csv: every figure with a report view, then power by domain and notes.
COLUMNS: tuple[Column, ...] = (
    *(Column.of(f) for f in FIGURES if f.report is not None),
    Column("power by domain", _domain_power, "", NEVER),
    Column("flags", lambda r: "; ".join(notes(r))),
)


def page_columns(runs: Sequence[RunScore]) -> list[Column]:
    """The columns the page shows for these runs."""
    return [
        c
        for c in COLUMNS
        if c.page == ALWAYS or (c.page == SOME and any(c.value(r) is not None for r in runs))
    ]


@dataclass(frozen=True)
class Report:
    """Everything the report's files show, gathered once from the runs."""

    title: str
    generated: str  # RFC 3339, when the report was made
    store: str  # the store's URL, without credentials
    runs: list[RunScore]
    items: list[Entry]  # one per model and machine (scored runs only)
    hosts: list[str]  # the machines with scored runs
    reference: str | None  # the reference machine of the comparison
    rankings: dict[str, list[Entry]]
    comparison: list[Comparison]
    repeats: list[RepeatStats]

    @classmethod
    def of(cls, runs: list[RunScore], store: str, reference_host: str | None,
           title: str) -> Report:  # fmt: skip
        """The report of ``runs``; raises :class:`UsageError` for a reference host with no
        scored runs."""
        items = entries(runs)
        hosts = sorted({e.host for e in items})
        reference = _reference(hosts, reference_host)
        comparison = compare(items, reference) if len(hosts) > 1 and reference else []
        generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(title, generated, store, runs, items, hosts, reference, ranking(items),
                   comparison, repeat_stats(runs))  # fmt: skip


def _reference(hosts: list[str], wanted: str | None) -> str | None:
    if wanted is None:
        return hosts[0] if hosts else None
    if wanted not in hosts:
        known = ", ".join(hosts) or "none"
        raise UsageError(f"reference host {wanted!r} has no scored runs (hosts: {known})")
    return wanted
