"""Runs with known energy, written into a store as the agent and the benchmark would.

:func:`add_run` writes a whole run (package samples and events); :func:`add_events` only the
run's events, :func:`add_power` an energy series of given watts (with the counter the agent would
derive from them), :func:`add_samples` any other series (``gpu``, ``cpu``), so that a test can
build a window sample by sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporters.schema import FieldValue, Point, energy_tags
from exporters.stores.base import Store

S = 1_000_000_000


def add_run(
    store: Store,
    run_id: str,
    model: str,
    host: str,
    start_s: float,
    seconds: float,
    joules: float,
    inferences: int = 1000,
    top1: float = 0.75,
    params: float | None = 5e6,
    macs: float | None = 3e8,
    idle_watts: float | None = None,
    covered: float = 1.0,
    fail: str | None = None,
    interval_s: float = 0.5,
) -> None:
    """A run of ``seconds`` drawing ``joules`` at constant power on ``host``'s package-0.

    Samples start 2 s before the window and end 2 s after it, unless ``covered`` < 1, when
    they stop at that fraction of the window. A ``fail`` reason writes a fail event, no end.
    """
    watts = joules / seconds
    t0, t1 = start_s, start_s + seconds
    last = t0 + covered * seconds if covered < 1 else t1 + 2
    tags = {**energy_tags("rapl", "package-0"), "host": host}
    points, t, k = [], t0 - 2, 0
    while t <= last + 1e-9:
        points.append(Point("energy", tags, {"joules_total": watts * (t - t0 + 2), "watts": watts},
                            round(t * S)))  # fmt: skip
        k += 1
        t = t0 - 2 + k * interval_s
    store.write(points)
    add_events(store, run_id, model, host, start_s, seconds, inferences, top1, params, macs,
               idle_watts, fail)  # fmt: skip


def add_events(
    store: Store,
    run_id: str,
    model: str,
    host: str,
    start_s: float,
    seconds: float,
    inferences: int = 1000,
    top1: float = 0.75,
    params: float | None = 5e6,
    macs: float | None = 3e8,
    idle_watts: float | None = None,
    fail: str | None = None,
) -> None:
    """The run's ``start`` event and its ``end`` (or, with a ``fail`` reason, ``fail``)."""
    t0, t1 = start_s, start_s + seconds
    run_tags = {"run_id": run_id, "model": model, "backend": "tensorflow",
                "dataset": "synthetic", "host": host}  # fmt: skip
    points = [Point("run", run_tags, {"event": "start"}, round(t0 * S))]
    if fail:
        points.append(Point("run", run_tags, {"event": "fail", "reason": fail}, round(t1 * S)))
    else:
        end = {"event": "end", "inferences": inferences, "top1": top1, "top5": min(1, top1 + .15),
               "accuracy_source": "measured", "batch_size": 32, "weights": "imagenet",
               "duration_s": seconds}  # fmt: skip
        end.update({k: v for k, v in (("params", params), ("macs", macs),
                                       ("idle_watts", idle_watts)) if v is not None})  # fmt: skip
        points.append(Point("run", run_tags, end, round(t1 * S)))
    store.write(points)
    store.flush()


def add_power(
    store: Store,
    host: str,
    source: str,
    domain: str,
    times_s: Sequence[float],
    watts: Sequence[float],
    counter: bool = True,
) -> None:
    """An ``energy`` series: ``watts`` at ``times_s`` and, with ``counter``, ``joules_total``
    integrating them by the trapezoid rule (power and counter then agree exactly)."""
    tags = {**energy_tags(source, domain), "host": host}
    points, total = [], 0.0
    for i, (t, w) in enumerate(zip(times_s, watts)):
        if i:
            total += (watts[i - 1] + w) / 2 * (t - times_s[i - 1])
        fields: dict[str, FieldValue] = {"watts": float(w)}
        if counter:
            fields["joules_total"] = total
        points.append(Point("energy", tags, fields, round(t * S)))
    store.write(points)
    store.flush()


def add_samples(
    store: Store,
    measurement: str,
    tags: dict[str, str],
    times_s: Sequence[float],
    **columns: Sequence[FieldValue | None],
) -> None:
    """One series of ``measurement``: at each of ``times_s`` the fields of ``columns`` (each a
    sequence as long as ``times_s``; a None leaves that field out of that point)."""
    points = []
    for i, t in enumerate(times_s):
        fields = {k: v[i] for k, v in columns.items() if v[i] is not None}
        points.append(Point(measurement, tags, fields, round(t * S)))
    store.write(points)
    store.flush()
