"""The report's sweep chart: energy per inference against p99 batch latency, as PNG bytes.

One series per model and machine (:class:`~scoring.sweep.Sweep`): every operating point, each
labelled with its setting, the Pareto front as a dashed step line through ringed points, and the
energy-optimal point as a star. Both axes are logarithmic: a sweep's batch sizes spread its
points over decades. Drawn with :mod:`scoring.charts`' front chart helpers, like its accuracy
chart.
"""

from __future__ import annotations

from collections.abc import Sequence

from scoring.charts import draw_front_series, finish_front_chart, front_axes, plain_text
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
    fig, ax = front_axes()
    for k, (s, points) in enumerate(drawn):
        xyl = [(p.uwh_per_inference, p.latency_p99_s * 1e3, _label(p)) for p in points]
        front = [(p.uwh_per_inference, p.latency_p99_s * 1e3) for p in s.front]
        name = f"{plain_text(s.model)} on {plain_text(s.host)}"
        colour = draw_front_series(ax, k, xyl, front, name)
        if s.best is not None and s.best.latency_p99_s:
            ax.scatter([s.best.uwh_per_inference], [s.best.latency_p99_s * 1e3], s=260,
                       marker="*", color=colour, edgecolors="black", zorder=5)  # fmt: skip
    ax.scatter([], [], s=200, marker="*", color="#aaaaaa", edgecolors="black",
               label="energy-optimal point")  # fmt: skip
    return finish_front_chart(
        fig,
        ax,
        "p99 batch latency (ms, log scale)",
        "Sweeps: energy per inference against p99 latency (ringed, dashed: the front)",
        log_y=True,
    )
