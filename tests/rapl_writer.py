"""A fixture RAPL tree whose counters a forked process advances along a known power profile.

The writer replaces ``energy_uj`` atomically (write a temporary file, rename) every millisecond
or so, wrapping at ``max_energy_range_uj`` as the hardware does. On a busy machine it runs late
like any other process: a counter can then hold a value some milliseconds old when the agent
reads it, so the profile taken at a sample's timestamp is not the truth of what was read.

What is exact is the writer's log: every value it wrote, the instant of the profile it stands
for, and the instant it appeared in the file. :meth:`ProfileWriter.held_joules` finds in the log
the value each stored sample read, and checks that it was in the file while that sample could
have been read. That is what the agent guarantees, however busy the machine: a sample's
timestamp is the middle of its read and one agent's reads never overlap, so sample ``i`` was read
between the timestamps of samples ``i-1`` and ``i+1``. :meth:`ProfileWriter.window_joules` is
then the energy a window over those samples must come to: the values read, interpolated at its
edges as :mod:`exporters.window` does, with no allowance for how late anything ran.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from exporters.schema import Point

LOG_NAME = ".profile-writer.log"
_RECORD = struct.Struct("<qqqq")  # domain index, profile instant, shown instant, total µJ
# The writer's clock and the agent's are the same steady wall clock, started apart; they agree
# to microseconds. Nothing else is allowed for.
CLOCK_SLACK_NS = 1_000_000


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


@dataclass(frozen=True)
class Writes:
    """One domain's log: per value written, the profile instant, when it showed, its µJ total."""

    profile_ns: list[int]
    shown_ns: list[int]
    total_uj: list[int]

    def visible(self, lo_ns: float, hi_ns: float) -> tuple[int, int]:
        """Index range ``[a, b]`` of the values that can have been in the file at some instant
        of ``[lo, hi]``: a value showed after its profile instant, and was gone once the next
        one was logged as shown."""
        a = max(0, bisect_right(self.shown_ns, lo_ns) - 1)
        b = max(0, bisect_right(self.profile_ns, hi_ns) - 1)
        return a, b


class ProfileWriter:
    """Sets each zone's counter to ``energy(domain, seconds since start)`` joules, wrapped.

    It writes from a forked process (of raised priority where allowed), so that the test's own
    threads (the GIL) do not delay it, and logs each value it writes (the module's docstring).
    """

    def __init__(
        self,
        zones: dict[str, Path],
        wraps_j: dict[str, float],
        energy: Callable[[str, float], float],
        step_s: float = 0.001,
    ) -> None:
        self.zones, self.wraps_j, self.energy, self.step_s = zones, wraps_j, energy, step_s
        self.domains = list(zones)
        # the same steady wall clock as exporters.clock: wall time at start, monotonic after
        self.start_ns, self._mono0 = time.time_ns(), time.monotonic_ns()
        self.log = next(iter(zones.values())).parents[2] / LOG_NAME  # <root>/, beside class/
        self.log.write_bytes(b"")
        self._parent = os.getpid()
        context = multiprocessing.get_context("fork")
        self._halt = context.Event()
        self._process = context.Process(target=self.run, daemon=True)

    def now_ns(self) -> int:
        return self.start_ns + time.monotonic_ns() - self._mono0

    def start(self) -> None:
        self._process.start()

    def true_joules(self, domain: str, start_ns: int, end_ns: int) -> float:
        """The profile's energy between two instants (what a counter read on time would show)."""
        t0, t1 = (start_ns - self.start_ns) / 1e9, (end_ns - self.start_ns) / 1e9
        return self.energy(domain, t1) - self.energy(domain, t0)

    def run(self) -> None:
        try:
            os.nice(-10)  # allowed as root (CI); elsewhere the default priority does
        except OSError:
            pass
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND)
        last = dict.fromkeys(self.zones, 0)
        try:
            while not self._halt.is_set() and os.getppid() == self._parent:  # not orphaned
                profile_ns = self.now_ns()
                t = (profile_ns - self.start_ns) / 1e9
                records = []
                for index, (domain, zone) in enumerate(self.zones.items()):
                    # never a step back, not even a µJ of float noise: hardware counters don't
                    total_uj = last[domain] = max(last[domain], int(self.energy(domain, t) * 1e6))
                    tmp = zone / ".energy_uj.tmp"
                    tmp.write_text(f"{total_uj % int(self.wraps_j[domain] * 1e6)}\n")
                    os.replace(tmp, zone / "energy_uj")
                    records.append(_RECORD.pack(index, profile_ns, self.now_ns(), total_uj))
                os.write(fd, b"".join(records))  # whole records: one small append
                time.sleep(self.step_s)
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._halt.set()
        self._process.join(timeout=10)

    def writes(self, domain: str) -> Writes:
        """What the log holds for ``domain`` so far, the file's initial 0 first."""
        index = self.domains.index(domain)
        data = self.log.read_bytes()
        data = data[: len(data) - len(data) % _RECORD.size]  # a record being appended
        rows = [r for r in _RECORD.iter_unpack(data) if r[0] == index]
        return Writes(
            [self.start_ns, *(r[1] for r in rows)],
            [-(2**62), *(r[2] for r in rows)],
            [0, *(r[3] for r in rows)],
        )

    def held_joules(self, domain: str, samples: Sequence[Point]) -> list[float]:
        """The energy (joules since the writer started) each stored sample of ``domain`` read.

        Each agent's ``joules_total`` counts from 0 at its first sample, so the samples of one
        agent (a run of non-decreasing totals) must be the writer's values from one offset on:
        the only offset for which every sample holds a value that was in the file between the
        timestamps of the samples before and after it. AssertionError when there is none.
        """
        log = self.writes(domain)
        held: list[float] = []
        for run in _agent_runs(samples):
            held += [uj / 1e6 for uj in _match(domain, log, run)]
        return held

    def window_joules(
        self, domain: str, samples: Sequence[Point], start_ns: int, end_ns: int
    ) -> float:
        """The energy a window ``[start, end]`` over these samples must report for ``domain``:
        the values its samples read (:meth:`held_joules`), interpolated at its edges."""
        samples = sorted(samples, key=lambda p: p.time_ns)
        times = [p.time_ns for p in samples]
        assert times and times[0] <= start_ns and end_ns <= times[-1], (
            f"{domain}: samples from {times[:1]} to {times[-1:]} do not span the window "
            f"[{start_ns}, {end_ns}]"
        )
        held = self.held_joules(domain, samples)
        return _interp(times, held, end_ns) - _interp(times, held, start_ns)


