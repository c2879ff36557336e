"""The report's page, ``index.html``: one file that needs no network.

CSS and one small script are inline, charts are ``data:`` PNGs, and a Content-Security-Policy
allows nothing else (no requests, and no script but the page's own, by hash). It holds the runs
table (flagged runs marked, failed and invalid ones greyed with their reason, estimated energy
marked ESTIMATED), repeat statistics, rankings per machine by composite score, the
cross-machine table where there are several machines, the Pareto chart, the sweeps' chart
(where runs are sweep points), and power over time for the newest finished runs. Every user
string (run ids, models, hosts, flags) is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from types import ModuleType

from exporters.stores.base import Store
from scoring.confidence import describe
from scoring.rankings import (
    Comparison,
    Entry,
    environment_summary,
    environments,
    marks,
    mixed_settings,
)  # fmt: skip
from scoring.rating import bands_text
from scoring.report_data import Column, Report, notes, page_columns, text
from scoring.runs import SPREAD_LIMIT, RepeatStats, RunScore

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


def _sha256(source: str) -> str:
    return base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()


_CSP = (
    f"default-src 'none'; img-src data:; style-src 'sha256-{_sha256(_STYLE)}'; "
    f"script-src 'sha256-{_sha256(_SCRIPT)}'; base-uri 'none'; form-action 'none'"
)
REPEAT_HEADERS = ("host", "model", "dataset", "backend", "batch", "runs", "mean uWh/inference",
                  "std uWh/inference", "spread", "mean composite", "")  # fmt: skip
RANKING_HEADERS = ("rank", "model", "runs", "top-1", "uWh/inference", "composite",
                   "composite 95% interval", "energy rating", "Canziani", "NetScore",
                   "confidence")  # fmt: skip
RATING_INTRO = (
    "Intervals: Student-t at 95% over the passes; neighbours whose intervals overlap are not "
    "distinguishable. Energy rating: energy per inference over the geometric mean of the "
    "reference models' measured on the same machine, task and operating point (README, "
    '"Energy rating"):'
)
RUNS_INTRO = (  # HTML
    "Energy per inference in µWh; composite = top-1² / mWh per inference; power and utilisation "
    "are averages over the run's window; throttled is the share of the window a GPU spent "
    "throttled (power cap, thermal or hardware slowdown); wall figures come from a wall meter "
    "(IPMI), shown beside the components, never added to them. Failed and invalid runs are "
    "never scored or ranked. scores.csv has more columns."
)


def _e(value: object) -> str:
    return html.escape(text(value), quote=True)


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
        return f'<td class="num">{html.escape(text(value, spec))}</td>'
    return f"<td>{_e(value)}</td>"


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
            mark = '<span class="badge warn">FLAGGED</span> ' if r.flags else ""
            cells.append(f'<td class="flags">{mark}{"<br>".join(_e(n) for n in notes(r))}</td>')
        else:
            cells.append(_td(value, col.spec))
    cls = "failed" if r.status in ("failed", "invalid") else "flagged" if r.flags else ""
    return cls, cells


def _repeats_table(stats: list[RepeatStats]) -> str:
    rows = []
    for s in stats:
        flag = f"spread over {SPREAD_LIMIT:.0%}" if s.flagged else ""
        cells = [_td(v) for v in (s.host, s.label, s.dataset, s.backend, s.batch_size)]
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
        for i, (e, m) in enumerate(zip(es, marks(es), strict=True), 1):
            cells = [_td(i, "d"), _td(e.label or e.model), _td(e.runs, "d"),
                     _td(e.accuracy, ".2%"), _td(e.uwh_per_inference, ".4g"),
                     _td(e.composite, ".2f"), _td(describe(e.composite_ci, ".2f")),
                     _td(e.rating), _td(e.canziani, ".2f"), _td(e.netscore, ".2f"),
                     _td("; ".join(m))]  # fmt: skip
            rows.append(("", cells))
        mixed = mixed_settings(es)
        mixed_html = f"<p>This ranking mixes settings: {_e('; '.join(mixed))}.</p>" if mixed else ""
        parts.append(f"<h3>{_e(host)}</h3>" + _table(RANKING_HEADERS, rows) + mixed_html)
    return "".join(parts) or "<p>No scored runs.</p>"


def _environment_table(runs: list[RunScore]) -> str:
    """Each machine's environment: its latest run's manifest (benchmark.manifest)."""
    rows = [("", [_td(h), _td(m), _td(environment_summary(manifest))])
            for (h, m), manifest in environments(runs).items()]  # fmt: skip
    return _table(("host", "machine id", "environment"), rows) if rows else "<p>No manifests.</p>"


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


def _power_section(store: Store, runs: list[RunScore], charts: ModuleType,
                   limit: int) -> tuple[str, int]:  # fmt: skip
    """Power charts of the newest ``limit`` finished runs, and how many images they make."""
    finished = [r for r in runs if r.status == "finished" and r.end_ns is not None]
    shown = sorted(finished, key=lambda r: (r.start_ns, r.run_id), reverse=True)[:limit]
    parts, images = [], 0
    if len(finished) > len(shown):
        parts.append(f"<p><strong>Showing the newest {len(shown)} of {len(finished)} finished "
                     f"runs</strong> (at most {limit} per report).</p>")  # fmt: skip
    for r in shown:
        joules = text(r.energy_j, ".3f") or "no"
        caption = (
            f"{_e(r.run_id)}: {_e(r.model)} on {_e(r.host)} ({_e(r.dataset)}), "
            f"{_e(joules)} J over {r.duration_s:.2f} s; the run's window is shaded"
        )
        png = charts.power_chart(r, charts.run_samples(store, r))
        strip = charts.throughput_chart(r)  # images/s on the same time axis, under the power
        under = "" if strip is None else _img(strip, f"throughput over time of run {r.run_id}")
        images += strip is not None
        if png is None:
            parts.append(f"<figure>{under}<figcaption>{caption}: no power samples."
                         "</figcaption></figure>")  # fmt: skip
            continue
        images += 1
        alt = f"power over time of run {r.run_id}"
        parts.append(f"<figure>{_img(png, alt)}{under}<figcaption>{caption}</figcaption></figure>")
    return "".join(parts) or "<p>No finished runs.</p>", images


def _sweep_section(store: Store, runs: list[RunScore]) -> tuple[list[str], int]:
    """The sweeps' chart (:mod:`scoring.sweep_chart`) and each swept model's energy-optimal
    point; nothing where no run is a sweep point."""
    from scoring.sweep import sweep_points, sweeps
    from scoring.sweep_chart import sweep_chart

    groups = sweeps(sweep_points(store, runs))
    if not groups:
        return [], 0
    png = sweep_chart(groups)
    best = "".join(f"<li>{_e(s.model)} on {_e(s.host)}: {_e(s.best.setting)}, "
                   f"{_e(text(s.best.uwh_per_inference, '.4g'))} µWh per inference</li>"
                   for s in groups if s.best is not None)  # fmt: skip
    alt = "sweep chart: energy per inference against p99 latency, front ringed"
    chart = _img(png, alt) if png is not None else "<p>No p99 latency recorded: no front.</p>"
    intro = "Each model's energy-optimal operating point (python -m benchmark sweep):"
    return [f'<h2 id="sweeps">Sweeps</h2><p>{intro}</p><ul>{best}</ul>{chart}'], int(bool(png))


def _chart_sections(store: Store, report: Report, charts: ModuleType,
                    max_power_charts: int) -> tuple[list[str], int]:  # fmt: skip
    """The Pareto and power sections, and how many images they hold."""
    pareto = charts.pareto_chart(report.items)
    pareto_html = (
        _img(pareto, "Pareto chart: top-1 against energy per inference per machine")
        if pareto is not None
        else "<p>No scored runs to draw.</p>"
    )
    power_html, images = _power_section(store, report.runs, charts, max_power_charts)
    sweep_html, sweep_images = _sweep_section(store, report.runs)
    sections = ['<h2 id="pareto">Pareto chart</h2>' + pareto_html, *sweep_html,
                '<h2 id="power">Power over time</h2>' + power_html]  # fmt: skip
    return sections, images + (pareto is not None) + sweep_images


def _table_sections(report: Report) -> list[str]:
    """The runs, repeats, rankings and (with several machines) cross-machine sections."""
    runs, columns = report.runs, page_columns(report.runs)
    counts = {s: sum(r.status == s for r in runs)
              for s in ("finished", "failed", "invalid", "running")}  # fmt: skip
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs"
    sections = [
        f'<h2 id="runs">Runs</h2><p>{len(runs)} runs: {_e(summary)}. {RUNS_INTRO}</p>'
        + _table([c.header for c in columns], (_run_row(r, columns) for r in runs)),
        '<h2 id="repeats">Repeats</h2><p>Runs of one model on one machine (same dataset, '
        f"backend, batch size): spread is the standard deviation over the mean; over "
        f"{SPREAD_LIMIT:.0%} is flagged.</p>" + _repeats_table(report.repeats),
        '<h2 id="rankings">Rankings by composite score</h2>'
        + _ranking_tables(report.rankings)
        + f"<p>{_e(RATING_INTRO)} {_e(bands_text())}.</p>",
        '<h2 id="environment">Environment</h2>' + _environment_table(report.runs),
    ]
    if report.comparison and report.reference:
        sections.append(
            '<h2 id="machines">Across machines</h2><p>Composite score per machine and its '
            f"ratio to the reference, {_e(report.reference)}.</p>"
            + _comparison_table(report.comparison, report.hosts, report.reference)
        )
    return sections


def render_page(store: Store, report: Report, charts: ModuleType, max_power_charts: int) -> str:
    """The page of ``report``; ``store`` is read for the power charts of the newest
    ``max_power_charts`` finished runs, drawn by ``charts`` (:mod:`scoring.charts`)."""
    figures, images = _chart_sections(store, report, charts, max_power_charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(report.title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>
<body data-images-expected="{images}">
<h1>{_e(report.title)}</h1>
<p class="meta">Generated {_e(report.generated)} from {_e(report.store)}.</p>
{"".join(_table_sections(report) + figures)}
</body></html>
"""
