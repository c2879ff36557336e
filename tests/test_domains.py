"""Domain roles, decided once: what a window's total adds, and what the live watts add."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmark.sampling import Sampler
from exporters.domains import domain_roles
from exporters.schema import Point, energy_tags


def test_each_domain_plays_one_role() -> None:
    domains = [
        ("a", "rapl", "package-0"),
        ("a", "rapl", "dram-0"),
        ("a", "rapl", "core-0"),
        ("a", "rapl", "uncore-0"),
        ("a", "rapl", "psys"),
        ("a", "ipmi", "wall"),
        ("a", "nvml", "gpu0"),
        ("a", "dcgm", "gpu0"),  # NVML reads it too: once, from NVML
        ("a", "dcgm", "gpu1"),  # NVML does not
        ("a", "model", "cpu-estimate"),  # host a has RAPL
        ("b", "model", "cpu-estimate"),  # host b has not
        ("b", "dcgm", "gpu0"),  # NVML reads gpu0 on host a only
        ("b", "pdu", "pdu-wall"),
    ]
    assert domain_roles(domains) == [
        "counted", "counted", "nested", "nested", "platform", "wall", "gpu", "duplicate", "gpu",
        "duplicate", "counted", "gpu", "other",
    ]  # fmt: skip


def test_patterns_count_other_domains_but_never_a_duplicate() -> None:
    domains = [("a", "ipmi", "wall"), ("a", "rapl", "psys"), ("a", "nvml", "gpu0"),
               ("a", "dcgm", "gpu0"), ("a", "pdu", "pdu-wall")]  # fmt: skip
    assert domain_roles(domains, ("wall", "psys", "gpu*", "pdu-*")) == [
        "counted", "counted", "gpu", "duplicate", "counted",
    ]  # fmt: skip
    assert domain_roles(domains, ("*",))[3] == "duplicate"


def _point(source: str, domain: str, **fields: float) -> Point:
    return Point("energy", {**energy_tags(source, domain), "host": "h"}, fields, 1)


def _live_watts(*points: Point) -> float | None:
    sampler = Sampler(store=None, host="h", config={"host": "h"})  # type: ignore[arg-type]
    sampler.agent = SimpleNamespace(latest={p.series_key(): p for p in points})  # type: ignore[assignment]
    return sampler.watts()


def test_live_watts_count_a_gpu_nvml_and_dcgm_both_report_once() -> None:
    watts = _live_watts(
        _point("rapl", "package-0", watts=40.0, joules_total=5.0),
        _point("rapl", "core-0", watts=30.0),  # nested in the package
        _point("nvml", "gpu0", watts=200.0),
        _point("dcgm", "gpu0", watts=201.0),  # the same GPU
        _point("model", "cpu-estimate", watts=55.0),  # RAPL measures this host
        _point("ipmi", "wall", watts=400.0),
        Point("gpu", {"host": "h", "gpu": "0"}, {"util_pct": 90.0}, 1),
    )
    assert watts == pytest.approx(240.0)


def test_live_watts_take_dcgm_and_the_estimate_where_nothing_better_reads() -> None:
    assert _live_watts(
        _point("dcgm", "gpu0", watts=201.0), _point("model", "cpu-estimate", watts=55.0)
    ) == pytest.approx(256.0)
    assert _live_watts(_point("rapl", "package-0", joules_total=5.0)) is None
