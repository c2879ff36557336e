"""A store holding several machines' energy samples and runs with known energy, for the report.

Each host draws ``IDLE_W`` between runs and a run's watts during it, sampled every 0.1 s, with
every run window starting and ending on a sample: the counters then give each run's energy
exactly (``expected`` below). ``lab-a`` has a package and DRAM (both counted) and a core domain
(nested, never counted); ``lab-b`` a package; the hostile host only the CPU model estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.records import RunEnd, RunFail, RunStart, RunTags, write_event
from exporters.schema import Point, energy_tags
from exporters.stores.base import Store

T0_NS = 1_700_000_000 * 1_000_000_000
STEP_NS = 100_000_000  # 0.1 s
IDLE_W = 20.0
GAP_STEPS = 30  # 3 s idle between runs
DRAM_W = (3.0, 5.0)  # lab-a DRAM: idle, during a run
CORE_FRACTION = 0.7  # lab-a core-0: nested in the package, never counted

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
XSS_HOST = '"><svg onload=alert(1)>'
XSS_DATASET = "data <b>bold</b> & 'quoted'"
FAIL_REASON = "out of memory <OOM> & <img src=y onerror=alert(2)>"
HOSTILE = (XSS_SCRIPT, XSS_IMG, XSS_HOST, XSS_DATASET, FAIL_REASON)


@dataclass(frozen=True)
class Run:
    run_id: str
    model: str
    host: str
    steps: int  # duration in 0.1 s steps
    watts: float  # package (or estimate) draw during the run
    inferences: int = 1000
    top1: float = 0.75
    params: float = 5e6
    macs: float = 3e8
    accuracy_source: str = "measured"
    fail: str | None = None
    dataset: str = "synthetic"
    idle_watts: float | None = None


RUNS = (
    Run("a-resnet-1", "resnet50", "lab-a", 50, 100.0, 2000, 0.761, 25.6e6, 4.1e9),
    Run("a-resnet-2", "resnet50", "lab-a", 50, 100.0, 2000, 0.761, 25.6e6, 4.1e9),
    Run("a-resnet-3", "resnet50", "lab-a", 50, 130.0, 2000, 0.761, 25.6e6, 4.1e9),
    Run("a-mobile-1", "mobilenetv3_small", "lab-a", 30, 40.0, 3000, 0.681, 2.55e6, 5.7e7),
    Run("a-mobile-2", "mobilenetv3_small", "lab-a", 30, 40.5, 3000, 0.681, 2.55e6, 5.7e7),
    Run("a-effnet-1", "efficientnetv2_s", "lab-a", 80, 120.0, 2000, 0.839, 21.6e6, 8.8e9,
        idle_watts=IDLE_W + DRAM_W[0]),
    Run("a-fail-1", "nasnet_large", "lab-a", 20, 150.0, fail=FAIL_REASON),
    Run("b-resnet-1", "resnet50", "lab-b", 40, 60.0, 2000, 0.761, 25.6e6, 4.1e9),
    Run("b-mobile-1", "mobilenetv3_small", "lab-b", 25, 25.0, 3000, 0.681, 2.55e6, 5.7e7),
    Run(XSS_SCRIPT, XSS_IMG, "lab-b", 20, 50.0, 1000, 0.5, 1e6, 1e8,
        accuracy_source="published", dataset=XSS_DATASET),
    Run("c-digits-1", "digits$cnn$_x", XSS_HOST, 20, 15.0, 500, 0.97, 1e5, 2e6),
)  # fmt: skip


def _series(host: str) -> list[tuple[dict[str, str], float, float]]:
    """(tags, idle watts, fraction of a run's watts) per energy series of a host."""
    if host == "lab-a":
        return [(energy_tags("rapl", "package-0"), IDLE_W, 1.0),
                (energy_tags("rapl", "dram-0"), DRAM_W[0], 0.0),
                (energy_tags("rapl", "core-0"), IDLE_W * CORE_FRACTION, CORE_FRACTION)]  # fmt: skip
    if host == "lab-b":
        return [(energy_tags("rapl", "package-0"), IDLE_W, 1.0)]
    return [(energy_tags("model", "cpu-estimate", estimated=True), IDLE_W, 1.0)]


def build(store: Store) -> dict[str, float]:
    """Write every host's samples and every run's events (as the benchmark writes them);
    returns each finished run's joules."""
    expected: dict[str, float] = {}
    for host in dict.fromkeys(r.host for r in RUNS):
        runs = [r for r in RUNS if r.host == host]
        # the run drawing during each 0.1 s step (None: idle), and each run's first step
        timeline: list[Run | None] = [None] * GAP_STEPS
        starts: dict[str, int] = {}
        for r in runs:
            starts[r.run_id] = len(timeline)
            timeline += [r] * r.steps + [None] * GAP_STEPS
        points = []
        for tags, idle, fraction in _series(host):
            tags = {**tags, "host": host}
            busy = DRAM_W[1] if tags["domain"] == "dram-0" else 0.0
            total = 0.0
            for i in range(len(timeline) + 1):
                run = timeline[i - 1] if i else None
                watts = idle if run is None else run.watts * fraction + busy
                total += watts * STEP_NS / 1e9 if i else 0.0
                fields = {"joules_total": total, "watts": watts}
                points.append(Point("energy", tags, fields, T0_NS + i * STEP_NS))
        store.write(points)
        for r in runs:
            start = T0_NS + starts[r.run_id] * STEP_NS
            end = start + r.steps * STEP_NS
            tags = RunTags(r.run_id, r.model, "keras", r.dataset, host)
            write_event(store, tags, RunStart(), start)
            if r.fail:
                write_event(store, tags, RunFail(reason=r.fail), end)
                continue
            seconds = r.steps * STEP_NS / 1e9
            write_event(store, tags, RunEnd(
                inferences=r.inferences, top1=r.top1, top5=min(1.0, r.top1 + 0.15),
                accuracy_source=r.accuracy_source, batch_size=32, params=r.params, macs=r.macs,
                weights="imagenet", duration_s=seconds, idle_watts=r.idle_watts), end)  # fmt: skip
            dram = DRAM_W[1] * seconds if host == "lab-a" else 0.0
            expected[r.run_id] = r.watts * seconds + dram
    store.flush()
    return expected
