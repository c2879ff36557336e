"""The ``/proc`` files the ``system`` source reads, parsed directly, to psutil's fields and units.

psutil reads ``stat`` twice per sample (total and per CPU), ``meminfo`` twice (memory and
swap) plus ``vmstat``, and builds named tuples of fields the source never uses; one pass over
each file here costs a fraction of that. Every parser is a pure function of the file's bytes
and gives what psutil gives for them (its ``_pslinux`` module, which these follow line by line):

- :func:`cpu_times`: seconds per column of ``stat``'s ``cpu`` line and of each ``cpuN`` line
  (``float(jiffies) / SC_CLK_TCK``, at most psutil's ten columns);
- :func:`busy_seconds`: busy and total CPU-seconds of one such row;
- :func:`memory`: ``virtual_memory()``'s ``used``, ``available`` and ``total`` and
  ``swap_memory()``'s ``used``, in bytes, from ``meminfo``; ``None`` where psutil would estimate
  instead (no ``MemAvailable``, or 0: kernels before 3.14; no swap lines);
- :func:`disk_bytes`: bytes read and written per device of ``diskstats`` (sectors of 512 bytes,
  the kernel's unit there whatever the disk's), in psutil's three line layouts;
- :func:`net_bytes`: bytes received and sent per interface of ``net/dev``;
- :func:`cpu_mhz`: the ``cpu MHz`` lines of ``cpuinfo``, one per online CPU on x86. Where the
  machine has cpufreq, psutil takes the same values but truncates them to whole kHz.

A file in a format none of these knows raises ``ValueError`` (psutil raises too), which the
source reports as a :class:`~exporters.errors.SourceError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SECTOR = 512  # diskstats counts 512-byte sectors on every disk
CPU_COLUMNS = 10  # user nice system idle iowait irq softirq steal guest guest_nice
_GUEST = 8  # guest and guest_nice are already inside user and nice
_MEMINFO = re.compile(rb"^(MemTotal|MemFree|MemAvailable|SwapTotal|SwapFree):[ \t]*(\d+)", re.M)
_CPU_MHZ = re.compile(rb"^cpu mhz[^:\n]*:([^\n]*)", re.M | re.I)  # psutil: any "cpu mhz..." line


def read_file(path: str) -> bytes:
    """The whole file at ``path`` (procfs files state no size: read until the end)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
        return data
    finally:
        os.close(fd)


def cpu_times(stat: bytes) -> list[list[float]]:
    """Seconds per column of the ``cpu`` line (first), then of each ``cpuN`` line, in order."""
    rows = [
        [float(x) / CLOCK_TICKS for x in line.split()[1 : CPU_COLUMNS + 1]]
        for line in stat.splitlines()
        if line.startswith(b"cpu")
    ]
    if not rows or not stat.startswith(b"cpu "):
        raise ValueError("no 'cpu' line first in stat")
    return rows


def busy_seconds(times: Sequence[float]) -> tuple[float, float]:
    """``(busy, total)`` CPU-seconds of one row of :func:`cpu_times` (or a psutil ``cpu_times``).

    Linux counts guest time inside user (and guest_nice inside nice), so both are left out of
    the total; busy is the total less idle and iowait (steal counts as busy, as in psutil).
    """
    total = sum(times[:_GUEST])
    busy = total - times[3] - (times[4] if len(times) > 4 else 0.0)
    # The kernel counts in clock ticks (10 ms): rounding to the microsecond removes the float
    # noise of the sum, which could otherwise make the counter seem to step back (a "reset").
    return round(busy, 6), round(total, 6)


def memory(meminfo: bytes) -> dict[str, int] | None:
    """Used, available and total memory and used swap in bytes; ``None`` where psutil estimates."""
    kb = {name: int(value) for name, value in _MEMINFO.findall(meminfo)}
    if not kb.get(b"MemAvailable") or b"SwapTotal" not in kb or b"SwapFree" not in kb:
        return None
    total, available = kb[b"MemTotal"] * 1024, kb[b"MemAvailable"] * 1024
    if available > total:  # psutil: distorted figures in a container, take MemFree
        available = kb[b"MemFree"] * 1024
    return {
        "used_bytes": total - available,
        "available_bytes": available,
        "total_bytes": total,
        "swap_used_bytes": (kb[b"SwapTotal"] - kb[b"SwapFree"]) * 1024,
    }


def disk_bytes(diskstats: bytes) -> dict[str, tuple[int, int]]:
    """``(read, written)`` bytes per device name, every device listed (partitions too)."""
    out = {}
    for line in diskstats.splitlines():
        f = line.split()
        if len(f) == 15:  # Linux 2.4: #blocks before the name
            name, read, written = f[3], f[5], f[9]
        elif len(f) == 14 or len(f) >= 18:  # a disk (4.18 and 5.5 added columns)
            name, read, written = f[2], f[5], f[9]
        elif len(f) == 7:  # a partition, on Linux 2.6
            name, read, written = f[2], f[4], f[6]
        else:
            raise ValueError(f"diskstats: not sure how to interpret line {line!r}")
        out[os.fsdecode(name)] = (int(read) * SECTOR, int(written) * SECTOR)
    return out


def net_bytes(net_dev: bytes) -> dict[str, tuple[int, int]]:
    """``(received, sent)`` bytes per interface name (``lo`` included)."""
    out = {}
    for line in net_dev.splitlines()[2:]:  # two header lines
        name, _, rest = line.rpartition(b":")  # no colon: no name
        f = rest.split()
        if not name or len(f) != 16:
            raise ValueError(f"net/dev: not sure how to interpret line {line!r}")
        out[os.fsdecode(name.strip())] = (int(f[0]), int(f[8]))
    return out


def cpu_mhz(cpuinfo: bytes) -> list[float]:
    """The ``cpu MHz`` of every CPU that ``cpuinfo`` gives one for, in order."""
    return [float(value) for value in _CPU_MHZ.findall(cpuinfo)]
