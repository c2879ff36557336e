"""Window-energy error at every cadence on a kernel-like RAPL tree: edges read, and interpolated.

The machine is a RAPL fixture tree as the kernel shows one (tests/rapl_writer.py, with a desktop
package's constraint files): one package whose ``energy_uj`` wraps at 100 J (every 1.1 to 3.3 s)
while its power steps between 30 and 90 W every second, rewritten about every millisecond by a
forked writer that logs every value, the instant it stands for and the instant it showed.

At each agent cadence (0.01, 0.1, 1 and 2 s; one worker process each, run side by side) windows
of 10 ms to 30 s are measured one after the other, at random phases (across the power steps and
the wraps), with :class:`benchmark.Monitor` (its own agent at that cadence: edges read,
``Monitor.end_window``). No window holds another's edge, so each has only the periodic samples
in between, as it would alone. The same windows, at the same instants, are also computed from
the samples of an exporter (``python -m exporters run``) at the same cadence that reads no edges
(:func:`exporters.window.window_energy`, what ``end_window`` falls back to where edges cannot be
read: interpolated).

The truth of a window is the writer's log: what the counter file held at the window's edge
instants (the edge readings' stamps; for interpolated windows, the instants they were marked).
A counter update that fell inside an edge read (its span, which the reading reports) may have
been read or not: such windows are counted (``update_in_read``), and ``read_worst_beyond_pct``
is the worst error once the file's change during the two reads is allowed for (what
tests/test_edges.py allows). Errors against the power profile itself (which the file lags by up
to one update, as a real RAPL counter does, about a millisecond) are in the JSON too. Prints one
JSON document, with the load average around it: figures on a busy machine are upper bounds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from edge_truth import SLACK_NS, clock_shift  # noqa: E402
from rapl_writer import ProfileWriter, Writes, make_tree, steps  # noqa: E402

from exporters import clock  # noqa: E402
from exporters.schema import AGENT, ENERGY  # noqa: E402
from exporters.stores import open_store  # noqa: E402
from exporters.window import window_energy  # noqa: E402

DOMAIN = "package-0"
WRAP_J = 100.0
STEP_S = 1.0
PACKAGE = steps([30.0, 90.0], period_s=STEP_S)
# An Intel desktop package's limits (PL1 65 W over 28 s, PL2 90 W over 2.44 ms): tubai's
# ceiling is HEADROOM (2) x 90 W, under which 100 J can wrap once in 0.55 s at most.
CONSTRAINTS = {
    "constraint_0_name": "long_term", "constraint_0_power_limit_uw": 65_000_000,
    "constraint_0_max_power_uw": 65_000_000, "constraint_0_time_window_us": 27_983_872,
    "constraint_1_name": "short_term", "constraint_1_power_limit_uw": 90_000_000,
    "constraint_1_max_power_uw": 0, "constraint_1_time_window_us": 2_440,
}  # fmt: skip
CADENCES = (0.01, 0.1, 1.0, 2.0)
PLAN = {0.01: 20, 0.05: 20, 0.1: 10, 1.0: 8, 5.0: 4, 30.0: 2}  # length (s): windows a cadence
GAP_S = (0.05, 0.35)  # between one window's end and the next one's start: random phases
TARGETS = {0.01: 5.0, 0.05: 1.0, 0.1: 0.1}  # from this length (s) up: worst error, %
EDGES, INTERPOLATED = "read", "interpolated"
ENV = {"TUBAI_SOURCES__NVML__ENABLED": "false", "TUBAI_SOURCES__SYSTEM__ENABLED": "false"}


def target_pct(length_s: float) -> float:
    """The issue's bound on the worst error of a window ``length_s`` long, in percent."""
    return min(pct for shortest, pct in TARGETS.items() if length_s >= shortest)


class KernelWriter(ProfileWriter):
    """The fixture writer as the hardware runs: on time, whatever else the machine does.

    A writer held up by other processes shows the energy of the time it waited in one update,
    a jump no RAPL counter makes (which tubai's ceiling rightly takes for a bad reading). So it
    runs at a real-time priority where allowed (root); it sleeps a millisecond between updates.
    """

    def run(self) -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except (OSError, AttributeError):
            pass  # not root, or not Linux: as other processes let it
        super().run()


