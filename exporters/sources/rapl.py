"""RAPL energy counters from the Linux powercap tree (``<sysfs_root>/class/powercap``).

Each RAPL zone is one ``energy`` series. Packages keep the kernel's name (``package-0``), their
sub-zones are named ``<name>-<package>`` (``core-0``, ``uncore-0``, ``dram-1``) and the platform
zone stays ``psys``. Intel and AMD (Linux 5.11+) share the ``intel-rapl`` driver. Other control
types (``intel-rapl-mmio``, ``intel-rapl-tpmi``) repeat the MSR domains under the same names: such
a zone is used only where the MSR zone is missing or unreadable, so nothing is counted twice.

The zone layout is found by :meth:`RaplSource.available` (or the first :meth:`RaplSource.read`)
and then kept: a zone that disappears later is an error, never a silently missing domain. The
readings themselves carry no state between calls; wraparound and watts are the agent's job.

Each ``energy_uj`` is opened once, when its zone is found, and read with ``pread`` at offset 0
(:class:`CounterFile`): sysfs calls the attribute's ``show()`` anew for every read from offset 0
(since Linux 2.6.26), so this reads the live counter at a fraction of the cost of an open, a
read and a close per sample. The descriptor is a resource, not state: every read returns what
the file holds then. It is opened again when a read fails (a zone removed and added back
answers ``ENODEV`` on the old descriptor), and, for a plain file (a fixture tree), when the file
was replaced or deleted; :meth:`RaplSource.close` (called by the agent at stop) lets go of them.

Each counter carries its ceiling (``Counter.max_rate``, :mod:`.ceilings`), read once per zone
when it is found: :data:`~.ceilings.HEADROOM` times the highest power the zone's constraints
state, the largest of their ``constraint_*_max_power_uw`` (PL1's is the TDP) and
``constraint_*_power_limit_uw`` (what the firmware enforces: PL2 above PL1, 4095 W on boards
with "unlimited" power). A zone that states no ``max_power_uw`` (AMD, most sub-zones, psys) gets
``sources.rapl.max_watts`` (:data:`DEFAULT_MAX_WATTS`); a power limit alone is not trusted, as
it may be a disabled one.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import ENERGY, Counter, Reading, energy_tags
from exporters.sources.base import SourceSpec
from exporters.sources.ceilings import HEADROOM, max_rate, validate_max_watts

MSR = "intel-rapl"
SCALE = 1e-6  # energy_uj: microjoules
# The ceiling of a zone that states no maximum power: twice the largest CPU packages of today
# (500 W TDP: AMD EPYC 9965, Intel Xeon 6980P), so that no real draw reaches it, while a counter
# read as 0 or as garbage still jumps by far more (the ranges are 65 kJ and up). At 1000 W a
# counter of 65 kJ cannot wrap twice unseen when read at least every 65 s.
DEFAULT_MAX_WATTS = 1000.0
UPDATE_WAIT_S = 0.0012  # RAPL updates about every 976 us: an edge waits for one update at most
_CONSTRAINT = re.compile(r"constraint_\d+_(max_power|power_limit)_uw")
_CONTROL_TYPE = re.compile(r"intel-rapl(?:-[a-z]+)?")
_ZONE = re.compile(r"(intel-rapl(?:-[a-z]+)?):(\d+(?::\d+)*)")
ROOT_ONLY = (
    "RAPL energy counters in {} are readable by root only since Linux 5.10: run as root, or add "
    "a udev rule / chmod at boot (see README, 'RAPL permissions')"
)
NO_RAPL = (
    "{}: this machine exposes no RAPL (a VM, a non-x86 CPU, or the "
    "intel_rapl_common/intel_rapl_msr module not loaded: try `modprobe intel_rapl_msr`)"
)


@dataclass(frozen=True)
class Zone:
    """One powercap zone directory and the domain it is reported as."""

    path: Path
    domain: str
    parent: str | None
    wrap_uj: int = 0  # max_energy_range_uj: fixed by the hardware, read once when found
    max_uw: float | None = None  # the counter's ceiling in µJ/s (µW), found with it


def _zone_dirs(powercap: Path) -> dict[str, Path]:
    """Zone id -> directory, from the flat class listing and from nested sub-zone directories."""
    found: dict[str, Path] = {}
    stack = [powercap]
    while stack:
        directory = stack.pop()
        for entry in sorted(directory.iterdir()):
            if _ZONE.fullmatch(entry.name) and entry.name not in found and entry.is_dir():
                found[entry.name] = entry
                stack.append(entry)
            elif directory == powercap and _CONTROL_TYPE.fullmatch(entry.name) and entry.is_dir():
                stack.append(entry)  # a control type (``intel-rapl``), not a zone: look inside
    return found


def _name_zones(dirs: dict[str, Path]) -> list[Zone]:
    """Zones in order of preference (MSR first, then by index), each named as its domain."""

    def order(zone_id: str) -> tuple[bool, str, tuple[int, ...]]:
        control_type, *index = zone_id.split(":")
        return control_type != MSR, control_type, tuple(map(int, index))

    def name(zone_id: str) -> str:
        try:
            return (dirs[zone_id] / "name").read_text().strip() or zone_id
        except OSError:
            return zone_id

    ids = sorted(dirs, key=order)
    domains: dict[str, str] = {}
    for zone_id in ids:
        parent_id, _, index = zone_id.rpartition(":")
        if parent_id.count(":") == 0:
            domains[zone_id] = name(zone_id)
            continue
        # a sub-zone: suffixed with its package's number (dram-1, core-0-die-1), else its index
        package = name(parent_id) if parent_id in dirs else ""
        suffix = package.removeprefix("package-") if package.startswith("package-") else index
        domains[zone_id] = f"{name(zone_id)}-{suffix}"
    same: dict[tuple[str, str], list[str]] = {}  # one name twice in one type: psys-0, psys-1
    for zone_id in ids:
        same.setdefault((zone_id.split(":")[0], domains[zone_id]), []).append(zone_id)
    for (_, base), clash in same.items():
        for i, zone_id in enumerate(clash if len(clash) > 1 else []):
            domains[zone_id] = f"{base}-{i}"
    return [Zone(dirs[z], domains[z], domains.get(z.rpartition(":")[0])) for z in ids]


def _read_counter(path: Path | str) -> int:
    """The integer in ``path``, read once (``max_energy_range_uj``)."""
    try:
        with open(path, "rb") as f:
            return int(f.read())
    except (OSError, ValueError) as e:
        raise _failure(path, e) from e


def _failure(path: Path | str, e: OSError | ValueError) -> SourceError:
    """A failure to read a counter file, as the :class:`SourceError` that names its fix."""
    if isinstance(e, PermissionError):
        return SourceUnavailable(ROOT_ONLY.format(path))
    if isinstance(e, OSError):
        return SourceError(
            f"cannot read {path}: {e.strerror or e} (the RAPL zone vanished: was intel_rapl_msr "
            "unloaded? `modprobe intel_rapl_msr`, then restart the agent)"
        )
    return SourceError(f"{path} does not hold an integer: is this a powercap tree?")


class CounterFile:
    """One ``energy_uj``, kept open and read with ``pread`` at offset 0 (module docstring).

    A kernel attribute states a size (sysfs: a page) other than what a read returns; a plain
    file's size is what it holds. Only a plain file can be replaced or deleted while open, so
    only its link count is looked at before each read: 0 means the name now leads elsewhere.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._fd: int | None = None
        self._plain = False

    def read(self) -> int:
        """The counter as the file holds it now (:class:`SourceError` naming the file)."""
        try:
            fd = self._fd
            if fd is None or (self._plain and os.fstat(fd).st_nlink == 0):
                fd = self._open()
            try:
                data = os.pread(fd, 32, 0)
            except OSError:  # ENODEV, ESTALE: the zone went away (and may be back): open anew
                data = os.pread(self._open(), 32, 0)
            return int(data)
        except (OSError, ValueError) as e:
            raise _failure(self.path, e) from e

    def _open(self) -> int:
        self.close()
        fd = self._fd = os.open(self.path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        self._plain = size == len(os.pread(fd, 32, 0))
        return fd

    def close(self) -> None:
        """Let go of the descriptor (the next :meth:`read` opens the file again)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def zone_ceiling_uw(path: Path, default_watts: float) -> float:
    """The zone's ceiling in µW: :data:`HEADROOM` times the highest power its constraints state,
    or ``default_watts`` where it states no maximum power (module docstring). Unreadable or
    zero constraint files (a limit the part does not have) are left out."""
    stated: dict[str, list[int]] = {"max_power": [], "power_limit": []}
    try:
        entries = [(e, m) for e in path.iterdir() if (m := _CONSTRAINT.fullmatch(e.name))]
    except OSError:
        entries = []
    for entry, match in entries:
        try:
            value = int(entry.read_text())
        except (OSError, ValueError):
            continue
        if value > 0:
            stated[match.group(1)].append(value)
    if not stated["max_power"]:
        return max_rate(default_watts, SCALE)
    return HEADROOM * max(stated["max_power"] + stated["power_limit"])


class RaplSource:
    """Energy of every RAPL domain under ``<sysfs_root>/class/powercap``.

    ``max_watts``: the ceiling of a zone whose constraints state no maximum power.
    """

    name = "rapl"
    kind = "power"

    def __init__(
        self, sysfs_root: str | Path = "/sys", max_watts: float = DEFAULT_MAX_WATTS
    ) -> None:
        self.powercap = Path(sysfs_root) / "class" / "powercap"
        self.max_watts = max_watts
        self._zones: list[Zone] = []
        self._files: dict[str, CounterFile] = {}  # domain -> its zone's open energy_uj

    def available(self) -> tuple[bool, str]:
        """Find the zones anew and say which domains can be read, or why none can."""
        self.close()
        self._zones, self._files = [], {}
        try:
            zones = _name_zones(_zone_dirs(self.powercap))
        except OSError:
            return False, NO_RAPL.format(f"no powercap tree at {self.powercap}")
        if not zones:
            return False, NO_RAPL.format(f"no RAPL zones in {self.powercap}")
        chosen: dict[str, Zone] = {}
        unread: dict[str, str] = {}  # domain -> why no zone of it can be read
        for zone in (z for z in zones if z.domain not in chosen):  # mmio only where MSR fails
            energy = CounterFile(zone.path / "energy_uj")
            try:
                energy.read()
                wrap_uj = _read_counter(zone.path / "max_energy_range_uj")
            except SourceError as e:
                energy.close()
                root_only = isinstance(e, SourceUnavailable)  # said once, for the whole tree
                why = ROOT_ONLY.format(self.powercap) if root_only else str(e)
                unread.setdefault(zone.domain, why)
            else:
                max_uw = zone_ceiling_uw(zone.path, self.max_watts)
                chosen[zone.domain] = replace(zone, wrap_uj=wrap_uj, max_uw=max_uw)
                self._files[zone.domain] = energy
                unread.pop(zone.domain, None)
        in_order = dict.fromkeys(zone.domain for zone in zones)  # MSR order, mmio fallbacks too
        self._zones = [chosen[domain] for domain in in_order if domain in chosen]
        why = "; ".join(dict.fromkeys(unread.values()))
        if not chosen:
            return False, why
        found = ", ".join(z.domain for z in self._zones)
        return True, f"{len(chosen)} domain{'s' * (len(chosen) > 1)}: {found}" + (
            f"; not readable: {', '.join(unread)} ({why})" if unread else ""
        )

    def domains(self) -> list[tuple[str, str | None]]:
        """``(domain, parent domain)`` per domain read: nested domains, never to be summed."""
        if not self._zones:
            self.available()
        return [(zone.domain, zone.parent) for zone in self._zones]

    def read(self) -> list[Reading]:
        """One reading per domain: the raw counter, its scale to joules, wrap and ceiling."""
        if not self._zones:
            ok, why = self.available()
            if not ok:
                raise SourceUnavailable(why)
        readings = []
        for zone in self._zones:
            counter = Counter(
                raw=self._files[zone.domain].read(),
                scale=SCALE,
                wrap=zone.wrap_uj,
                rate_field="watts",
                max_rate=zone.max_uw,
            )
            tags = energy_tags(self.name, zone.domain)
            readings.append(Reading(ENERGY, tags, counters={"joules_total": counter}))
        return readings

    def await_update(self, timeout_s: float = UPDATE_WAIT_S) -> bool:
        """Return just after the first zone's counter next changes (True), or after
        ``timeout_s`` (False). The hardware updates RAPL about every millisecond, so a read
        right after an update is exact to the instant, where one at a random moment may be up
        to an update period stale: a window's edge read waits for it (:meth:`Agent.sample_now`)
        and short windows become exact. Costs up to one update period of a spinning core."""
        if not self._zones:
            return False
        counter = self._files[self._zones[0].domain]
        deadline = time.monotonic() + timeout_s
        try:
            first = counter.read()
            while time.monotonic() < deadline:
                if counter.read() != first:
                    return True
        except SourceError:
            pass  # read() says what is wrong
        return False

    def close(self) -> None:
        """Close every counter file (a later :meth:`read` opens them again)."""
        for energy in self._files.values():
            energy.close()


SPEC = SourceSpec(
    key="rapl",
    update_s=0.001,
    defaults={"enabled": True, "max_watts": DEFAULT_MAX_WATTS},
    validate=validate_max_watts,
    build=lambda settings, cfg: RaplSource(cfg["sysfs_root"], settings["max_watts"]),
)
