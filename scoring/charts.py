"""The report's charts as PNG bytes: the Pareto chart, power over a run's window and its
throughput strip.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure`` drawn by the Agg
canvas), never through pyplot: no global backend switch, no figure registry to leak into, so
memory stays flat however many charts a report draws, and a display is never needed. Text that
comes from users (model and host names) is drawn literally: a ``$`` would otherwise start
matplotlib's mathtext.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from exporters.domains import WALL
from exporters.stores.base import Store
from exporters.window import EnergySamples, read_energy
from scoring.rankings import Entry
from scoring.runs import RunScore

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
MIN_MARGIN_S = 2.0
MARGIN_FRACTION = 0.1
LABEL_CHARS = 32
DPI = 96


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (energy, accuracy) no other point dominates, lowest energy first.

    A point is dominated by one with less or equal energy and greater or equal accuracy, better
    in at least one of the two; identical points do not dominate each other, so both stay.
    Points with a non-finite coordinate are never on the front.
    """
    finite = [i for i, (e, a) in enumerate(points) if math.isfinite(e) and math.isfinite(a)]
    order = sorted(finite, key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -math.inf
    for i in order:
        energy, accuracy = points[i]
        if accuracy > best or (front and tuple(points[front[-1]]) == (energy, accuracy)):
            front.append(i)
            best = accuracy
    return front


def plain_text(text: str, limit: int = LABEL_CHARS) -> str:
    """A user string to draw as it is: shortened, ``$`` escaped so mathtext stays off."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def png_bytes(fig: Figure) -> bytes:
    """The figure drawn by the Agg canvas as PNG bytes, without a software stamp."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def front_axes() -> tuple[Figure, Axes]:
    """A new figure and its axes for a chart of points and their Pareto fronts."""
    fig = Figure(figsize=(10, 6.2), dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def draw_front_series(
    ax: Axes, k: int, points: Sequence[tuple[float, float, str]],
    front: Sequence[tuple[float, float]], name: str,
) -> str:  # fmt: skip
    """Series ``k``: its points (x, y, label drawn beside the point as plain text) named
    ``name`` in the legend (drawn as given: pass it through :func:`plain_text`), and its
    ``front`` as a dashed step line through rings; returns the series' colour."""
    colour, marker = f"C{k % 10}", MARKERS[k % len(MARKERS)]
    x, y = [p[0] for p in points], [p[1] for p in points]
    ax.scatter(x, y, s=46, color=colour, marker=marker, label=name, zorder=3)
    for xi, yi, label in points:
        ax.annotate(plain_text(label), (xi, yi), xytext=(5, 4), textcoords="offset points",
                    fontsize=8, color="#333333")  # fmt: skip
    fx, fy = [f[0] for f in front], [f[1] for f in front]
    ax.step(fx, fy, where="post", color=colour, linestyle="--", linewidth=1.4, zorder=2)
    ax.scatter(fx, fy, s=150, facecolors="none", edgecolors=colour, linewidths=1.8, zorder=4)
    return colour


def _log_axis(axis: Axis) -> None:
    """A log scale ticked at 1, 2 and 5 per decade, labelled as plain numbers."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def finish_front_chart(
    fig: Figure, ax: Axes, ylabel: str, title: str, *, log_y: bool = False
) -> bytes:
    """A front chart's PNG: the rings' legend entry, energy per inference on a log x axis (y
    on a log axis too with ``log_y``), the axis labels, title, grid and legend."""
    ax.scatter([], [], s=150, facecolors="none", edgecolors="#555555", label="Pareto front")
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    if log_y:
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
    ax.set_xlabel("energy per inference (µWh, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return png_bytes(fig)


def pareto_chart(items: Sequence[Entry]) -> bytes | None:
    """Energy per inference (log) against top-1, one series per machine, each machine's
    Pareto front as a step line with ringed markers; ``None`` when nothing can be drawn."""
    by_host: dict[str, list[Entry]] = defaultdict(list)
    for e in items:
        if math.isfinite(e.uwh_per_inference) and e.uwh_per_inference > 0:
            by_host[e.host].append(e)
    if not by_host:
        return None
    fig, ax = front_axes()
    for k, (host, es) in enumerate(sorted(by_host.items())):
        points = [(e.uwh_per_inference, e.accuracy * 100, e.model) for e in es]
        front = [points[i][:2] for i in pareto_front([p[:2] for p in points])]
        draw_front_series(ax, k, points, front, plain_text(host))
    return finish_front_chart(
        fig,
        ax,
        "top-1 accuracy (%)",
        "Accuracy against energy per inference (ringed, dashed: each machine's front)",
    )


def margin_ns(run: RunScore) -> int:
    """Time shown either side of a run's window: 10% of it, at least 2 s."""
    span = (run.end_ns or run.start_ns) - run.start_ns
    return max(int(span * MARGIN_FRACTION), int(MIN_MARGIN_S * 1e9))


def run_samples(store: Store, run: RunScore) -> EnergySamples | None:
    """The run's energy series with the chart's margin either side (None: no finished window)."""
    if run.end_ns is None or run.end_ns <= run.start_ns:
        return None
    return read_energy(store, run.start_ns, run.end_ns, host=run.host, margin_ns=margin_ns(run))


def power_series(
    run: RunScore, samples: EnergySamples | None, wall: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``source:domain`` -> (seconds from the window start, watts) for each counted domain, or
    with ``wall`` for each wall domain (system level: never counted), from ``samples``."""
    keep = [d for d in run.domains if (d.role == WALL if wall else d.counted)]
    if not keep or samples is None:
        return {}
    watts = samples.watts()
    out = {}
    for d in keep:
        times, values = watts.get((d.host, d.source, d.domain), ([], []))
        if times:
            seconds = (np.array(times, dtype=np.int64) - run.start_ns) / 1e9
            out[f"{d.source}:{d.domain}"] = (seconds, np.array(values))
    return dict(sorted(out.items()))


def power_chart(run: RunScore, samples: EnergySamples | None) -> bytes | None:
    """Watts of each counted domain around the run's shaded window (and their total where
    there are several), and dashed the power at the wall where it was measured, which contains
    the components; ``None`` when ``samples`` (:func:`run_samples`) hold no power for it."""
    series, walls = power_series(run, samples), power_series(run, samples, wall=True)
    if not (series or walls) or run.duration_s is None:
        return None
    fig = Figure(figsize=(10, 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.axvspan(0, run.duration_s, color="#f2c14e", alpha=0.25, label="run window")
    for name, (t, w) in series.items():
        ax.plot(t, w, linewidth=1.2, label=plain_text(name))
    if len(series) > 1:
        grid = np.unique(np.concatenate([t for t, _ in series.values()]))
        total = sum(np.interp(grid, t, w, left=np.nan, right=np.nan) for t, w in series.values())
        ax.plot(grid, total, color="black", linewidth=1.6, label="total")
    for name, (t, w) in walls.items():
        ax.plot(
            t, w, color="#6e7781", linestyle="--", linewidth=1.4, label=f"{plain_text(name)} (wall)"
        )
    estimated = " (ESTIMATED)" if run.estimated else ""
    ax.set_title(
        f"{plain_text(run.model, 48)} on {plain_text(run.host, 48)}{estimated}", fontsize=10
    )
    ax.set_xlabel("seconds from the window start")
    ax.set_ylabel("watts")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return png_bytes(fig)


def throughput_chart(run: RunScore) -> bytes | None:
    """A strip to go under the run's power chart, on the same time axis: images/s per bin of
    its ``throughput_series`` over the window, with the batch latency percentiles and the
    longest gap without a finished batch in the title; ``None`` without a series."""
    series, seconds = run.throughput_series, run.duration_s
    if not series or not seconds:
        return None
    bin_s = seconds / len(series)
    fig = Figure(figsize=(10, 1.9), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    edges = np.arange(len(series) + 1) * bin_s
    ax.stairs(series, edges, fill=True, color="#4c72b0", alpha=0.6, label="images/s")
    margin_s = margin_ns(run) / 1e9
    ax.set_xlim(-margin_s, seconds + margin_s)
    ax.set_ylim(bottom=0)
    parts = [f"images/s per {bin_s:.2g} s"]
    if run.latency_p50_s is not None and run.latency_p99_s is not None:
        parts.append(
            f"batch p50 {run.latency_p50_s * 1e3:.3g} ms, p99 {run.latency_p99_s * 1e3:.3g} ms"
        )
    if run.stall_s is not None:
        parts.append(f"longest gap {run.stall_s:.3g} s")
    ax.set_title("; ".join(parts), fontsize=9)
    ax.set_xlabel("seconds from the window start")
    ax.set_ylabel("images/s")
    ax.grid(True, alpha=0.3)
    return png_bytes(fig)