def kernel_tree(root: Path) -> dict[str, Path]:
    """The one-package powercap tree under ``root``, constraints and all; its zones."""
    zones = make_tree(root, {DOMAIN: WRAP_J})
    for name, value in CONSTRAINTS.items():
        (zones[DOMAIN] / name).write_text(f"{value}\n")
    return zones


def plan(seed: int) -> list[tuple[float, float]]:
    """Every window of :data:`PLAN` in a random order: (gap before it, its length), s."""
    rng = random.Random(seed)
    lengths = [length for length, count in PLAN.items() for _ in range(count)]
    rng.shuffle(lengths)
    return [(rng.uniform(*GAP_S), length) for length in lengths]


# ---- one cadence, in a worker process of its own ------------------------------------------


def _exporter(tree: Path, cadence: float, url: str) -> subprocess.Popen:
    """``python -m exporters run`` at ``cadence`` into ``url``, once it has stored a sample."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporters", "run", "--store", url, "--interval", str(cadence),
         "--host", INTERPOLATED, "--sysfs-root", str(tree / "sys")],
        env={**os.environ, **ENV}, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        store = open_store(url)
        try:
            if store.read(ENERGY, 0, 2**62, tags={"host": INTERPOLATED}):
                return proc
        finally:
            store.close()
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the exporter stored no sample within 30 s")


def worker(root: Path, tree: Path, cadence: float, seed: int, writer_offset: int) -> dict:
    """Every window of :func:`plan` at ``cadence``, with edges read and interpolated; their
    instants in the writer's time (its clock less the monotonic clock is ``writer_offset``)."""
    os.environ.update(ENV, TUBAI_SYSFS_ROOT=str(tree / "sys"), TUBAI_INTERVAL_S__POWER=str(cadence))
    import benchmark  # here: the table (perf/run.py) needs none of it

    shift = clock_shift(SimpleNamespace(now_ns=lambda: writer_offset + time.monotonic_ns()))
    urls = {m: f"sqlite:///{root}/{m}-{cadence:g}.db" for m in (EDGES, INTERPOLATED)}
    exporter = _exporter(tree, cadence, urls[INTERPOLATED])
    windows = []
    try:
        with benchmark.Monitor(urls[EDGES], EDGES) as monitor:
            for gap, length in plan(seed):
                time.sleep(gap)
                monitor.begin_window("w")
                began = clock.wall_ns()
                time.sleep(max(0.0, length - (clock.wall_ns() - began) / 1e9))
                ended = clock.wall_ns()
                windows.append((length, monitor.end_window("w"), (began, ended)))
            time.sleep(2 * cadence + 0.5)  # the exporter's first sample past the last window
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    store = open_store(urls[INTERPOLATED])
    out = []
    for length, result, marks in windows:
        start, end = result.readings
        interpolated = window_energy(store, *marks, host=INTERPOLATED)
        out.append({
            "length_s": length, "edges": result.edges, "joules": result.total_joules,
            "reads": [[r.time_ns - shift, r.read_ns] for r in (start, end)],
            "marks": [t - shift for t in marks], "interpolated_joules": interpolated.total_joules,
        })  # fmt: skip
    store.close()
    return {"windows": out, "agents": {m: _agent(url, m) for m, url in urls.items()}}


def _agent(url: str, host: str) -> dict:
    """How the agent that filled ``url`` sampled (median and largest spacing of its periodic
    samples, s) and what its counters judged (wraps, glitches, resets, from its health)."""
    store = open_store(url)
    try:
        periodic = [p.time_ns for p in store.read(ENERGY, 0, 2**62, tags={"host": host})
                    if "watts" in p.fields]  # fmt: skip
        health = store.read(AGENT, 0, 2**62, tags={"host": host, "collector": "agent"})
    finally:
        store.close()
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(sorted(periodic))] or [0.0]
    last = health[-1].fields if health else {}
    return {
        "sample_interval_s": {"median": statistics.median(gaps), "max": max(gaps)},
        **{k: last.get(f"counter_{k}_total") for k in ("wraps", "glitches", "resets")},
    }


