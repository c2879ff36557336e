"""A lab simulated on this machine: many agents writing over TLS into one real InfluxDB, and
scoring with 10,000 runs in the store.

1. Lab: ``N`` agents (processes of :class:`exporters.agent.Agent`, each with a RAPL fixture
   tree of its own, four domains, and its own host tag and spool) sample at ``--interval`` for
   ``--seconds`` into one ``influxd`` serving HTTPS with a local CA's certificate and requiring
   credentials, each agent with a write-only user of its own (``tests/influxd.py``,
   ``start_influxd``). Measured: points offered (sampled) and accepted (counted on the server)
   per second, and each agent's spool: the most points waiting in it, its growth in points per
   second over the run (a least-squares slope; 0 while the server keeps up), its bytes on disk,
   and how long it took to drain once the agent stopped.
2. Ceiling: ``--writers`` processes write agent-sized batches as fast as they can over TLS
   (through the store's spool and sender): the points per second one server accepts here. A
   lower bound: clients and server share this machine's CPUs.
3. Scoring at scale: ``--runs`` runs (events and 0.5 s package samples, spread over 100 hosts
   and 20 models) written straight into SQLite and into the TLS InfluxDB; the wall time of
   ``python -m scoring runs`` and ``python -m scoring report``.

Prints JSON. ``perf/run.py`` (``make perf``) runs it; ``--agents 2 --seconds 3 --runs 50`` is
the smoke test's size (tests/test_lab_scale.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from influxd import InfluxD, start_influxd  # noqa: E402
from rapl_writer import make_tree  # noqa: E402

from exporters.schema import RUN, Point, energy_tags  # noqa: E402
from exporters.stores.influxdb import InfluxDBStore  # noqa: E402
from exporters.stores.sqlite import SQLiteStore  # noqa: E402
from scoring.events import RunEnd, RunStart, RunTags, event_point  # noqa: E402

S = 1_000_000_000
DOMAINS = {"package-0": 262_143.0, "package-1": 262_143.0, "dram-0": 65_535.0, "dram-1": 65_535.0}
FLUSH_S = 2.0  # the exporter's default flush_interval_s


def _agent(i: int, root: str, url: str, user: str, password: str, interval_s: float,
           seconds: float, out: multiprocessing.Queue) -> None:  # fmt: skip
    """One lab host: an agent on its own fixture tree, into its own spool; puts its figures."""
    import threading

    from exporters.agent import Agent
    from exporters.sources.rapl import RaplSource

    tree = Path(root) / f"host-{i:03d}"
    make_tree(tree / "sys", DOMAINS)
    store = InfluxDBStore.from_url(url, spool_dir=tree / "spool", username=user,
                                   password=password, create_database=False)  # fmt: skip
    agent = Agent([RaplSource(tree / "sys")], store, host=f"lab-{i:03d}",
                  intervals={"power": interval_s}, flush_interval_s=FLUSH_S)  # fmt: skip
    pending: list[tuple[float, int]] = []
    runner = threading.Thread(target=agent.run, args=(seconds,))
    start = time.monotonic()
    runner.start()
    while runner.is_alive():
        pending.append((time.monotonic() - start, store.pending()))
        runner.join(0.5)
    spool_bytes = sum(f.stat().st_size for f in (tree / "spool").rglob("*") if f.is_file())
    left = store.pending()  # what the agent's own final flush (at most 5 s) left
    stopped = time.monotonic()
    store.flush(timeout_s=300)  # then everything, for the server's count
    drain_s = time.monotonic() - stopped
    drained = store.pending() == 0
    store.close()
    out.put({"agent": i, "points": agent.points_total, "max_pending": max(p for _, p in pending),
             "growth_points_per_s": _slope(pending), "pending_at_stop": left, "drain_s": drain_s,
             "drained": drained, "spool_bytes": spool_bytes})  # fmt: skip


def _slope(xy: list[tuple[float, int]]) -> float:
    """Least-squares slope of ``y`` over ``x`` (0 for fewer than two points)."""
    if len(xy) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in xy)
    my = statistics.fmean(y for _, y in xy)
    var = sum((x - mx) ** 2 for x, _ in xy)
    return sum((x - mx) * (y - my) for x, y in xy) / var if var else 0.0


def _collect(procs: list, out: multiprocessing.Queue, timeout_s: float) -> list:
    """One result from each of ``procs``; RuntimeError as soon as one died without giving it."""
    import queue

    results, deadline = [], time.monotonic() + timeout_s
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=0.5))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{len(dead)} of the processes failed (or timed out)") from None
    for p in procs:
        p.join()
    return results


def _count(server: InfluxD, database: str) -> int:
    answer = server.query('SELECT count("joules_total") FROM "energy"', database)
    series = answer["results"][0].get("series") or [{"values": [[0, 0]]}]
    return int(series[0]["values"][0][1])


def lab(server: InfluxD, root: Path, agents: int, interval_s: float, seconds: float) -> dict:
    """``agents`` agents into one database of ``server``; their figures and the server's."""
    database = f"lab_{agents}"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = []
    for i in range(agents):
        user = f"{database}_host{i:03d}"
        password = server.add_writer(user, database)
        args = (i, str(root / database), server.url(database), user, password, interval_s,
                seconds, out)  # fmt: skip
        procs.append(ctx.Process(target=_agent, args=args))
    started = time.monotonic()
    for p in procs:
        p.start()
    figures = sorted(_collect(procs, out, seconds + 120), key=lambda f: f["agent"])
    wall_s = time.monotonic() - started
    accepted = _count(server, database)
    sampled = len(DOMAINS) * sum(1 for _ in range(agents)) * seconds / interval_s
    return {
        "agents": agents, "interval_s": interval_s, "seconds": seconds, "wall_s": wall_s,
        "offered_points_per_s": sampled / seconds,
        "accepted_energy_points": accepted,
        "accepted_points_per_s": accepted / seconds,
        "max_pending_points": max(f["max_pending"] for f in figures),
        "spool_growth_points_per_s": statistics.median(f["growth_points_per_s"] for f in figures),
        "spool_bytes_max": max(f["spool_bytes"] for f in figures),
        "pending_at_stop_max": max(f["pending_at_stop"] for f in figures),
        "drain_s_max": max(f["drain_s"] for f in figures),
        "all_drained": all(f["drained"] for f in figures),
        "per_agent": figures,
    }  # fmt: skip


