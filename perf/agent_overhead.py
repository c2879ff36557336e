"""Agent overhead: CPU seconds per second of the sampling agent, steady state.

Runs ``python -m exporters run`` against a fixture RAPL tree (the Intel desktop: five domains)
plus the system sources, into the SQLite store, for each interval given, and reads the agent's
own ``cpu_seconds_total`` from its health points: the slope between the first point after the
warm-up and the last one excludes interpreter start-up. Prints one JSON document.

    python perf/agent_overhead.py --intervals 1 0.1 0.01 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from exporters.stores import open_store

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "rapl" / "intel_desktop"


def measure(
    interval_s: float, seconds: float, store_url: str | None = None, warmup_s: float = 3.0
) -> dict:
    """CPU share of the agent at ``interval_s`` into ``store_url`` (default: a fresh SQLite)."""
    with tempfile.TemporaryDirectory() as tmp:
        sysfs = Path(tmp) / "sys"
        shutil.copytree(FIXTURE, sysfs)
        url = store_url or f"sqlite:///{tmp}/perf.db"
        subprocess.run(
            [sys.executable, "-m", "exporters", "run", "--sysfs-root", str(sysfs),
             "--store", url, "--interval", str(interval_s), "--host", "perf-agent",
             "--duration", str(seconds + warmup_s)],
            check=True, capture_output=True,
            env={**os.environ, "TUBAI_SOURCES__NVML__ENABLED": "false",
                 "TUBAI_SPOOL_DIR": f"{tmp}/spool"},
        )  # fmt: skip
        with open_store(url) as store:
            own = store.read("agent", 0, 2**62, tags={"collector": "agent", "host": "perf-agent"})
            samples = len(store.read("energy", 0, 2**62, tags={"host": "perf-agent"}))
    first = next(p for p in own if p.time_ns >= own[0].time_ns + warmup_s * 1e9)
    last = own[-1]
    elapsed = (last.time_ns - first.time_ns) / 1e9
    cpu = last.fields["cpu_seconds_total"] - first.fields["cpu_seconds_total"]
    return {
        "store": url.partition(":")[0],
        "interval_s": interval_s,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "core_pct": 100 * cpu / elapsed,
        "energy_samples_per_s": samples / (seconds + warmup_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.1, 0.01])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    results = [measure(i, args.seconds) for i in args.intervals]
    json.dump({"agent_overhead": results}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
