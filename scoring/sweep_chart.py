"""The report's sweep chart: energy per inference against p99 batch latency, as PNG bytes.

One series per model and machine (:class:`~scoring.sweep.Sweep`): every operating point, each
labelled with its setting, the Pareto front as a dashed step line through ringed points, and the
energy-optimal point as a star. Both axes are logarithmic: a sweep's batch sizes spread its
points over decades. Drawn like :mod:`scoring.charts` (matplotlib's object API, user text drawn
literally).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from scoring.charts import DPI, MARKERS, _plain, _png
from scoring.sweep import Sweep, SweepPoint


def _label(p: SweepPoint) -> str:
    return f"b{p.batch_size}" if p.backend == "tensorflow" and p.precision == "fp32" else (
        f"{p.backend} {p.precision} b{p.batch_size}"
    )  # fmt: skip


def sweep_chart(groups: Sequence[Sweep]) -> bytes | None:
    """The chart of ``groups``; None where no point has both an energy and a p99 latency."""
    drawn = [(s, [p for p in s.points if p.latency_p99_s and p.uwh_per_inference])
             for s in groups]  # fmt: skip
    drawn = [(s, ps) for s, ps in drawn if ps]
    if not drawn:
        return None
    fig = Figure(figsize=(10, 6.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for k, (s, points) in enumerate(drawn):
        colour, marker = f"C{k % 10}", MARKERS[k % len(MARKERS)]
        x = [p.uwh_per_inference for p in points]
        y = [p.latency_p99_s * 1e3 for p in points]
        name = f"{_plain(s.model)} on {_plain(s.host)}"
        ax.scatter(x, y, s=46, color=colour, marker=marker, label=name, zorder=3)
        for p, xi, yi in zip(points, x, y):
            ax.annotate(_plain(_label(p)), (xi, yi), xytext=(5, 4), textcoords="offset points",
                        fontsize=8, color="#333333")  # fmt: skip
        fx = [p.uwh_per_inference for p in s.front]
        fy = [p.latency_p99_s * 1e3 for p in s.front]
        ax.step(fx, fy, where="post", color=colour, linestyle="--", linewidth=1.4, zorder=2)
        ax.scatter(fx, fy, s=150, facecolors="none", edgecolors=colour, linewidths=1.8, zorder=4)
        if s.best is not None and s.best.latency_p99_s:
            ax.scatter([s.best.uwh_per_inference], [s.best.latency_p99_s * 1e3], s=260,
                       marker="*", color=colour, edgecolors="black", zorder=5)  # fmt: skip
    ax.scatter([], [], s=150, facecolors="none", edgecolors="#555555", label="Pareto front")
    ax.scatter([], [], s=200, marker="*", color="#aaaaaa", edgecolors="black",
               label="energy-optimal point")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("energy per inference (µWh, log scale)")
    ax.set_ylabel("p99 batch latency (ms, log scale)")
    ax.set_title("Sweeps: energy per inference against p99 latency (ringed, dashed: the front)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _png(fig)
