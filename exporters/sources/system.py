"""CPU, memory, disk and network utilisation through psutil: the ``system`` source.

Readings follow ARCHITECTURE.md's data model. Everything that needs two readings is a
:class:`~exporters.schema.Counter` that the agent turns into a rate: a CPU's busy seconds
(``usage_pct``, scaled by 100 / cores), disk bytes (``read_bps``, ``write_bps``) and network bytes
(``recv_bps``, ``sent_bps``). psutil's stateful helpers (``cpu_percent``, ``nowrap=True``) are
never used, so ``read()`` keeps no state between calls.

``procfs_root`` is honoured through ``psutil.PROCFS_PATH``, set only while a read runs, under a
lock shared with :mod:`.cpu_model`. psutil reads ``stat``, ``meminfo``, ``vmstat``, ``diskstats``,
``net/dev`` and ``cpuinfo`` there; ``load1`` comes from ``<procfs_root>/loadavg``. Not covered by
the root: the CPU count (psutil uses sysconf, so this source counts ``cpuN`` lines of ``stat``
instead) and, on machines with ``/sys/devices/system/cpu/cpufreq``, frequencies, which psutil
may then take from the real ``/sys``. Disks skip ``loop*``, ``ram*``, ``zram*`` and partitions
whose whole disk is listed (kernel naming: ``sda1`` of ``sda``, ``nvme0n1p1`` of ``nvme0n1``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import CPU, DISK, MEM, NET, Counter, Reading
from exporters.sources.base import SourceSpec

_PSUTIL_LOCK = threading.Lock()
_SKIP_DISK = re.compile(r"^(loop|ram|zram)\d")
_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, AssertionError)


@contextmanager
def psutil_procfs(root: str | Path) -> Iterator[None]:
    """Point psutil at ``root`` for the duration of the block, then restore the previous path."""
    with _PSUTIL_LOCK:
        previous = getattr(psutil, "PROCFS_PATH", None)
        if previous is None and str(root) != "/proc":
            raise SourceUnavailable(f"procfs_root={root} needs Linux; leave it at /proc here")
        if previous is not None:
            psutil.PROCFS_PATH = str(root)
        try:
            yield
        finally:
            if previous is not None:
                psutil.PROCFS_PATH = previous


def busy_seconds(times: Any) -> tuple[float, float]:
    """``(busy, total)`` CPU-seconds of one psutil ``cpu_times`` tuple.

    Linux counts guest time inside user (and guest_nice inside nice), so both are left out of
    the total; busy is the total less idle and iowait (steal counts as busy, as in psutil).
    """
    values = times._asdict()
    total = sum(v for k, v in values.items() if k not in ("guest", "guest_nice"))
    busy = total - values["idle"] - values.get("iowait", 0.0)
    # The kernel counts in clock ticks (10 ms): rounding to the microsecond removes the float
    # noise of the sum, which could otherwise make the counter seem to step back (a "reset").
    return round(busy, 6), round(total, 6)


def _is_partition(name: str, names: set[str]) -> bool:
    """``sda1`` of a listed ``sda``, ``nvme0n1p1`` of ``nvme0n1``; never ``dm-10`` of ``dm-1``."""
    m = re.match(r"^(.*\d)p\d+$", name) or re.match(r"^(.*[^\d])\d+$", name)
    return bool(m) and m.group(1) in names


class SystemSource:
    """Utilisation of CPUs, memory, disks and network interfaces, read through psutil."""

    name = "system"
    kind = "system"

    def __init__(self, procfs_root: str | Path = "/proc", disks: bool = True, nets: bool = True):
        self.procfs_root = Path(procfs_root)
        self.disks = disks
        self.nets = nets

    def available(self) -> tuple[bool, str]:
        try:
            readings = self.read()
        except SourceError as e:
            return False, str(e)
        count = {m: sum(r.measurement == m for r in readings) for m in (CPU, DISK, NET)}
        disks = f"{count[DISK]} disks" if self.disks else "disks off"
        nets = f"{count[NET]} interfaces" if self.nets else "interfaces off"
        return True, f"{count[CPU] - 1} CPUs, {disks}, {nets} (psutil, {self.procfs_root})"

    def read(self) -> list[Reading]:
        try:
            with psutil_procfs(self.procfs_root):
                return self._read()
        except _READ_ERRORS as e:
            raise SourceError(
                f"system: cannot read {self.procfs_root} through psutil ({e}); "
                "check that procfs is mounted there, or set procfs_root"
            ) from e

    def _read(self) -> list[Reading]:
        vm, swap = psutil.virtual_memory(), psutil.swap_memory()
        mem = {"used_bytes": vm.used, "available_bytes": vm.available, "total_bytes": vm.total}
        out = [*self._cpus(), Reading(MEM, {}, {**mem, "swap_used_bytes": swap.used})]
        if self.disks:
            io = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
            names = set(io)
            for dev, d in sorted(io.items()):
                if not _SKIP_DISK.match(dev) and not _is_partition(dev, names):
                    out.append(_io(DISK, {"device": dev}, read=d.read_bytes, write=d.write_bytes))
        if self.nets:
            for nic, c in sorted(psutil.net_io_counters(pernic=True, nowrap=False).items()):
                if nic != "lo":
                    out.append(_io(NET, {"interface": nic}, recv=c.bytes_recv, sent=c.bytes_sent))
        return out

    def _cpus(self) -> list[Reading]:
        per_cpu = psutil.cpu_times(percpu=True)
        n = len(per_cpu)
        if n == 0:
            raise ValueError(f"no cpuN lines in {self.procfs_root}/stat")
        freqs = self._freqs()
        online = [f for f in freqs if f > 0]
        total: dict[str, float] = {"load1": self._load1()}
        if online:
            total["freq_mhz"] = sum(online) / len(online)
        out = [_cpu("total", busy_seconds(psutil.cpu_times())[0], 100.0 / n, total)]
        for i, times in enumerate(per_cpu):
            fields = {"freq_mhz": freqs[i]} if len(freqs) == n and freqs[i] > 0 else {}
            out.append(_cpu(str(i), busy_seconds(times)[0], 100.0, fields))
        return out

    def _freqs(self) -> list[float]:
        """Current MHz per CPU (0 when offline), or [] where psutil cannot tell (some VMs)."""
        try:
            return [float(f.current or 0.0) for f in psutil.cpu_freq(percpu=True) or []]
        except (OSError, NotImplementedError, ValueError, AttributeError):
            return []

    def _load1(self) -> float:
        try:
            return float((self.procfs_root / "loadavg").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return os.getloadavg()[0]


def _cpu(cpu: str, busy: float, rate_scale: float, fields: dict[str, float]) -> Reading:
    counter = Counter(raw=busy, rate_field="usage_pct", rate_scale=rate_scale)
    return Reading(CPU, {"cpu": cpu}, fields, {"busy_seconds_total": counter})


def _io(measurement: str, tags: dict[str, str], **byte_counts: int) -> Reading:
    counters = {
        f"{k}_bytes_total": Counter(raw=v, rate_field=f"{k}_bps") for k, v in byte_counts.items()
    }
    return Reading(measurement, tags, {}, counters)


SPEC = SourceSpec(
    key="system",
    defaults={"enabled": True},
    build=lambda settings, cfg: SystemSource(procfs_root=cfg["procfs_root"]),
)
