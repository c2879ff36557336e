"""A fixture RAPL tree whose counters a thread advances along a known power profile.

The writer replaces ``energy_uj`` atomically (write a temporary file, rename) every millisecond
or so, wrapping at ``max_energy_range_uj`` as the hardware does, and knows the exact energy
between any two wall-clock instants, so tests can compare measured windows with the truth.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path


def make_tree(root: Path, domains: dict[str, float]) -> dict[str, Path]:
    """A powercap tree with one top-level zone per domain; returns each zone's directory."""
    zones = {}
    for i, (name, wrap_j) in enumerate(domains.items()):
        zone = root / "class" / "powercap" / f"intel-rapl:{i}"
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"{name}\n")
        (zone / "enabled").write_text("1\n")
        (zone / "energy_uj").write_text("0\n")
        (zone / "max_energy_range_uj").write_text(f"{int(wrap_j * 1e6)}\n")
        zones[name] = zone
    return zones


class ProfileWriter:
    """Sets each zone's counter to ``energy(domain, seconds since start)`` joules, wrapped.

    It writes from a forked process of raised priority, so that neither the test's own threads
    (the GIL) nor a loaded machine make the counter lag its profile by more than a millisecond
    or two.
    """

    def __init__(
        self,
        zones: dict[str, Path],
        wraps_j: dict[str, float],
        energy: Callable[[str, float], float],
        step_s: float = 0.001,
    ) -> None:
        self.zones, self.wraps_j, self.energy, self.step_s = zones, wraps_j, energy, step_s
        self.start_ns = time.time_ns()
        context = multiprocessing.get_context("fork")
        self._halt = context.Event()
        self._process = context.Process(target=self.run, daemon=True)

    def start(self) -> None:
        self._process.start()

    def true_joules(self, domain: str, start_ns: int, end_ns: int) -> float:
        t0, t1 = (start_ns - self.start_ns) / 1e9, (end_ns - self.start_ns) / 1e9
        return self.energy(domain, t1) - self.energy(domain, t0)

    def run(self) -> None:
        try:
            os.nice(-10)  # allowed as root (CI); elsewhere the default priority does
        except OSError:
            pass
        while not self._halt.is_set():
            now = (time.time_ns() - self.start_ns) / 1e9
            for domain, zone in self.zones.items():
                raw = int(self.energy(domain, now) * 1e6) % int(self.wraps_j[domain] * 1e6)
                tmp = zone / ".energy_uj.tmp"
                tmp.write_text(f"{raw}\n")
                os.replace(tmp, zone / "energy_uj")
            time.sleep(self.step_s)

    def stop(self) -> None:
        self._halt.set()
        self._process.join(timeout=10)


def steps(levels_w: list[float], period_s: float) -> Callable[[float], float]:
    """Energy since 0 of a power that cycles through ``levels_w``, each for ``period_s``."""
    cycle_j = sum(levels_w) * period_s

    def energy(t: float) -> float:
        cycles, rest = divmod(t, period_s * len(levels_w))
        done, joules = 0.0, cycles * cycle_j
        for level in levels_w:
            joules += level * max(0.0, min(period_s, rest - done))
            done += period_s
        return joules

    return energy
