"""Inference slowdown from the agent: images/s of one model with and without sampling.

A/B, interleaved in one process: the same compiled model runs the same synthetic batches with
the agent off and on (a thread sampling a fixture RAPL tree of five domains, the system sources
and the CPU model at 0.1 s into a SQLite store, as ``make bench`` runs it), ``--pairs`` times,
alternating which arm goes first. Reports the median images/s of each arm and the median of the
per-pair slowdowns. Prints one JSON document.

    python perf/inference_slowdown.py --model mobilenetv3_small --pairs 7 --batches 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmark.datasets import open_dataset
from benchmark.models import build_model
from benchmark.registry import get_spec
from exporters.agent import Agent
from exporters.config import load_config
from exporters.sources import build_sources
from exporters.stores.sqlite import SQLiteStore

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/rapl/intel_desktop"


def images_per_s(model, batches) -> float:
    start = time.perf_counter()
    n = 0
    for x in batches:
        n += len(model.predict_on_batch(x))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv3_small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()

    spec = get_spec(args.model)
    model, _ = build_model(spec, "random")
    ds = open_dataset("synthetic", spec, args.batch_size * args.batches)
    batches = [x for x, _ in ds.batches(args.batch_size)]
    images_per_s(model, batches[:3])  # trace and warm up

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(FIXTURE, Path(tmp) / "sys")
        cfg = load_config(overrides={"sysfs_root": str(Path(tmp) / "sys")})
        cfg["interval_s"]["power"] = args.interval
        cfg["sources"]["nvml"]["enabled"] = False
        cfg["sources"]["cpu_model"]["enabled"] = True
        store = SQLiteStore(Path(tmp) / "ab.db")
        off, on = [], []

        def with_agent() -> float:
            agent = Agent(sources, store, "ab", cfg["interval_s"])
            thread = threading.Thread(target=agent.run)
            thread.start()
            time.sleep(0.3)
            rate = images_per_s(model, batches)
            agent.stop()
            thread.join()
            return rate

        sources, _, _ = build_sources(cfg)
        for pair in range(args.pairs):  # alternate which arm goes first, against drift
            if pair % 2:
                on.append(with_agent())
                off.append(images_per_s(model, batches))
            else:
                off.append(images_per_s(model, batches))
                on.append(with_agent())
        store.close()
    slowdowns = [100 * (a - b) / a for a, b in zip(off, on)]
    json.dump(
        {
            "inference_slowdown": {
                "model": args.model,
                "batch_size": args.batch_size,
                "images_per_arm": args.batch_size * args.batches,
                "pairs": args.pairs,
                "interval_s": args.interval,
                "sources": [s.name for s in sources],
                "images_per_s_without_agent": statistics.median(off),
                "images_per_s_with_agent": statistics.median(on),
                "slowdown_pct_median": statistics.median(slowdowns),
                "slowdown_pct_per_pair": slowdowns,
            }
        },
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
