"""Store ingest and scoring latency, for the embedded store and for InfluxDB.

Ingest: points per second through ``Store.write`` in agent-sized batches (SQLite: committed;
InfluxDB: spooled durably, then delivered until the server acknowledged all, timed to the end
of ``flush``). Scoring latency: :func:`window_energy` over a 1-minute and a 1-hour window of 10
energy domains sampled at 0.1 s (36,000 points a domain for the hour). InfluxDB is a real
``influxd`` (Debian's 1.x) started on a free port. Median of ``--repeats``. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from influxd import InfluxD, find_influxd

from exporters.schema import Point, energy_tags
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.sqlite import SQLiteStore
from exporters.window import window_energy

S = 1_000_000_000
T0 = 1_790_000_000 * S
DOMAINS = [f"package-{i}" for i in range(5)] + [f"dram-{i}" for i in range(5)]


def samples(seconds: float, interval_s: float = 0.1, host: str = "perf") -> list[Point]:
    """``seconds`` of 10 domains at ``interval_s``, time-ordered as the agent writes them."""
    points = []
    steps = int(seconds / interval_s) + 1
    for k in range(steps):
        t = T0 + round(k * interval_s * S)
        for i, domain in enumerate(DOMAINS):
            watts = 20.0 + i
            fields = {"joules_total": watts * k * interval_s, "watts": watts}
            points.append(Point("energy", {**energy_tags("rapl", domain), "host": host}, fields, t))
    return points


def ingest(store, points: list[Point], batch: int = 500) -> float:
    start = time.perf_counter()
    for i in range(0, len(points), batch):
        store.write(points[i : i + batch])
    store.flush()
    return len(points) / (time.perf_counter() - start)


def latency(store, seconds: float) -> float:
    start = time.perf_counter()
    result = window_energy(store, T0 + 5 * S, T0 + round((5 + seconds) * S), host="perf")
    elapsed = time.perf_counter() - start
    assert len(result.counted) == len(DOMAINS), "every domain must be found"
    return elapsed


def measure(make_store, repeats: int) -> dict:
    rates, minute, hour = [], [], []
    for r in range(repeats):
        with make_store(r) as store:
            rates.append(ingest(store, samples(120, host=f"ingest-{r}")))
    with make_store("latency") as store:
        ingest(store, samples(3_610))
        for _ in range(repeats):
            minute.append(latency(store, 60))
            hour.append(latency(store, 3_600))
    return {
        "ingest_points_per_s": statistics.median(rates),
        "window_1min_s": statistics.median(minute),
        "window_1h_s": statistics.median(hour),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out["sqlite"] = measure(lambda r: SQLiteStore(root / f"perf-{r}.db"), args.repeats)
        binary = find_influxd()
        if binary is None:
            out["influxdb"] = {"skipped": "influxd not found: apt-get install influxdb"}
        else:
            (root / "influxd").mkdir()
            server = InfluxD(root / "influxd", binary)
            server.start()
            try:
                out["influxdb"] = measure(
                    lambda r: InfluxDBStore.from_url(
                        server.url(f"perf_{r}"), spool_dir=root / f"spool-{r}"
                    ),
                    args.repeats,
                )
            finally:
                server.stop()
    json.dump({"stores": out}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
