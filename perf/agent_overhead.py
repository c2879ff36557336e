"""Agent overhead: the sampling agent's CPU as a share of one core, at each cadence.

Runs ``python -m exporters run`` against a fixture RAPL tree (the Intel desktop: five domains)
plus the system source, into a store (a fresh SQLite file unless a URL is given), with the power
source at the cadence given and the system source at the same cadence but never more often than
its default, once a second (so 0.01 s and 0.1 s keep it at 1 s; 2 s samples everything every
2 s). Each run gives:

- ``core_pct``, steady state: the agent's own CPU time (``cpu_seconds_total`` of its health
  points, ``time.process_time``: every thread of the process, user and system) between its
  first health point after its first flush (at least two system intervals in: the first
  write, which creates the series in the store, is done) and its last, ``seconds`` later, over
  the wall time between them. Interpreter start-up, source discovery, the first write and the
  final flush are left out.
- ``core_pct_with_startup``: the whole process's CPU time (user and system, from ``wait4``) over
  its whole wall time, spawn to exit; this depends on how long the run is (``wall_s``), so
- ``startup_cpu_s``: what start-up and shut-down cost once, that total less the steady rate over
  the same wall time. Over a run of T seconds the agent costs ``core_pct + 100 * startup / T``.
- ``power_ticks_missed``: of the RAPL samples the run should have taken (one a cadence, from
  the start to ``--duration``), how many it did not: a loaded machine can make the agent skip
  ticks, which would also make it look cheaper than it is.

Prints one JSON document.

    python perf/agent_overhead.py --intervals 2 1 0.1 0.01 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exporters.config import load_config
from exporters.stores import Store, open_store
from exporters.stores.influxdb import InfluxDBStore

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "rapl" / "intel_desktop"
SYSTEM_S = 1.0  # the system source's default interval: never sampled more often here
CADENCES = (0.01, 0.1, 1.0, 2.0)
HOST = "perf-agent"


def run_agent(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run the agent to its end: (wall seconds, CPU seconds of user and system) of the process."""
    with open(log, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "exporters", "run", *args], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the agent exited with {proc.returncode}:\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime


def _reader(url: str, spool_dir: Path) -> Store:
    """The store at ``url``, to read the run back (an InfluxDB store's spool kept in the run's
    temporary directory, never in ``data/spool``)."""
    if url.startswith("influxdb"):
        return InfluxDBStore.from_url(url, spool_dir=spool_dir)
    return open_store(url)


def steady_from(flush_s: float, system_s: float) -> int:
    """Which health point (0: the first, one system interval in) begins the steady state: the
    second, or the first after the agent's first flush, ``flush_s`` in, whichever is later (a
    health point taken at the flush's tick is made before it, so the next one)."""
    return max(1, math.floor(flush_s / system_s + 1e-9))


def measure(interval_s: float, seconds: float, store_url: str | None = None) -> dict:
    """One run at ``interval_s`` into ``store_url`` (default: a fresh SQLite): see the module."""
    system_s = max(interval_s, SYSTEM_S)  # also the period of the agent's health points
    # the agent flushes every flush_interval_s (configured), never more often than it samples
    flush_s = max(load_config()["flush_interval_s"], interval_s)
    skip = steady_from(flush_s, system_s)
    duration = (skip + 1) * system_s + seconds
    with tempfile.TemporaryDirectory() as tmp:
        sysfs = Path(tmp) / "sys"
        shutil.copytree(FIXTURE, sysfs)
        url = store_url or f"sqlite:///{tmp}/perf.db"
        env = {
            **os.environ,
            "TUBAI_SOURCES__NVML__ENABLED": "false",
            "TUBAI_INTERVAL_S__SYSTEM": str(system_s),
            "TUBAI_SPOOL_DIR": f"{tmp}/spool",
        }
        wall, cpu_total = run_agent(
            ["--sysfs-root", str(sysfs), "--store", url, "--interval", str(interval_s),
             "--host", HOST, "--duration", str(duration)],
            env, Path(tmp) / "agent.log")  # fmt: skip
        with _reader(url, Path(tmp) / "read-spool") as store:
            own = store.read("agent", 0, 2**62, tags={"collector": "agent", "host": HOST})
            first, last = own[skip], own[-1]  # the last: written as the agent stops
            package = store.read("energy", 0, 2**62, tags={"host": HOST, "domain": "package-0"})
    elapsed = (last.time_ns - first.time_ns) / 1e9
    cpu = last.fields["cpu_seconds_total"] - first.fields["cpu_seconds_total"]
    rate = cpu / elapsed
    return {
        "store": url.partition(":")[0],
        "interval_s": interval_s,
        "system_interval_s": system_s,
        "flush_interval_s": flush_s,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "core_pct": 100 * rate,
        "wall_s": wall,
        "cpu_seconds_with_startup": cpu_total,
        "core_pct_with_startup": 100 * cpu_total / wall,
        "startup_cpu_s": cpu_total - rate * wall,
        "power_ticks_missed": math.ceil(round(duration / interval_s, 6)) - len(package),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=list(CADENCES))
    parser.add_argument("--seconds", type=float, default=10.0, help="steady state per run")
    args = parser.parse_args()
    results = [measure(i, args.seconds) for i in args.intervals]
    json.dump({"agent_overhead": results}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
