"""How long ``Monitor.end_window`` takes with its edges read (target: 5 ms at the 95th percentile).

On a RAPL fixture tree (``energy_uj`` files, read as sysfs is), short windows are measured with
:class:`benchmark.Monitor`: sampling the host itself at a fine and a coarse cadence (0.01 and
2 s: ``end_window`` reads the sources and subtracts, whatever the cadence), then beside a running
exporter (``python -m exporters run --metrics-port``), asked over ``POST /sample``. The counters
stand still, so each edge read waits the full RAPL update timeout (1.2 ms; hardware updates
within 1 ms): the figures are upper bounds. A fixture writer rewriting them every millisecond
(tests/rapl_writer.py) would only add a busy process to compete with. The windows' error at
every cadence is perf/cadence_error.py's. Prints one JSON document, with the load average
around it: latencies on a busy machine are upper bounds, set by the scheduler more than by the
code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from influxd import _free_port  # noqa: E402
from rapl_writer import make_tree  # noqa: E402

CADENCES = (0.01, 2.0)
WINDOW_S = 0.01


def _latencies(monitor, count: int) -> dict[str, float]:
    """``end_window`` of ``count`` windows of :data:`WINDOW_S`: quantiles in milliseconds."""
    taken = []
    for _ in range(count):
        monitor.begin_window("w")
        time.sleep(WINDOW_S)
        t0 = time.perf_counter()
        result = monitor.end_window("w")
        taken.append((time.perf_counter() - t0) * 1e3)
        assert result.readings[1] is not None, "the window's end was not read"
    taken.sort()
    return {
        "p50": statistics.median(taken),
        "p95": taken[min(len(taken) - 1, round(0.95 * (len(taken) - 1)))],
        "max": taken[-1],
        "n": len(taken),
    }


def through_exporter(root: Path, count: int) -> dict[str, float]:
    """A Monitor beside a running exporter (0.1 s), asking it over ``POST /sample``."""
    import benchmark

    port, url = _free_port(), f"sqlite:///{root}/exporter.db"
    exporter = subprocess.Popen(
        [sys.executable, "-m", "exporters", "run", "--store", url, "--interval", "0.1",
         "--metrics-port", str(port)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.environ["TUBAI_EXPORTER_URL"] = f"http://127.0.0.1:{port}"
    try:
        time.sleep(5.0)  # started and sampling
        with benchmark.Monitor(url) as monitor:
            assert monitor.sampler.external, "the exporter did not start"
            return _latencies(monitor, count)
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)


def measure(root: Path, count: int) -> dict:
    """Every path's ``end_window`` latencies, on the fixture tree under ``root``."""
    import benchmark

    make_tree(root / "sys", {"package-0": 262_143.0, "dram-0": 65_712.0})
    os.environ.update(TUBAI_SYSFS_ROOT=str(root / "sys"), TUBAI_SOURCES__NVML__ENABLED="false",
                      TUBAI_HOST="perf-host")  # fmt: skip
    out = {}
    for cadence in CADENCES:
        os.environ["TUBAI_INTERVAL_S__POWER"] = str(cadence)
        with benchmark.Monitor(f"sqlite:///{root}/edges-{cadence}.db") as monitor:
            out[f"in_process_{cadence:g}s"] = _latencies(monitor, count)
    out["exporter_0.1s"] = through_exporter(root, count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200, help="windows per path")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        figures = {"end_window_ms": measure(Path(tmp), args.windows)}
    figures["loadavg"] = {"before": load_before, "after": os.getloadavg()}
    json.dump(figures, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