def _blast(url: str, user: str, password: str, spool: str, seconds: float,
           out: multiprocessing.Queue) -> None:  # fmt: skip
    """Write 500-point batches for ``seconds``, then flush; puts the points written."""
    store = InfluxDBStore.from_url(url, spool_dir=spool, username=user, password=password,
                                   create_database=False)  # fmt: skip
    tags = {**energy_tags("rapl", "package-0"), "host": f"blast-{os.getpid()}"}
    t0, k, end = time.time_ns(), 0, time.monotonic() + seconds
    while time.monotonic() < end:
        store.write([Point("energy", tags, {"joules_total": float(k + j), "watts": 1.0},
                           t0 + (k + j) * 1000) for j in range(500)])  # fmt: skip
        k += 500
    store.flush(timeout_s=300)
    store.close()
    out.put(k)


def ceiling(server: InfluxD, root: Path, writers: int, seconds: float) -> dict:
    """The points per second ``writers`` processes get accepted by ``server``, end to end."""
    database = "ceiling"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = []
    for i in range(writers):
        password = server.add_writer(f"blast{i}", database)
        args = (server.url(database), f"blast{i}", password, str(root / f"blast{i}"), seconds, out)
        procs.append(ctx.Process(target=_blast, args=args))
    started = time.monotonic()
    for p in procs:
        p.start()
    written = sum(_collect(procs, out, seconds + 600))
    wall_s = time.monotonic() - started  # until every point was acknowledged
    accepted = _count(server, database)
    return {"writers": writers, "written": written, "accepted": accepted, "wall_s": wall_s,
            "accepted_points_per_s": accepted / wall_s}  # fmt: skip


