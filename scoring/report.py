"""The report of ``python -m scoring report --out DIR``: one self-contained page, CSV and JSON.

:func:`write_report` writes into ``DIR``:

- ``index.html``: a single file that needs no network: CSS and one small script inline, charts
  as ``data:`` PNGs, and a Content-Security-Policy that allows nothing else (no requests, and
  no script but the page's own, by hash). It holds the runs table (flagged runs marked, estimated
  energy marked ESTIMATED), repeat statistics, rankings per machine by composite score, the
  cross-machine table where there are several machines, the Pareto chart, and power over time
  for the newest finished runs. Every user string (run ids, models, hosts, flags) is escaped.
- ``scores.csv``: one row per run, every column of :data:`COLUMNS` (the page's and the
  CSV-only ones: GPU power, memory, wall energy, power per domain; each figure's header, format
  and page visibility are its report view in :mod:`scoring.figures`), raw numbers. Shares are
  fractions (``throttled`` 0.23), utilisations percentages (``GPU util %`` 87.5).
- ``scores.json``: the runs (``RunScore.as_dict()``), rankings, cross-machine table and repeat
  statistics; infinities and NaN become ``null``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from exporters.domains import WALL
from exporters.errors import UsageError, shown
from exporters.stores.base import Store
from scoring.figures import ALWAYS, FIGURES, NEVER, SOME, Figure
from scoring.rankings import Comparison, Entry, compare, entries, ranking
from scoring.runs import SPREAD_LIMIT, RepeatStats, RunScore, repeat_stats

MAX_POWER_CHARTS = 50


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


def _notes(r: RunScore) -> list[str]:
    return ([f"failed: {r.reason}"] if r.status == "failed" else []) + list(r.flags)


def _domain_power(r: RunScore) -> str:
    """Average/peak watts of the counted and the wall domains:
    ``rapl:package-0 41.2/55.0 W; ipmi:wall 230.1/260.0 W``."""
    if r.stats is None:
        return ""
    parts = []
    for d in r.stats.power:
        if d.counted or d.role == WALL:
            avg, peak = _text(d.avg_w, ".1f") or "-", _text(d.peak_w, ".1f") or "-"
            parts.append(f"{d.source}:{d.domain} {avg}/{peak} W")
    return "; ".join(parts)


# The runs table and scores.csv: every figure with a report view, then power by domain and notes.
COLUMNS: tuple[Column, ...] = (
    *(Column.of(f) for f in FIGURES if f.report is not None),
    Column("power by domain", _domain_power, "", NEVER),
    Column("flags", lambda r: "; ".join(_notes(r))),
)


def page_columns(runs: Sequence[RunScore]) -> list[Column]:
    """The columns the page shows for these runs."""
    return [
        c
        for c in COLUMNS
        if c.page == ALWAYS or (c.page == SOME and any(c.value(r) is not None for r in runs))
    ]


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d232a}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#57606a}.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:8px 0;font-size:12px}
th,td{border:1px solid #d0d7de;padding:2px 5px;vertical-align:top}
th{background:#f6f8fa;text-align:left;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fbfcfd}
tr.flagged td{background:#fff8c5}tr.failed td{background:#ffebe9;color:#6e7781}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;font-weight:600}
.est{background:#cf222e;color:#fff}.warn{background:#bf8700;color:#fff}.bad{background:#6e7781;color:#fff}
.flags{color:#7d4e00;min-width:14em}img{max-width:100%;height:auto;border:1px solid #eaeef2}
figure{margin:16px 0}figcaption{color:#57606a;font-size:13px}
"""
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.imagesOk = String(ok.length);
  document.body.dataset.imagesTotal = String(images.length);
});
"""


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


_CSP = (
    f"default-src 'none'; img-src data:; style-src 'sha256-{_sha256(_STYLE)}'; "
    f"script-src 'sha256-{_sha256(_SCRIPT)}'; base-uri 'none'; form-action 'none'"
)


def public_url(url: str) -> str:
    """The store URL without user information or query (where credentials could hide)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if not scheme.startswith("sqlite"):
        path = path.split("?")[0].split("#")[0]
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _text(value: object, spec: str = "") -> str:
    """A value as the page shows it (not yet escaped); empty for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return format(value, spec) if spec and isinstance(value, int | float) else str(value)


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _finite(obj: object) -> object:
    """JSON-safe: infinities and NaN become ``None``, containers recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]]) -> str:
    """Headers are plain text; each row is (CSS class, cells already in HTML)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        (f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>" for cls, cells in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _td(value: object, spec: str = "") -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{_e(_text(value, spec))}</td>'
    return f"<td>{_e(_text(value))}</td>"


def _run_row(r: RunScore, columns: Sequence[Column]) -> tuple[str, list[str]]:
    cells = []
    for col in columns:
        value = col.value(r)
        if col.header == "estimated":
            cells.append(
                '<td><span class="badge est">ESTIMATED</span></td>' if value else "<td></td>"
            )
        elif col.header == "status" and r.status != "finished":
            cells.append(f'<td><span class="badge bad">{_e(value)}</span></td>')
        elif col.header == "flags":
            notes = _notes(r)
            mark = '<span class="badge warn">FLAGGED</span> ' if r.flags else ""
            cells.append(f'<td class="flags">{mark}{"<br>".join(_e(n) for n in notes)}</td>')
        else:
            cells.append(_td(value, col.spec))
    cls = "failed" if r.status == "failed" else "flagged" if r.flags else ""
    return cls, cells


REPEAT_HEADERS = ("host", "model", "dataset", "backend", "batch", "runs", "mean uWh/inference",
                  "std uWh/inference", "spread", "mean composite", "")  # fmt: skip
RANKING_HEADERS = ("rank", "model", "runs", "top-1", "uWh/inference", "composite", "Canziani",
                   "NetScore")  # fmt: skip


def _repeats_table(stats: list[RepeatStats]) -> str:
    rows = []
    for s in stats:
        flag = f"spread over {SPREAD_LIMIT:.0%}" if s.flagged else ""
        cells = [_td(v) for v in (s.host, s.model, s.dataset, s.backend, s.batch_size)]
        cells += [_td(s.runs, "d"), _td(s.uwh_mean, ".4g"), _td(s.uwh_std, ".3g"),
                  _td(s.spread, ".2%"), _td(s.composite_mean, ".2f")]  # fmt: skip
        cells.append(
            f'<td><span class="badge warn">{_e(flag)}</span></td>' if flag else "<td></td>"
        )
        rows.append(("flagged" if s.flagged else "", cells))
    return _table(REPEAT_HEADERS, rows)


def _ranking_tables(rankings: dict[str, list[Entry]]) -> str:
    parts = []
    for host, es in rankings.items():
        rows = []
        for i, e in enumerate(es, 1):
            cells = [_td(i, "d"), _td(e.model), _td(e.runs, "d"), _td(e.accuracy, ".2%"),
                     _td(e.uwh_per_inference, ".4g"), _td(e.composite, ".2f"),
                     _td(e.canziani, ".2f"), _td(e.netscore, ".2f")]  # fmt: skip
            rows.append(("", cells))
        parts.append(f"<h3>{_e(host)}</h3>" + _table(RANKING_HEADERS, rows))
    return "".join(parts) or "<p>No scored runs.</p>"


def _comparison_table(rows: list[Comparison], hosts: list[str], reference: str) -> str:
    headers = ["model"]
    for h in hosts:
        headers += [f"{h} (reference)" if h == reference else h, f"{h} / reference"]
    body = []
    for c in rows:
        cells = [_td(c.model)]
        for h in hosts:
            cells += [_td(c.values.get(h), ".2f"), _td(c.ratios.get(h), ".2f")]
        body.append(("", cells))
    return _table(headers, body)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _reference(hosts: list[str], wanted: str | None) -> str | None:
    if wanted is None:
        return hosts[0] if hosts else None
    if wanted not in hosts:
        known = ", ".join(hosts) or "none"
        raise UsageError(f"reference host {wanted!r} has no scored runs (hosts: {known})")
    return wanted


def _charts():
    try:
        from scoring import charts
    except ImportError as e:
        raise UsageError(
            f"the report draws its charts with matplotlib ({e}): pip install 'tubai[bench]'"
        ) from e
    return charts


def _write_csv(path: Path, runs: list[RunScore]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([c.header for c in COLUMNS])
        writer.writerows([_csv_value(c.value(r)) for c in COLUMNS] for r in runs)


def _entry_dict(rank: int, e: Entry) -> dict:
    scores = {"composite": e.composite, "canziani": e.canziani, "netscore": e.netscore}
    return {"rank": rank, **asdict(e), **scores}


def _write_json(path: Path, head: dict, runs: list[RunScore], rankings: dict[str, list[Entry]],
                comparison: list[Comparison], repeats: list[RepeatStats]) -> None:  # fmt: skip
    document = {
        **head,
        "runs": [r.as_dict() for r in runs],
        "rankings": {h: [_entry_dict(i, e) for i, e in enumerate(es, 1)]
                     for h, es in rankings.items()},
        "comparison": [asdict(c) for c in comparison],
        "repeats": [asdict(s) | {"spread": s.spread, "flagged": s.flagged} for s in repeats],
    }  # fmt: skip
    with path.open("w", encoding="utf-8") as f:
        json.dump(_finite(document), f, indent=2, allow_nan=False)
        f.write("\n")


def _power_section(store: Store, runs: list[RunScore], limit: int) -> tuple[str, int]:
    """Power charts of the newest ``limit`` finished runs, and how many images they make."""
    charts = _charts()
    finished = [r for r in runs if r.status == "finished" and r.end_ns is not None]
    shown = sorted(finished, key=lambda r: (r.start_ns, r.run_id), reverse=True)[:limit]
    parts, images = [], 0
    if len(finished) > len(shown):
        parts.append(f"<p><strong>Showing the newest {len(shown)} of {len(finished)} finished "
                     f"runs</strong> (at most {limit} per report).</p>")  # fmt: skip
    for r in shown:
        joules = _text(r.energy_j, ".3f") or "no"
        caption = (
            f"{_e(r.run_id)}: {_e(r.model)} on {_e(r.host)} ({_e(r.dataset)}), "
            f"{_e(joules)} J over {r.duration_s:.2f} s; the run's window is shaded"
        )
        png = charts.power_chart(r, charts.run_samples(store, r))
        if png is None:
            parts.append(f"<figure><figcaption>{caption}: no power samples.</figcaption></figure>")
            continue
        images += 1
        alt = f"power over time of run {r.run_id}"
        parts.append(f"<figure>{_img(png, alt)}<figcaption>{caption}</figcaption></figure>")
    return "".join(parts) or "<p>No finished runs.</p>", images


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
    items = entries(runs)
    hosts = sorted({e.host for e in items})
    reference = _reference(hosts, reference_host)
    rankings = ranking(items)
    comparison = compare(items, reference) if len(hosts) > 1 and reference else []
    repeats = repeat_stats(runs)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store_url = public_url(store.url)

    _write_csv(out_dir / "scores.csv", runs)
    head = {"title": title, "generated": generated, "store": store_url,
            "reference_host": reference}  # fmt: skip
    _write_json(out_dir / "scores.json", head, runs, rankings, comparison, repeats)

    pareto = charts.pareto_chart(items)
    pareto_html = (
        _img(pareto, "Pareto chart: top-1 against energy per inference per machine")
        if pareto is not None
        else "<p>No scored runs to draw.</p>"
    )
    power_html, images = _power_section(store, runs, max_power_charts)
    images += pareto is not None

    columns = page_columns(runs)
    counts = {s: sum(r.status == s for r in runs) for s in ("finished", "failed", "running")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs"
    sections = [
        f'<h2 id="runs">Runs</h2><p>{len(runs)} runs: {_e(summary)}. Energy per inference in '
        "µWh; composite = top-1² / mWh per inference; power and utilisation are averages over "
        "the run's window; throttled is the share of the window a GPU spent throttled (power "
        "cap, thermal or hardware slowdown); wall figures come from a wall meter (IPMI), shown "
        "beside the components, never added to them. scores.csv has more columns.</p>"
        + _table([c.header for c in columns], (_run_row(r, columns) for r in runs)),
        '<h2 id="repeats">Repeats</h2><p>Runs of one model on one machine (same dataset, '
        f"backend, batch size): spread is the standard deviation over the mean; over "
        f"{SPREAD_LIMIT:.0%} is flagged.</p>" + _repeats_table(repeats),
        '<h2 id="rankings">Rankings by composite score</h2>' + _ranking_tables(rankings),
    ]
    if comparison and reference:
        sections.append(
            '<h2 id="machines">Across machines</h2><p>Composite score per machine and its '
            f"ratio to the reference, {_e(reference)}.</p>"
            + _comparison_table(comparison, hosts, reference)
        )
    sections.append('<h2 id="pareto">Pareto chart</h2>' + pareto_html)
    sections.append('<h2 id="power">Power over time</h2>' + power_html)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>
<body data-images-expected="{images}">
<h1>{_e(title)}</h1>
<p class="meta">Generated {_e(generated)} from {_e(store_url)}.</p>
{"".join(sections)}
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
