"""An ESTIMATE of CPU power for machines without readable RAPL: the ``cpu_model`` source.

A linear model, ``watts = idle_watts + (max_watts - idle_watts) * utilisation``, written as a
pure function of the kernel's cumulative CPU times so that ``read()`` keeps no state::

    joules = idle_watts * elapsed_s + (max_watts - idle_watts) * busy_s / ncores
    elapsed_s = (all CPU-seconds of /proc/stat's total line) / ncores

It is emitted as the counter ``joules_total`` with ``rate_field="watts"``: the agent's rate of
that counter is the model's power. Busy and total CPU-seconds are those of :mod:`.system` (guest
time counted once, busy = total less idle and iowait), from one read of ``stat`` a sample parsed
by :mod:`.procfs` (psutil read it twice: 0.13% of a core more at 0.1 s). Every point is tagged
``source=model``, ``domain=cpu-estimate``, ``estimated=true``: it is never a measurement, and
the agent enables it only where no RAPL domain is readable. CPUs going offline or online change
``ncores`` and the total line, which the agent sees as a counter reset.

The counter's ceiling (``Counter.max_rate``, :mod:`.ceilings`) is ``max_watts`` times
:data:`~.ceilings.HEADROOM`: the model never draws more than ``max_watts``, but the kernel counts
CPU time in ticks (10 ms per CPU), so one 0.1 s step can show some 10% more than it.

Defaults: ``idle_watts=10`` (a modern desktop package idles at roughly 5 to 20 W) and
``max_watts=65`` (the most common desktop TDP class, e.g. Intel's and AMD's 65 W parts). They
are placeholders: set ``max_watts`` to your CPU's TDP (or PL1; all sockets together on servers)
and ``idle_watts`` to its idle power, in ``sources.cpu_model`` of the config. TDP is a thermal
design figure, not a measured peak: turbo power can exceed it.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from exporters.config_checks import is_number
from exporters.errors import ConfigError, SourceError, shown
from exporters.schema import ENERGY, Counter, Reading, energy_tags
from exporters.sources import procfs
from exporters.sources.base import Settings, SourceSpec
from exporters.sources.ceilings import HEADROOM

DEFAULT_IDLE_WATTS = 10.0
DEFAULT_MAX_WATTS = 65.0
_FIX = "set idle_watts to your CPU's idle power and max_watts to its TDP"


def _watts(key: str, value: object, minimum: float, why: str) -> float:
    if not is_number(value):
        raise ConfigError(f"sources.cpu_model.{key} is {shown(value)}: set it to a number of watts")
    if value < minimum:
        raise ConfigError(f"sources.cpu_model.{key} is {value}: it must be {why}; {_FIX}")
    return float(value)


def model_watts(idle_watts: object, max_watts: object) -> tuple[float, float]:
    """``(idle_watts, max_watts)`` checked: numbers, ``0 <= idle_watts <= max_watts``."""
    idle = _watts("idle_watts", idle_watts, 0.0, ">= 0")
    return idle, _watts("max_watts", max_watts, idle, f">= idle_watts ({idle_watts})")


def used_without_rapl(found: Collection[str]) -> tuple[bool, str]:
    """``enabled: auto``: the estimate is used only where no RAPL domain is readable."""
    if "rapl" in found:
        return False, "RAPL measures this machine"
    return True, "no RAPL domain is readable"


class CpuModelSource:
    """Estimated CPU energy from utilisation, tagged ``estimated=true``."""

    name = "cpu_model"
    kind = "power"

    def __init__(
        self,
        idle_watts: float = DEFAULT_IDLE_WATTS,
        max_watts: float = DEFAULT_MAX_WATTS,
        procfs_root: str | Path = "/proc",
    ):
        self.idle_watts, self.max_watts = model_watts(idle_watts, max_watts)
        self.procfs_root = Path(procfs_root)

    def available(self) -> tuple[bool, str]:
        return True, (
            f"ESTIMATE, not a measurement: {self.idle_watts:g} W idle to {self.max_watts:g} W "
            f"busy, from CPU utilisation in {self.procfs_root}/stat; use RAPL where it is readable"
        )

    def joules(self) -> float:
        """The model's cumulative energy, in joules, at this instant (a pure function of stat)."""
        try:  # one read of stat, parsed as psutil would (exporters.sources.procfs)
            times = procfs.cpu_times(procfs.read_file(f"{self.procfs_root}/stat"))
            ncores = len(times) - 1
            busy, total = procfs.busy_seconds(times[0])
        except (OSError, ValueError, TypeError, IndexError) as e:
            raise SourceError(
                f"cpu_model: cannot read {self.procfs_root}/stat ({e}); "
                "check that procfs is mounted there, or set procfs_root"
            ) from e
        if ncores == 0:
            raise SourceError(f"cpu_model: no cpuN lines in {self.procfs_root}/stat")
        span = self.max_watts - self.idle_watts
        return self.idle_watts * total / ncores + span * busy / ncores

    def read(self) -> list[Reading]:
        ceiling = HEADROOM * self.max_watts  # raw joules: watts are joules per second
        counter = Counter(raw=self.joules(), rate_field="watts", max_rate=ceiling)
        tags = energy_tags("model", "cpu-estimate", estimated=True)
        return [Reading(ENERGY, tags, {}, {"joules_total": counter})]


def _validate(settings: Settings, where: str) -> None:
    model_watts(settings["idle_watts"], settings["max_watts"])


SPEC = SourceSpec(
    key="cpu_model",
    defaults={"enabled": "auto", "idle_watts": DEFAULT_IDLE_WATTS, "max_watts": DEFAULT_MAX_WATTS},
    validate=_validate,
    build=lambda settings, cfg: CpuModelSource(
        settings["idle_watts"], settings["max_watts"], procfs_root=cfg["procfs_root"]
    ),
    auto=used_without_rapl,
)
