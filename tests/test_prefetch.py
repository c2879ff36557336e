"""Scoring many runs through :class:`scoring.prefetch.Prefetched`: every run's scores are those
of the one-by-one path, any read inside a span is the store's own answer, and N runs of one
host in one span cost a constant number of reads. On SQLite and on a real InfluxDB."""

from __future__ import annotations

import math

import pytest
from counting_store import CountingStore
from hypothesis import given, settings
from hypothesis import strategies as st
from run_fixtures import add_events, add_power, add_samples

from exporters.schema import RUN
from exporters.window import ENERGY_FIELDS
from scoring.prefetch import PAD_NS, Prefetched, spans_of
from scoring.runs import RunScore, load_runs, runs_from_events, score_run, score_runs
from scoring.stats import GPU_FIELDS

S = 1_000_000_000
SECONDS = range(0, 400)  # samples every second: many fall exactly on window and span edges
# (run id, host, start s, seconds): overlapping runs, runs whose padded windows overlap, a gap
# longer than GAP_MAX_NS ("a", 2000 s), a failed run, and hosts interleaved in time
RUNS = [
    ("a1", "a", 100, 10), ("a2", "a", 115, 20), ("a3", "a", 125, 12), ("a4", "a", 250, 30),
    ("a5", "a", 2100, 8), ("b1", "b", 100, 10), ("b2", "b", 190, 40), ("c1", "c", 300, 40),
]  # fmt: skip
HOST_SECONDS = {"a": [*SECONDS, *range(2000, 2200)], "b": list(SECONDS), "c": list(SECONDS)}


def _wave(host: str, domain: str, t: float) -> float:
    """Watts that differ at every second, so that any shifted window gives other energy."""
    return 40.0 + 10 * math.sin(t / 7 + ord(host[0]) + len(domain)) + (t % 3)


def _fill(store) -> None:
    for host, seconds in HOST_SECONDS.items():
        for source, domain in (("rapl", "package-0"), ("nvml", "gpu0"), ("rapl", "dram-0")):
            add_power(
                store, host, source, domain, seconds, [_wave(host, domain, t) for t in seconds]
            )
        mids = [t + 0.5 for t in seconds]
        add_samples(store, "gpu", {"host": host, "gpu": "0", "uuid": "GPU-a", "name": "H200"},
                    mids, util_pct=[float(t % 100) for t in seconds],
                    mem_used_bytes=[1e9 + t for t in seconds],
                    mem_total_bytes=[8e10] * len(seconds),
                    throttled=[float(t % 5 == 0) for t in seconds])  # fmt: skip
        add_samples(store, "cpu", {"host": host, "cpu": "total"}, seconds,
                    usage_pct=[float(t % 17) for t in seconds])  # fmt: skip
        add_samples(store, "cpu", {"host": host, "cpu": "0"}, seconds,
                    usage_pct=[99.0] * len(seconds))  # fmt: skip
    for run_id, host, start, seconds in RUNS:
        add_events(store, run_id, "resnet50", host, start, seconds, 1000 + start)
    add_events(store, "f1", "resnet50", "a", 140, 5, fail="out of memory")


def _fresh(store):
    return runs_from_events(store.read(RUN, 0, 2**62))


def test_every_score_is_the_one_by_one_score(store) -> None:
    _fill(store)
    alone = [score_run(store, r).as_dict() for r in _fresh(store)]
    finished = [r for r in alone if r["status"] == "finished"]
    assert len(finished) == len(RUNS) and all(r["energy_j"] for r in finished)
    assert all(r["cpu_util_pct"] is not None and r["gpu_util_pct"] is not None for r in finished)
    assert len({r["energy_j"] for r in finished}) == len(RUNS)  # the windows do differ
    together = [r.as_dict() for r in score_runs(store, _fresh(store))]
    assert together == alone
    for gap_s, max_s in ((1, 50), (300, 130), (0, 1)):  # spans split at every kind of border
        view = Prefetched(store, _fresh(store), gap_ns=gap_s * S, max_ns=max_s * S)
        assert [score_run(view, r).as_dict() for r in _fresh(store)] == alone


READS = [("energy", ENERGY_FIELDS, {}), ("energy", ("watts",), {}), ("gpu", GPU_FIELDS, {}),
         ("gpu", GPU_FIELDS, {"gpu": "0"}), ("cpu", ("usage_pct",), {}),
         ("cpu", ("usage_pct",), {"cpu": "total"})]  # fmt: skip


def _read(view, store, measurement, start_ns, end_ns, tags, fields) -> None:
    args = (measurement, start_ns, end_ns, tags, fields)
    assert view.read_columns(*args) == store.read_columns(*args)


def test_the_view_answers_every_read_as_the_store_does(store) -> None:
    _fill(store)
    hosts = st.sampled_from(["a", "b", "nowhere"])
    reads = st.sampled_from(READS)

    @settings(max_examples=30, deadline=None, database=None)
    @given(
        windows=st.lists(st.tuples(hosts, st.integers(-100, 450), st.integers(1, 150)), max_size=6),
        gap_s=st.integers(0, 300),
        max_s=st.integers(1, 600),
        more=st.lists(
            st.tuples(hosts, st.integers(-200, 500), st.integers(-1, 250), reads), max_size=4
        ),
    )
    def check(windows, gap_s, max_s, more) -> None:
        runs = [RunScore(run_id=str(i), model="m", host=h, backend="", dataset="",
                         status="finished", start_ns=s * S, end_ns=(s + n) * S)
                for i, (h, s, n) in enumerate(windows)]  # fmt: skip
        view = Prefetched(store, runs, gap_ns=gap_s * S, max_ns=max_s * S)
        for r in view.runs:  # what scoring reads, then anything
            for m, f, t in READS:
                pad = PAD_NS if m == "energy" else 0
                _read(view, store, m, r.start_ns - pad, r.end_ns + pad, {"host": r.host, **t}, f)
        for h, start_s, length_s, (m, f, t) in more:
            _read(view, store, m, start_s * S, (start_s + length_s) * S, {"host": h, **t}, f)

    check()


@pytest.mark.parametrize("runs", [2, 30])
def test_runs_of_one_host_in_one_span_cost_a_constant_number_of_reads(tmp_path, runs) -> None:
    with CountingStore(tmp_path / "c.db") as store:
        seconds = list(range(0, 20 * runs + 20))
        add_power(store, "h", "rapl", "package-0", seconds, [50.0] * len(seconds))
        add_samples(store, "cpu", {"host": "h", "cpu": "total"}, seconds,
                    usage_pct=[5.0] * len(seconds))  # fmt: skip
        for i in range(runs):
            add_events(store, f"r{i}", "resnet50", "h", 10 + 20 * i, 10)
        store.reads = 0
        scored = load_runs(store)
        assert store.reads == 1 + 3  # the events, then energy, gpu and cpu once each
        assert [r.energy_j for r in scored] == pytest.approx([500.0] * runs)
        store.reads = 0
        for r in _fresh(store):
            score_run(store, r)
        assert store.reads == 1 + 3 * runs  # one by one: three reads a run


def test_spans_cover_whole_windows_within_their_bounds() -> None:
    windows = [(0, 10), (5, 20), (40, 50), (45, 200), (300, 310)]
    spans = spans_of(windows, gap_ns=25, max_ns=100)
    assert spans == [(0, 50), (45, 200), (300, 310)]
    assert all(any(s <= a and b <= e for s, e in spans) for a, b in windows)
    assert spans_of([], 1, 1) == []
