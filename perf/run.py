"""``make perf``: every performance figure of the README, measured here, into perf/results.json.

1. Agent overhead: CPU share of one core at 1 s, 0.1 s and 0.01 s, into SQLite and InfluxDB.
2. Inference slowdown: images/s with and without the agent at 0.1 s, A/B interleaved.
3. Store ingest: points per second into SQLite and InfluxDB.
4. Scoring latency: a 1-minute and a 1-hour window, 10 domains at 0.1 s, from both stores.
5. Window-energy error against ground truth, counter method against power integration.

Each figure is a median of ``--repeats`` runs. InfluxDB is a real ``influxd`` on a free port.
Prints a table with the targets and writes everything to ``perf/results.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import agent_overhead  # noqa: E402
from influxd import InfluxD, find_influxd  # noqa: E402


def _script(name: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / name), *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def overhead(repeats: int, seconds: float) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"sqlite": None}
        server = None
        binary = find_influxd()
        if binary:
            (Path(tmp) / "influxd").mkdir()
            server = InfluxD(Path(tmp) / "influxd", binary)
            server.start()
        try:
            for interval in (1.0, 0.1, 0.01):
                for kind in ("sqlite", "influxdb") if server else ("sqlite",):
                    runs = []
                    for r in range(repeats):
                        url = server.url(f"perf_{kind}_{interval}_{r}".replace(".", "_")) if (
                            kind == "influxdb") else stores["sqlite"]  # fmt: skip
                        runs.append(agent_overhead.measure(interval, seconds, url))
                    rows.append({
                        "store": kind, "interval_s": interval,
                        "core_pct": statistics.median(r["core_pct"] for r in runs),
                        "runs": runs,
                    })  # fmt: skip
        finally:
            if server:
                server.stop()
    return rows


def table(results: dict) -> str:
    lines = ["figure                                          measured        target"]

    def add(name: str, value: str, target: str = "") -> None:
        lines.append(f"{name:47} {value:>15} {target:>13}")

    for row in results["agent_overhead"]:
        target = "< 0.5%" if row["interval_s"] == 0.1 else ""
        add(f"agent CPU, {row['interval_s']} s, {row['store']}", f"{row['core_pct']:.2f}% core",
            target)  # fmt: skip
    slow = results["inference_slowdown"]["inference_slowdown"]
    add(f"inference slowdown ({slow['model']}, 0.1 s)", f"{slow['slowdown_pct_median']:.2f}%",
        "< 1%")  # fmt: skip
    for kind, figures in results["stores"]["stores"].items():
        if "skipped" in figures:
            add(f"{kind}", "skipped")
            continue
        target = {"sqlite": "> 100,000/s", "influxdb": "> 50,000/s"}[kind]
        add(f"ingest, {kind}", f"{figures['ingest_points_per_s']:,.0f}/s", target)
        add(f"1-minute window, {kind}", f"{figures['window_1min_s']:.3f} s")
        add(f"1-hour window (10 domains, 0.1 s), {kind}", f"{figures['window_1h_s']:.3f} s",
            "< 1 s")  # fmt: skip
    for row in results["window_error"]["window_error"]:
        target = "< 0.1%" if row["method"] == "counter" else ""
        add(f"error {row['profile']}, {row['interval_s']} s, {row['method']}",
            f"{row['median_error_pct']:.4f}% ({row['max_error_pct']:.3f})", target)  # fmt: skip
    lines.append("window error: median over 200 random windows (max in brackets)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="agent overhead run length")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args()
    started = time.time()
    results = {
        "agent_overhead": overhead(args.repeats, args.seconds),
        "inference_slowdown": _script(
            "inference_slowdown.py", "--pairs", str(2 * args.repeats + 1)
        ),
        "stores": _script("stores.py", "--repeats", str(args.repeats)),
        "window_error": _script("window_error.py"),
    }
    results["seconds"] = time.time() - started
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\n{results['seconds']:.0f} s; everything in {args.out}")


if __name__ == "__main__":
    main()
