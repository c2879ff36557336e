"""The /proc parsers of the system source: psutil's figures for any file the kernel could write.

Each property renders random values in the kernel's layout (padding included), writes the file
into a procfs tree of its own, and checks the parser against psutil reading that same tree: the
two must agree exactly, since the system source promises psutil's fields and units.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporters.sources import procfs
from exporters.sources.system import psutil_procfs

EXAMPLES = settings(max_examples=60, deadline=None)
counts = st.integers(min_value=0, max_value=2**64 - 1)  # the kernel's unsigned counters
kib = st.integers(min_value=0, max_value=2**40)
pads = st.integers(min_value=0, max_value=6)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A procfs tree the properties rewrite for each example (one for the module)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "net").mkdir()
        (Path(tmp) / "vmstat").write_text("pswpin 0\npswpout 0\n")
        yield Path(tmp)


def write(root: Path, name: str, text: str) -> bytes:
    (root / name).write_text(text)
    return procfs.read_file(str(root / name))


@EXAMPLES
@given(rows=st.lists(st.lists(counts, min_size=10, max_size=10), min_size=2, max_size=9))
def test_cpu_times_and_busy_seconds_are_psutils(root, rows):
    lines = [f"cpu  {' '.join(map(str, rows[0]))}"]
    lines += [f"cpu{i} {' '.join(map(str, row))}" for i, row in enumerate(rows[1:])]
    stat = write(root, "stat", "\n".join([*lines, "intr 1 2 3", "ctxt 4", "btime 5", ""]))
    got = procfs.cpu_times(stat)
    with psutil_procfs(root):
        total, per_cpu = psutil.cpu_times(), psutil.cpu_times(percpu=True)
    assert got == [list(total), *map(list, per_cpu)]
    assert [procfs.busy_seconds(row) for row in got] == [
        procfs.busy_seconds(t) for t in [total, *per_cpu]
    ]


def test_busy_seconds_leave_out_idle_iowait_and_the_guests_inside_user():
    #           user nice system idle iowait irq softirq steal guest guest_nice
    assert procfs.busy_seconds([1, 2, 3, 40, 5, 6, 7, 8, 9, 10]) == (27, 72)
    assert procfs.busy_seconds([1, 2, 3, 40]) == (6, 46)  # old kernels: fewer columns


@EXAMPLES
@given(
    total=kib, free=kib, available=kib, swap_total=kib, swap_free=kib, pad=pads,
    extra=st.lists(st.tuples(names, kib), max_size=5),
)  # fmt: skip
def test_memory_is_psutils(root, total, free, available, swap_total, swap_free, pad, extra):
    lines = [
        ("MemTotal", total), ("MemFree", free), ("MemAvailable", available),
        ("Buffers", 0), ("Cached", 0), ("Shmem", 0), ("Active", 0), ("Inactive", 0),
        *((f"X{n}", v) for n, v in extra),
        ("SwapTotal", swap_total), ("SwapFree", swap_free),
    ]  # fmt: skip
    text = "".join(f"{k}:{' ' * (pad + 8)}{v} kB\n" for k, v in lines)
    got = procfs.memory(write(root, "meminfo", text))
    if available == 0:
        assert got is None  # psutil estimates it from zoneinfo: the source asks psutil
        return
    with psutil_procfs(root):
        vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    assert got == {
        "used_bytes": vm.used,
        "available_bytes": vm.available,
        "total_bytes": vm.total,
        "swap_used_bytes": swap.used,
    }


def test_memory_without_available_or_swap_lines_is_left_to_psutil():
    assert (
        procfs.memory(b"MemTotal: 10 kB\nMemFree: 5 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n") is None
    )
    assert procfs.memory(b"MemTotal: 10 kB\nMemFree: 5 kB\nMemAvailable: 7 kB\n") is None


disk_line = st.tuples(
    st.sampled_from([7, 14, 15, 18, 20]),
    names,
    st.lists(st.integers(min_value=0, max_value=2**53), min_size=17, max_size=17),
)


@EXAMPLES
@given(lines=st.lists(disk_line, max_size=8, unique_by=lambda d: d[1]), pad=pads)
def test_disk_bytes_are_psutils_in_every_layout(root, lines, pad):
    text = ""
    for width, name, values in lines:
        head = ["8", "0", "999", name] if width == 15 else ["8", "0", name]
        row = head + [str(v) for v in values[: width - len(head)]]
        text += " " * pad + " ".join(row) + "\n"
    got = procfs.disk_bytes(write(root, "diskstats", text))
    with psutil_procfs(root):
        io = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
    assert got == {name: (d.read_bytes, d.write_bytes) for name, d in io.items()}


@pytest.mark.parametrize("line", [b"8 0 sda 1 2 3", b"8 0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13"])
def test_a_diskstats_line_of_unknown_layout_is_an_error(line):
    with pytest.raises(ValueError, match="diskstats"):
        procfs.disk_bytes(line)


@EXAMPLES
@given(nics=st.dictionaries(names, st.lists(counts, min_size=16, max_size=16), max_size=6))
def test_net_bytes_are_psutils(root, nics):
    text = "Inter-|   Receive  |  Transmit\n face |bytes    packets|bytes    packets\n"
    text += "".join(f"{n:>6}: {' '.join(map(str, v))}\n" for n, v in nics.items())
    got = procfs.net_bytes(write(root, "net/dev", text))
    with psutil_procfs(root):
        io = psutil.net_io_counters(pernic=True, nowrap=False)
    assert got == {nic: (c.bytes_recv, c.bytes_sent) for nic, c in io.items()}
    assert got == {n: (v[0], v[8]) for n, v in nics.items()}


@pytest.mark.parametrize("line", [b"  eth0 1 2 3", b": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"])
def test_a_net_dev_line_without_name_or_columns_is_an_error(line):
    with pytest.raises(ValueError, match="net/dev"):
        procfs.net_bytes(b"header\nheader\n" + line)


@EXAMPLES
@given(mhz=st.lists(st.floats(min_value=0, max_value=10_000, allow_nan=False), max_size=9))
def test_cpu_mhz_one_per_processor_block(mhz):
    blocks = "".join(
        f"processor\t: {i}\nmodel name\t: Some CPU @ 3.00GHz\ncpu MHz\t\t: {m:.3f}\n"
        f"flags\t\t: fpu vme\n\n"
        for i, m in enumerate(mhz)
    )
    assert procfs.cpu_mhz(blocks.encode()) == [float(f"{m:.3f}") for m in mhz]


def test_stat_without_a_cpu_line_first_is_an_error():
    with pytest.raises(ValueError, match="cpu"):
        procfs.cpu_times(b"intr 1 2\ncpu0 1 2 3 4\n")


def test_read_file_reads_past_one_chunk(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(200_000))
    assert procfs.read_file(str(big)) == big.read_bytes()