def _agent_runs(samples: Sequence[Point]) -> list[list[Point]]:
    """The samples, by time, cut where ``joules_total`` drops (a new agent counts from 0)."""
    runs: list[list[Point]] = []
    for p in sorted(samples, key=lambda p: p.time_ns):
        if not runs or p.fields["joules_total"] < runs[-1][-1].fields["joules_total"]:
            runs.append([])
        runs[-1].append(p)
    return runs


def _match(domain: str, log: Writes, run: list[Point]) -> list[int]:
    """The µJ total each sample of one agent read (see ``held_joules``)."""
    first = run[0].fields["joules_total"]
    deltas = [round((p.fields["joules_total"] - first) * 1e6) for p in run]
    stamps = [p.time_ns for p in run]
    bounds = [  # the instants between which each sample was read
        (
            (stamps[i - 1] if i > 0 else log.profile_ns[0]) - CLOCK_SLACK_NS,
            (stamps[i + 1] if i + 1 < len(run) else 2**62) + CLOCK_SLACK_NS,
        )
        for i in range(len(run))
    ]
    ranges = [log.visible(lo, hi) for lo, hi in bounds]
    # candidate offsets from the sample that could have read the fewest values
    pivot = min(range(len(run)), key=lambda i: ranges[i][1] - ranges[i][0])
    a, b = ranges[pivot]
    offsets = dict.fromkeys(log.total_uj[k] - deltas[pivot] for k in range(a, b + 1))
    best = (-1, 0)  # (samples matched, offset) of the best failed candidate, for the message
    for offset in offsets:
        for i, ((a, b), delta) in enumerate(zip(ranges, deltas)):
            k = bisect_left(log.total_uj, offset + delta, a, b + 1)
            if k > b or log.total_uj[k] != offset + delta:
                best = max(best, (i, offset))
                break
        else:
            return [offset + delta for delta in deltas]
    i, offset = best
    lo, hi = bounds[max(i, 0)]
    a, b = ranges[max(i, 0)]
    raise AssertionError(
        f"{domain}: no value the writer showed fits the stored samples: with the best offset, "
        f"sample {i} of {len(run)} (at {stamps[max(i, 0)]}) read {offset + deltas[max(i, 0)]} µJ, "
        f"but between {lo} and {hi} the file held {log.total_uj[a]}..{log.total_uj[b]} µJ"
    )


def _interp(times: Sequence[int], values: Sequence[float], t: int) -> float:
    i = bisect_left(times, t)
    if times[i] == t:
        return values[i]
    t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


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


PACKAGE_WRAPS = {"package-0": 262_143.0}  # one package, wrapping as a real one's counter does


@contextmanager
def host_machine(
    tmp_path: Path,
    monkeypatch,
    energy: Callable[[str, float], float] = lambda domain, t: 30.0 * t,
    nvml: bool = False,
    sampler_priority: str | None = None,
) -> Iterator[ProfileWriter]:
    """This host as a benchmark in a test sees it: a RAPL tree (``TUBAI_SYSFS_ROOT``) with one
    package whose writer follows ``energy`` (joules at ``t`` s: 30 W by default), NVML off
    unless ``nvml``, the sampler at ``sampler_priority`` where given (else the configured
    default), and the working directory ``tmp_path`` (data/models, the digits cache, lands
    there)."""
    zones = make_tree(tmp_path / "sys", PACKAGE_WRAPS)
    monkeypatch.setenv("TUBAI_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "true" if nvml else "false")
    if sampler_priority is not None:
        monkeypatch.setenv("TUBAI_SAMPLER_PRIORITY", sampler_priority)
    monkeypatch.chdir(tmp_path)
    writer = ProfileWriter(zones, PACKAGE_WRAPS, energy)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()
