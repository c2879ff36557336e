"""The CPU power model: exact joules from a fixture /proc/stat, tags, and config validation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from rapl_writer import make_tree

from exporters.__main__ import main as exporters_main
from exporters.config import load_config
from exporters.counters import CounterTotals
from exporters.errors import ConfigError, SourceError, UsageError
from exporters.sources import build_sources, cpu_model
from exporters.sources.base import Source
from exporters.sources.cpu_model import CpuModelSource

FIXTURE = Path(__file__).parent / "fixtures" / "proc"
CLK = os.sysconf("SC_CLK_TCK")
# fixtures/proc/stat: 4 CPUs, 40000 jiffies in all (guest excluded), 11800 of them busy
TOTAL, BUSY, NCORES = 40000 / CLK, 11800 / CLK, 4


def joules(src: CpuModelSource) -> float:
    (reading,) = src.read()
    return reading.counters["joules_total"].raw


def test_shape_and_tags():
    src = CpuModelSource(procfs_root=FIXTURE)
    assert isinstance(src, Source) and (src.name, src.kind) == ("cpu_model", "power")
    (reading,) = src.read()
    assert reading.measurement == "energy"
    assert reading.tags == {"source": "model", "domain": "cpu-estimate", "estimated": "true"}
    assert not reading.fields
    counter = reading.counters["joules_total"]
    assert (counter.rate_field, counter.rate_scale, counter.scale) == ("watts", 1.0, 1.0)


def test_joules_formula_on_fixture():
    expected = 10.0 * TOTAL / NCORES + (65.0 - 10.0) * BUSY / NCORES
    assert joules(CpuModelSource(procfs_root=FIXTURE)) == pytest.approx(expected, rel=1e-12)
    if CLK == 100:
        assert joules(CpuModelSource(procfs_root=FIXTURE)) == pytest.approx(2622.5)
    src = CpuModelSource(idle_watts=0.0, max_watts=100.0, procfs_root=FIXTURE)
    assert joules(src) == pytest.approx(100.0 * BUSY / NCORES)


def stat_later(root: Path, busy_ticks: int, idle_ticks: int) -> Path:
    """The fixture's /proc/stat after every CPU spent these ticks busy (user) and idle."""
    later = root / "proc"
    shutil.copytree(FIXTURE, later)
    lines = []
    for line in (FIXTURE / "stat").read_text().splitlines():
        if line.startswith("cpu"):
            name, *v = line.split()
            n = NCORES if name == "cpu" else 1
            v[0], v[3] = str(int(v[0]) + n * busy_ticks), str(int(v[3]) + n * idle_ticks)
            line = " ".join([name, *v])
        lines.append(line)
    (later / "stat").write_text("\n".join(lines) + "\n")
    return later


def test_rate_between_two_instants_is_the_model_power(tmp_path):
    """One second later every CPU was half busy: the agent's rate is idle + span * 0.5."""
    half = CLK // 2
    later = stat_later(tmp_path, half, CLK - half)
    watts = joules(CpuModelSource(20.0, 80.0, later)) - joules(CpuModelSource(20.0, 80.0, FIXTURE))
    assert watts == pytest.approx(20.0 + 60.0 * half / CLK)


def test_ceiling_is_twice_max_watts_so_tick_rounding_is_no_glitch(tmp_path):
    """Fully busy, with the tick count a tenth ahead of the clock: 10% over max_watts in one
    step is the kernel's rounding, not a bad reading."""
    later = stat_later(tmp_path, CLK + CLK // 10, 0)
    before, after = CpuModelSource(procfs_root=FIXTURE), CpuModelSource(procfs_root=later)
    assert before.read()[0].counters["joules_total"].max_rate == 2 * 65.0
    totals = CounterTotals()
    totals.fields(before.read()[0], 0)
    step = totals.fields(after.read()[0], 1_000_000_000)  # one second later
    assert step["watts"] == pytest.approx(65.0 * 1.1, rel=0.02) and totals.glitches == 0


def test_real_machine_energy_grows():
    src = CpuModelSource()
    first = joules(src)
    sum(range(200_000))
    assert joules(src) >= first > 0


def test_available_always_says_estimate():
    for src in (CpuModelSource(), CpuModelSource(procfs_root="/nonexistent")):
        ok, why = src.available()
        assert ok and "ESTIMATE" in why and "RAPL" in why


def test_unreadable_root_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="procfs_root"):
        CpuModelSource(procfs_root=tmp_path).read()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"idle_watts": -1.0}, "sources.cpu_model.idle_watts"),
        ({"idle_watts": float("nan")}, "sources.cpu_model.idle_watts"),
        ({"idle_watts": "ten"}, "sources.cpu_model.idle_watts"),
        ({"max_watts": -5.0}, "sources.cpu_model.max_watts"),
        ({"idle_watts": 50.0, "max_watts": 40.0}, "sources.cpu_model.max_watts"),
        ({"max_watts": float("inf")}, "sources.cpu_model.max_watts"),
    ],
)
def test_config_validation(kwargs, key):
    with pytest.raises(ConfigError, match=key) as err:
        CpuModelSource(**kwargs)
    assert isinstance(err.value, UsageError) and "watts" in str(err.value)


def test_defaults_documented():
    src = CpuModelSource()
    assert (src.idle_watts, src.max_watts) == (10.0, 65.0)
    assert "TDP" in (cpu_model.__doc__ or "")


@pytest.mark.parametrize("rapl", [True, False])
def test_auto_uses_the_estimate_only_where_no_rapl_is_readable(
    tmp_path, monkeypatch, capsys, rapl: bool
) -> None:
    if rapl:
        make_tree(tmp_path, {"package-0": 1000.0})
    for name in ("nvml", "system"):
        monkeypatch.setenv(f"TUBAI_SOURCES__{name.upper()}__ENABLED", "false")
    roots = {"sysfs_root": str(tmp_path), "procfs_root": str(FIXTURE)}
    ready, _, notes = build_sources(load_config(overrides=roots))
    assert [s.name for s in ready] == (["rapl"] if rapl else ["cpu_model"])
    assert [n.split(":")[0] for n in notes] == ["rapl", *([] if rapl else ["cpu_model"])]
    doctor = ["doctor", "--sysfs-root", str(tmp_path), "--procfs-root", str(FIXTURE)]
    assert exporters_main(doctor) == 0
    out = capsys.readouterr().out.splitlines()
    [line] = [line for line in out if line.startswith("cpu_model")]
    if rapl:  # the doctor says what the agent does
        assert line == "cpu_model  not used: RAPL measures this machine"
    else:
        assert line.startswith("cpu_model  found: ESTIMATE, not a measurement")
        assert line.endswith("readable. Used here because no RAPL domain is readable.")