def fill_runs(store, runs: int, hosts: int = 100, models: int = 20) -> int:
    """``runs`` finished runs of 10 s (events, and 0.5 s package samples from 2 s before to
    2 s after), round-robin over ``hosts`` and ``models``, each host's one after another."""
    points: list[Point] = []
    written = 0
    t0 = 1_790_000_000
    for r in range(runs):
        host, model = f"lab-{r % hosts:03d}", f"model-{r % models:02d}"
        start_s = t0 + (r // hosts) * 20.0
        tags = RunTags(f"run-{r:05d}", model, "tensorflow", "synthetic", host)
        watts = 20.0 + r % 7
        for k in range(29):
            t = start_s - 2 + k * 0.5
            points.append(Point("energy", {**energy_tags("rapl", "package-0"), "host": host},
                                {"joules_total": watts * (t - start_s + 2) + r, "watts": watts},
                                round(t * S)))  # fmt: skip
        points.append(event_point(tags, RunStart(repeat=1, repeats=1), round(start_s * S)))
        top1 = 0.5 + (r % models) / 100
        end = RunEnd(inferences=1000, top1=top1, batch_size=32, params=5e6, macs=3e8,
                     weights="imagenet", duration_s=10.0, accuracy_source="published")  # fmt: skip
        points.append(event_point(tags, end, round((start_s + 10) * S)))
        if len(points) >= 5000:
            store.write(points)
            written += len(points)
            points = []
    store.write(points)
    store.flush()
    return written + len(points)


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - started


def scoring_at_scale(url: str, root: Path, runs: int, env: dict[str, str]) -> dict:
    """Wall time of ``scoring runs`` and ``scoring report`` with ``runs`` runs in ``url``."""
    py = [sys.executable, "-m", "scoring"]
    return {
        "runs": runs,
        "scoring_runs_s": _timed([*py, "runs", "--store", url], env),
        "scoring_report_s": _timed([*py, "report", "--store", url, "--out", str(root)], env),
    }


def table_lines(results: dict, add: Callable[[str, str, str], None]) -> list[str]:
    """Rows of ``make perf``'s table (through ``add``) and the note on how they were taken."""
    for row in results["lab"]:
        offered = f"of {row['offered_points_per_s']:,.0f}/s"
        add(f"lab: {row['agents']} agents at {row['interval_s']} s, TLS",
            f"{row['accepted_points_per_s']:,.0f}/s", offered)  # fmt: skip
        add("  spool growth an agent (median)",
            f"{row['spool_growth_points_per_s']:.1f} pt/s", "~0")  # fmt: skip
        add("  most points waiting in a spool", f"{row['max_pending_points']:,}")
        add("  longest drain after the agents stopped", f"{row['drain_s_max']:.1f} s")
    top = results["ceiling"]
    add(
        f"one InfluxDB, {top['writers']} writers over TLS", f"{top['accepted_points_per_s']:,.0f}/s"
    )
    for kind, row in results["scoring"].items():
        add(f"scoring runs, {row['runs']:,} runs, {kind}", f"{row['scoring_runs_s']:.1f} s")
        add(f"scoring report, {row['runs']:,} runs, {kind}", f"{row['scoring_report_s']:.1f} s")
    load = results["load_average"]
    return [
        f"lab: agents, server and scoring on this machine's {results['cpus']} CPUs, load average "
        f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after: the ceiling is a lower "
        "bound of one server's (README, Performance: what it means for 100 and 1,000 hosts)"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1,10,50", help="agent counts, comma-separated")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = start_influxd(root / "influxd", tls=True, auth=True)
        try:
            labs = [lab(server, root, int(n), args.interval, args.seconds)
                    for n in args.agents.split(",")]  # fmt: skip
            top = ceiling(server, root, args.writers, args.seconds)
            env = {**os.environ, "TUBAI_INFLUXDB_USERNAME": server.admin[0],
                   "TUBAI_INFLUXDB_PASSWORD": server.admin[1]}  # fmt: skip
            scoring = {}
            for kind, url in (("sqlite", f"sqlite:///{root}/runs.db"),
                              ("influxdb", server.url("runs"))):  # fmt: skip
                store = (SQLiteStore(root / "runs.db") if kind == "sqlite" else
                         InfluxDBStore.from_url(url, spool_dir=root / "fill-spool",
                                                username=server.admin[0],
                                                password=server.admin[1]))  # fmt: skip
                with store:
                    written = fill_runs(store, args.runs)
                    assert len({p.tags["run_id"] for p in store.read(RUN, 0, 2**62)}) == args.runs
                timed = scoring_at_scale(url, root / f"report-{kind}", args.runs, env)
                scoring[kind] = {"points": written, **timed}
        finally:
            server.stop()
    load = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps({"lab": labs, "ceiling": top, "scoring": scoring, "cpus": os.cpu_count(),
                      "load_average": load}))  # fmt: skip


if __name__ == "__main__":
    main()
