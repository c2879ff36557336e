"""The system source: names of the data model, real-machine sanity, a fixture /proc, and
psutil's figures wherever the source reads /proc itself (tests/test_procfs.py: the parsers)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import psutil
import pytest

from exporters.errors import SourceError
from exporters.sources.base import Source
from exporters.sources.system import SystemSource, _is_partition, busy_seconds, psutil_procfs

FIXTURE = Path(__file__).parent / "fixtures" / "proc"
CLK = os.sysconf("SC_CLK_TCK")


def by(readings, measurement, tag):
    return {r.tags[tag]: r for r in readings if r.measurement == measurement}


def test_shape_and_names():
    src = SystemSource()
    assert isinstance(src, Source) and (src.name, src.kind) == ("system", "system")
    readings = src.read()
    assert {r.measurement for r in readings} <= {"cpu", "mem", "disk", "net"}
    cpus = by(readings, "cpu", "cpu")
    assert set(cpus) == {"total"} | {str(i) for i in range(psutil.cpu_count())}
    for cpu, r in cpus.items():
        assert set(r.tags) == {"cpu"}
        assert set(r.counters) == {"busy_seconds_total"}
        counter = r.counters["busy_seconds_total"]
        assert counter.rate_field == "usage_pct"
        assert counter.rate_scale == pytest.approx(100.0 / (len(cpus) - 1 if cpu == "total" else 1))
        assert set(r.fields) <= ({"freq_mhz", "load1"} if cpu == "total" else {"freq_mhz"})
    assert "load1" in cpus["total"].fields
    (mem,) = [r for r in readings if r.measurement == "mem"]
    assert mem.tags == {} and not mem.counters
    assert set(mem.fields) == {"used_bytes", "available_bytes", "total_bytes", "swap_used_bytes"}
    for measurement, tag, a, b in (
        ("disk", "device", "read", "write"),
        ("net", "interface", "recv", "sent"),
    ):
        for r in by(readings, measurement, tag).values():
            assert set(r.tags) == {tag} and not r.fields
            assert {k: c.rate_field for k, c in r.counters.items()} == {
                f"{a}_bytes_total": f"{a}_bps",
                f"{b}_bytes_total": f"{b}_bps",
            }


def test_busy_seconds_grow_with_cpu_work():
    src = SystemSource(disks=False, nets=False)
    before = by(src.read(), "cpu", "cpu")["total"].counters["busy_seconds_total"].raw
    start = time.process_time()
    while time.process_time() - start < 0.2:
        sum(range(1000))
    after = by(src.read(), "cpu", "cpu")["total"].counters["busy_seconds_total"].raw
    assert after - before >= 0.1  # 0.2 s burnt; the kernel counts in ticks


def test_memory_consistent():
    (mem,) = [r for r in SystemSource(disks=False, nets=False).read() if r.measurement == "mem"]
    f = mem.fields
    assert 0 < f["used_bytes"] <= f["total_bytes"]
    assert 0 < f["available_bytes"] <= f["total_bytes"]
    assert f["swap_used_bytes"] >= 0


def test_disk_and_net_counters_monotonic_and_lo_skipped(tmp_path):
    src = SystemSource()
    first = src.read()
    (tmp_path / "f").write_bytes(os.urandom(1 << 16))
    second = src.read()
    for measurement, tag in (("disk", "device"), ("net", "interface")):
        a, b = by(first, measurement, tag), by(second, measurement, tag)
        for key in a.keys() & b.keys():
            for name, counter in a[key].counters.items():
                assert b[key].counters[name].raw >= counter.raw >= 0
    assert "lo" not in by(second, "net", "interface")
    assert not any(d.startswith(("loop", "ram")) for d in by(second, "disk", "device"))


def test_fixture_proc_is_honoured():
    src = SystemSource(FIXTURE)
    readings = src.read()
    assert psutil.PROCFS_PATH == "/proc"  # restored after the read
    cpus = by(readings, "cpu", "cpu")
    assert set(cpus) == {"total", "0", "1", "2", "3"}
    # busy = user + nice + system + irq + softirq + steal (guest is inside user, counted once)
    busy = {"total": 11800, "0": 1800, "1": 3400, "2": 1000, "3": 5600}
    for cpu, jiffies in busy.items():
        counter = cpus[cpu].counters["busy_seconds_total"]
        assert counter.raw == pytest.approx(jiffies / CLK)
        assert counter.rate_scale == pytest.approx(25.0 if cpu == "total" else 100.0)
    assert cpus["total"].fields["load1"] == pytest.approx(0.42)
    freqs = [cpus[str(i)].fields["freq_mhz"] for i in range(4)]  # the root's cpuinfo, always
    assert freqs == pytest.approx([1200.5, 2400.0, 3000.0, 3600.0])
    assert cpus["total"].fields["freq_mhz"] == pytest.approx(2550.125)
    (mem,) = [r for r in readings if r.measurement == "mem"]
    assert mem.fields == {
        "used_bytes": 8192000 * 1024,
        "available_bytes": 8192000 * 1024,
        "total_bytes": 16384000 * 1024,
        "swap_used_bytes": 1048576 * 1024,
    }
    disks = by(readings, "disk", "device")
    assert set(disks) == {"sda", "nvme0n1", "dm-1", "dm-10"}  # no loop, ram, zram, partitions
    assert disks["sda"].counters["read_bytes_total"].raw == 2000 * 512
    assert disks["sda"].counters["write_bytes_total"].raw == 4000 * 512
    nets = by(readings, "net", "interface")
    assert set(nets) == {"eth0", "wlan0"}
    assert nets["eth0"].counters["recv_bytes_total"].raw == 123456789
    assert nets["eth0"].counters["sent_bytes_total"].raw == 9876543
    assert src.available() == (True, f"4 CPUs, 4 disks, 2 interfaces (from {FIXTURE})")


def test_disks_and_nets_can_be_turned_off():
    readings = SystemSource(FIXTURE, disks=False, nets=False).read()
    assert {r.measurement for r in readings} == {"cpu", "mem"}


def test_missing_root_is_an_error_that_says_why(tmp_path):
    src = SystemSource(tmp_path / "nowhere")
    with pytest.raises(SourceError, match="procfs_root"):
        src.read()
    assert psutil.PROCFS_PATH == "/proc"
    ok, why = src.available()
    assert not ok and "nowhere" in why


def test_concurrent_reads_of_two_roots_do_not_mix():
    real, fixture = SystemSource(disks=False, nets=False), SystemSource(FIXTURE, nets=False)
    counts: set[int] = set()

    def spin(src: SystemSource) -> None:
        for _ in range(30):
            counts.add(len(by(src.read(), "cpu", "cpu")) - 1)

    threads = [threading.Thread(target=spin, args=(s,)) for s in (real, fixture, real)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == {4, psutil.cpu_count()}
    assert psutil.PROCFS_PATH == "/proc"


@pytest.mark.parametrize(
    ("name", "names", "partition"),
    [
        ("sda1", {"sda"}, True),
        ("xvda2", {"xvda"}, True),
        ("nvme0n1p1", {"nvme0n1"}, True),
        ("mmcblk0p2", {"mmcblk0"}, True),
        ("sda1", set(), False),
        ("dm-10", {"dm-1"}, False),
        ("nbd10", {"nbd1"}, False),
        ("sdb", {"sda"}, False),
    ],
)
def test_partitions_follow_kernel_naming(name, names, partition):
    assert _is_partition(name, names) is partition


def psutil_figures(root: Path | str = "/proc") -> dict:
    """What the source read through psutil before it parsed /proc itself, for comparison."""
    with psutil_procfs(root):
        vm, swap = psutil.virtual_memory(), psutil.swap_memory()
        disks = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
        nets = psutil.net_io_counters(pernic=True, nowrap=False)
        try:
            freqs = [f.current for f in psutil.cpu_freq(percpu=True)]
        except NotImplementedError:
            freqs = []
        return {
            "cpus": [busy_seconds(t)[0] for t in psutil.cpu_times(percpu=True)],
            "mem": {"used_bytes": vm.used, "available_bytes": vm.available,
                    "total_bytes": vm.total, "swap_used_bytes": swap.used},
            "disks": {d: (c.read_bytes, c.write_bytes) for d, c in disks.items()},
            "nets": {n: (c.bytes_recv, c.bytes_sent) for n, c in nets.items() if n != "lo"},
            "freqs": [f for f in freqs if f > 0],
        }  # fmt: skip


def figures(readings) -> dict:
    cpus = by(readings, "cpu", "cpu")
    (mem,) = [r for r in readings if r.measurement == "mem"]
    raw = {
        key: {k: tuple(c.raw for c in r.counters.values()) for k, r in by(readings, m, t).items()}
        for key, m, t in (("disks", "disk", "device"), ("nets", "net", "interface"))
    }
    return {
        "cpus": [cpus[str(i)].counters["busy_seconds_total"].raw for i in range(len(cpus) - 1)],
        "mem": dict(mem.fields),
        **raw,
        "freqs": [cpus[str(i)].fields.get("freq_mhz") for i in range(len(cpus) - 1)],
    }


def test_the_fixture_gives_psutils_figures():
    mine, theirs = figures(SystemSource(FIXTURE).read()), psutil_figures(FIXTURE)
    assert mine["cpus"] == theirs["cpus"] and mine["mem"] == theirs["mem"]
    assert mine["nets"] == theirs["nets"]
    assert mine["disks"] == {d: v for d, v in theirs["disks"].items() if d in mine["disks"]}


def test_this_machine_gives_psutils_series_and_fixed_figures():
    mine, theirs = figures(SystemSource().read()), psutil_figures()
    assert len(mine["cpus"]) == len(theirs["cpus"]) == psutil.cpu_count()
    assert set(mine["nets"]) == set(theirs["nets"])
    assert set(mine["disks"]) <= set(theirs["disks"])
    assert mine["mem"]["total_bytes"] == theirs["mem"]["total_bytes"]
    if len(theirs["freqs"]) == len(theirs["cpus"]):  # psutil truncates to kHz
        assert mine["freqs"] == pytest.approx(theirs["freqs"], abs=0.001)


@pytest.mark.parametrize("gap", ["no MemAvailable", "no swap lines", "no cpu MHz", "no diskstats"])
def test_where_proc_lacks_what_is_parsed_psutil_gives_the_figures(tmp_path, gap):
    """Old kernels (no MemAvailable), ARM (no cpu MHz in cpuinfo) and the like."""
    root = tmp_path / "proc"
    shutil.copytree(FIXTURE, root)
    meminfo, cpuinfo = root / "meminfo", root / "cpuinfo"
    if gap == "no MemAvailable":
        lines = meminfo.read_text().splitlines(keepends=True)
        meminfo.write_text("".join(x for x in lines if not x.startswith("MemAvailable")))
    elif gap == "no swap lines":
        lines = meminfo.read_text().splitlines(keepends=True)
        meminfo.write_text("".join(x for x in lines if not x.startswith("Swap")))
    elif gap == "no cpu MHz":
        lines = cpuinfo.read_text().splitlines(keepends=True)
        cpuinfo.write_text("".join(x for x in lines if not x.startswith("cpu MHz")))
    else:
        (root / "diskstats").unlink()
    mine, theirs = figures(SystemSource(root).read()), psutil_figures(root)
    assert mine["mem"] == theirs["mem"]
    assert [f for f in mine["freqs"] if f] == (theirs["freqs"] if gap == "no cpu MHz" else
                                               [1200.5, 2400.0, 3000.0, 3600.0])  # fmt: skip
    if gap == "no diskstats":  # psutil reads this machine's /sys/block, which moves on
        assert set(mine["disks"]) <= set(theirs["disks"])
    else:
        assert mine["disks"] == {d: v for d, v in theirs["disks"].items() if d in mine["disks"]}
    assert psutil.PROCFS_PATH == "/proc"