# ---- the truth, from the writer's log ------------------------------------------------------


def value_at(log: Writes, t_ns: int) -> int:
    """The counter (µJ, unwrapped) the file surely held at writer instant ``t_ns``: the last
    value shown by then."""
    return log.total_uj[log.visible(t_ns, t_ns)[0]]


def judged(window: dict, log: Writes, writer: ProfileWriter) -> dict:
    """One window's errors (%) against the file and the profile, both methods, relative to its
    real energy (never 0: the file may not change in 10 ms), and what it crossed."""
    edges = [t for t, _ in window["reads"]]
    spans = [log.visible(t - h, t + h) for t, read_ns in window["reads"]
             for h in [read_ns // 2 + SLACK_NS]]  # fmt: skip
    during_j = sum(log.total_uj[b] - log.total_uj[a] for a, b in spans) / 1e6
    out = {
        "edges": window["edges"],
        "update_in_read": during_j > 0,
        "read_ms": max(n for _, n in window["reads"]) / 1e6,
    }
    for method, measured, (a, b) in (
        (EDGES, window["joules"], edges),
        (INTERPOLATED, window["interpolated_joules"], window["marks"]),
    ):
        real = writer.true_joules(DOMAIN, a, b)
        error = abs(measured - (value_at(log, b) - value_at(log, a)) / 1e6)
        out[method] = 100 * error / real
        out[f"{method}_vs_profile"] = 100 * abs(measured - real) / real
        if method == EDGES:
            out["read_beyond"] = 100 * max(0.0, error - during_j) / real
    wraps = [value_at(log, t) // int(WRAP_J * 1e6) for t in edges]
    phases = [int((t - writer.start_ns) // (STEP_S * 1e9)) for t in edges]
    return {**out, "wraps": wraps[1] - wraps[0], "steps": phases[1] - phases[0]}


def summary(cadence: float, length: float, windows: list[dict]) -> dict:
    """One row of the table: median and worst error of each method, and the windows behind it."""
    row: dict = {"interval_s": cadence, "length_s": length, "windows": len(windows)}
    for key in (EDGES, "read_beyond", f"{EDGES}_vs_profile", INTERPOLATED,
                f"{INTERPOLATED}_vs_profile"):  # fmt: skip
        errors = [w[key] for w in windows]
        row[f"{key}_median_pct"] = statistics.median(errors)
        row[f"{key}_worst_pct"] = max(errors)
    return {
        **row,
        "edges_read": sum(w["edges"] == EDGES for w in windows),
        "update_in_read": sum(w["update_in_read"] for w in windows),
        "edge_read_ms_max": max(w["read_ms"] for w in windows),
        "crossing_wraps": sum(w["wraps"] > 0 for w in windows),
        "crossing_steps": sum(w["steps"] > 0 for w in windows),
        "target_worst_pct": target_pct(length),
    }


def _spawn(cadence: float, root: Path, tree: Path, seed: int, offset: int) -> subprocess.Popen:
    """The worker of one cadence (this script with ``--worker``), its JSON on a pipe."""
    args = ["--worker", cadence, "--root", root, "--tree", tree, "--seed", seed,
            "--writer-offset", offset]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, args)], stdout=subprocess.PIPE, text=True
    )


def _pct(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def table_lines(figures: dict) -> list[str]:
    """The error table, one block per method: a row per window length, a column per cadence,
    each cell median / worst %, ``*`` where the worst misses the target."""
    rows = {(r["interval_s"], r["length_s"]): r for r in figures["rows"]}
    cadences = sorted({c for c, _ in rows})
    lines = []
    for method in (EDGES, INTERPOLATED):
        lines.append(f"window error, edges {method}: median / worst % (kernel-like RAPL tree)")
        lines.append(f"{'length':>8} {'target':>8}" + "".join(f"{c:>14g} s" for c in cadences))
        for length in sorted({n for _, n in rows}):
            cells = []
            for c in cadences:
                r = rows[(c, length)]
                worst = r[f"{method}_worst_pct"]
                miss = "*" if worst > r["target_worst_pct"] else " "
                cells.append(f"{_pct(r[f'{method}_median_pct'])}/{_pct(worst)}{miss}")
            target = f"<= {target_pct(length):g}%"
            name = f"{length * 1000:g} ms" if length < 1 else f"{length:g} s"
            lines.append(f"{name:>8} {target:>8}" + "".join(f"{x:>16}" for x in cells))
    beyond = {}
    for r in figures["rows"]:
        beyond[r["interval_s"]] = max(beyond.get(r["interval_s"], 0.0), r["read_beyond_worst_pct"])
    spans, load = figures["edge_read_ms"], figures["load_average"]
    return [
        *lines,
        f"* worst above the target. {sum(r['windows'] for r in figures['rows'])} windows in "
        f"{figures['seconds']:.0f} s, load average {load['before'][0]:.1f} before and "
        f"{load['after'][0]:.1f} after; a counter update inside an edge read in "
        f"{sum(r['update_in_read'] for r in figures['rows'])} (reads took {spans['median']:.2f} "
        f"ms, at most {spans['max']:.1f}); worst edges-read error beyond the counter's change "
        "during the reads: " + ", ".join(f"{_pct(v)}% at {c:g} s" for c, v in beyond.items()),
    ]


def run(root: Path, tree: Path, seed: int, cadences: tuple[float, ...] = CADENCES) -> dict:
    """Every cadence in a worker of its own, side by side, one writer for all: the rows. The
    tree is under ``tree`` (memory, as sysfs is, where there is a tmpfs), the stores ``root``."""
    writer = KernelWriter(kernel_tree(tree / "sys"), {DOMAIN: WRAP_J}, lambda d, t: PACKAGE(t))
    writer.start()
    offset = max(writer.now_ns() - time.monotonic_ns() for _ in range(20))  # as clock_shift
    try:
        workers = {c: _spawn(c, root, tree, seed + i, offset) for i, c in enumerate(cadences)}
        outputs = {c: p.communicate()[0] for c, p in workers.items()}
        if failed := [c for c, p in workers.items() if p.returncode]:
            raise RuntimeError(f"the workers at {failed} s failed")
        done = {c: json.loads(out) for c, out in outputs.items()}
        time.sleep(0.1)  # the writer logs each value after showing it
    finally:
        writer.stop()
    log = writer.writes(DOMAIN)
    rows = []
    for cadence, figures in done.items():
        by_length: dict[float, list[dict]] = {}
        for window in figures["windows"]:
            by_length.setdefault(window["length_s"], []).append(judged(window, log, writer))
        rows += [summary(cadence, length, js) for length, js in sorted(by_length.items())]
    updates = [(b - a) / 1e6 for a, b in itertools.pairwise(log.shown_ns[1:])]
    spans = [n / 1e6 for f in done.values() for w in f["windows"] for _, n in w["reads"]]
    return {
        "edge_read_ms": {"median": statistics.median(spans), "max": max(spans)},
        "rows": rows,
        "agents": {f"{c:g}": figures["agents"] for c, figures in done.items()},
        "counter_update_ms": {"median": statistics.median(updates), "max": max(updates)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--cadences", type=float, nargs="+", default=CADENCES)
    parser.add_argument("--worker", type=float, help=argparse.SUPPRESS)  # a cadence: one worker
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--writer-offset", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        figures = worker(args.root, args.tree, args.worker, args.seed, args.writer_offset)
        json.dump(figures, sys.stdout)
        return
    load_before, started = os.getloadavg(), time.monotonic()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=shm) as tree:
        figures = run(Path(tmp), Path(tree), args.seed, tuple(args.cadences))
    figures.update(
        seconds=time.monotonic() - started,
        load_average={"before": load_before, "after": os.getloadavg()},
        cpus=os.cpu_count(),
    )
    json.dump({"cadence_error": figures}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
