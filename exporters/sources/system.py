"""CPU, memory, disk and network utilisation from ``/proc``: the ``system`` source.

Readings follow ARCHITECTURE.md's data model. Everything that needs two readings is a
:class:`~exporters.schema.Counter` that the agent turns into a rate: a CPU's busy seconds
(``usage_pct``, scaled by 100 / cores), disk bytes (``read_bps``, ``write_bps``) and network bytes
(``recv_bps``, ``sent_bps``). ``read()`` keeps no state between calls.

Each sample reads ``stat``, ``meminfo``, ``cpuinfo``, ``loadavg``, ``diskstats`` and ``net/dev``
under ``procfs_root`` once, parsed by :mod:`.procfs` to the fields and units psutil gives, at a
fraction of psutil's cost. psutil itself is asked only where it would compute something else:
memory on kernels without ``MemAvailable`` (it estimates from ``zoneinfo``), swap without
``Swap*`` lines, disks without ``diskstats`` (it reads ``/sys/block``), and frequencies where
``cpuinfo`` has no ``cpu MHz`` per CPU (ARM: it reads cpufreq in ``/sys``). For those calls
``psutil.PROCFS_PATH`` is pointed at ``procfs_root`` while they run, under a lock shared with
:mod:`.cpu_model`; what psutil takes from ``/sys`` is the real machine's. The CPU count is the
number of ``cpuN`` lines of ``stat``. Disks skip ``loop*``, ``ram*``, ``zram*`` and partitions
whose whole disk is listed (kernel naming: ``sda1`` of ``sda``, ``nvme0n1p1`` of ``nvme0n1``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import CPU, DISK, MEM, NET, Counter, Reading
from exporters.sources import procfs
from exporters.sources.base import SourceSpec
from exporters.sources.procfs import busy_seconds, read_file

__all__ = ["SystemSource", "busy_seconds", "psutil_procfs"]

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


def _is_partition(name: str, names: set[str]) -> bool:
    """``sda1`` of a listed ``sda``, ``nvme0n1p1`` of ``nvme0n1``; never ``dm-10`` of ``dm-1``."""
    m = re.match(r"^(.*\d)p\d+$", name) or re.match(r"^(.*[^\d])\d+$", name)
    return bool(m) and m.group(1) in names


class SystemSource:
    """Utilisation of CPUs, memory, disks and network interfaces, read from ``procfs_root``."""

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
        return True, f"{count[CPU] - 1} CPUs, {disks}, {nets} (from {self.procfs_root})"

    def read(self) -> list[Reading]:
        try:
            return self._read(str(self.procfs_root))
        except _READ_ERRORS as e:
            raise SourceError(
                f"system: cannot read {self.procfs_root} ({type(e).__name__}: {e}); "
                "check that procfs is mounted there, or set procfs_root"
            ) from e

    def _read(self, root: str) -> list[Reading]:
        out = self._cpus(root, procfs.cpu_times(read_file(f"{root}/stat")))
        mem = procfs.memory(read_file(f"{root}/meminfo")) or self._psutil_memory()
        out.append(Reading(MEM, {}, mem))
        if self.disks:
            io = self._disk_bytes(root)
            names = set(io)
            for dev, (read, write) in sorted(io.items()):
                if not _SKIP_DISK.match(dev) and not _is_partition(dev, names):
                    out.append(_io(DISK, {"device": dev}, read=read, write=write))
        if self.nets:
            for nic, (recv, sent) in sorted(procfs.net_bytes(read_file(f"{root}/net/dev")).items()):
                if nic != "lo":
                    out.append(_io(NET, {"interface": nic}, recv=recv, sent=sent))
        return out

    def _cpus(self, root: str, times: list[list[float]]) -> list[Reading]:
        n = len(times) - 1
        if n == 0:
            raise ValueError(f"no cpuN lines in {root}/stat")
        freqs = self._freqs(root, n)
        online = [f for f in freqs if f > 0]
        total: dict[str, float] = {"load1": self._load1(root)}
        if online:
            total["freq_mhz"] = sum(online) / len(online)
        out = [_cpu("total", busy_seconds(times[0])[0], 100.0 / n, total)]
        for i, row in enumerate(times[1:]):
            fields = {"freq_mhz": freqs[i]} if len(freqs) == n and freqs[i] > 0 else {}
            out.append(_cpu(str(i), busy_seconds(row)[0], 100.0, fields))
        return out

    def _freqs(self, root: str, n: int) -> list[float]:
        """Current MHz per CPU (0 when offline), or [] where nothing tells (some VMs)."""
        try:
            mhz = procfs.cpu_mhz(read_file(f"{root}/cpuinfo"))
        except (OSError, ValueError):
            mhz = []
        if len(mhz) == n:
            return mhz
        try:  # psutil reads cpufreq in /sys where cpuinfo has no MHz per CPU
            with psutil_procfs(self.procfs_root):
                return [float(f.current or 0.0) for f in psutil.cpu_freq(percpu=True) or []]
        except (OSError, NotImplementedError, ValueError, AttributeError):
            return []

    def _load1(self, root: str) -> float:
        try:
            return float(read_file(f"{root}/loadavg").split()[0])
        except (OSError, IndexError, ValueError):
            return os.getloadavg()[0]

    def _psutil_memory(self) -> dict[str, int]:
        """psutil's memory and swap figures, where it estimates them (see :mod:`.procfs`)."""
        with psutil_procfs(self.procfs_root):
            vm, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {
            "used_bytes": vm.used,
            "available_bytes": vm.available,
            "total_bytes": vm.total,
            "swap_used_bytes": swap.used,
        }

    def _disk_bytes(self, root: str) -> dict[str, tuple[int, int]]:
        """``(read, written)`` bytes per device; psutil's ``/sys/block`` without diskstats."""
        try:
            return procfs.disk_bytes(read_file(f"{root}/diskstats"))
        except FileNotFoundError:
            with psutil_procfs(self.procfs_root):
                io = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
            return {dev: (d.read_bytes, d.write_bytes) for dev, d in io.items()}


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
