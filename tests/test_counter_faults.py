"""Counters never invent energy: the real agent over a RAPL tree whose counter reads badly once,
is really reset, or wraps between every two reads; then the window's energy and the run's flags.

:class:`DrivenRapl` is the hardware: just before each of the agent's reads it sets the zone's
``energy_uj`` to a steady power's energy since the first read (wrapped at the zone's range, as
RAPL does), or, at the read a case names, to a bad value. The agent reads the file through the
real :class:`RaplSource`, which takes the zone's ceiling from its constraint files, and the
window is computed from the store as ``scoring`` does. Its edges are the instants of two stored
samples, so that what the sampling allows is exact: the energy spent between those two reads,
``watts`` times the time between them on the hardware's clock.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rapl_writer import make_tree
from run_fixtures import add_events

from exporters.agent import Agent
from exporters.schema import Point, Reading
from exporters.sources.rapl import RaplSource
from exporters.stores.sqlite import SQLiteStore
from exporters.window import window_energy
from scoring.runs import load_runs

S = 1_000_000_000
RANGE_J = 262_143.328850  # a real Intel package's max_energy_range_uj, in joules
TDP_W = 125.0  # constraint_0_max_power_uw: the zone's ceiling is twice this
WATTS = 50.0
START_J = 1_000.0  # far from the top of the range: no read of 0 can pass for a wrap
HOST = "lab1"


class DrivenRapl:
    """The RAPL source over a one-zone tree whose counter this object advances before each read.

    ``shows`` maps the index of a read to the text ``energy_uj`` holds at that read instead of
    the counter (a bad read: the counter goes on underneath). From read ``reset_at`` on, the
    counter starts again from 0, as after a driver reload. ``times_s`` keeps the instant of
    every read (monotonic seconds), ``totals_j`` the counter's true value then, unwrapped.
    """

    name, kind = "rapl", "power"

    def __init__(
        self,
        root: Path,
        watts: float,
        range_j: float = RANGE_J,
        tdp_w: float = TDP_W,
        shows: dict[int, str] | None = None,
        reset_at: int | None = None,
    ) -> None:
        zone = make_tree(root, {"package-0": range_j})["package-0"]
        (zone / "constraint_0_name").write_text("long_term\n")
        (zone / "constraint_0_max_power_uw").write_text(f"{int(tdp_w * 1e6)}\n")
        self.energy_uj, self.range_uj = zone / "energy_uj", int(range_j * 1e6)
        self.watts, self.shows, self.reset_at = watts, shows or {}, reset_at
        self.rapl = RaplSource(root)
        self.times_s: list[float] = []
        self.totals_j: list[float] = []

    @property
    def reads(self) -> int:
        return len(self.times_s)

    def available(self) -> tuple[bool, str]:
        return self.rapl.available()

    def spent_j(self, a: int, b: int) -> float:
        """The energy spent between reads ``a`` and ``b``, reset or not."""
        return self.watts * (self.times_s[b] - self.times_s[a])

    def read(self) -> list[Reading]:
        now = time.monotonic()
        self.times_s.append(now)
        if self.reset_at is not None and self.reads > self.reset_at:
            total_j = self.spent_j(self.reset_at, -1)
        else:
            total_j = START_J + self.spent_j(0, -1)
        raw = str(round(total_j * 1e6) % self.range_uj)
        self.energy_uj.write_text(self.shows.get(len(self.totals_j), raw) + "\n")
        self.totals_j.append(total_j)
        return self.rapl.read()


def run_agent(tmp_path: Path, source: DrivenRapl, interval_s: float, duration_s: float):
    """Sample ``source`` with the real agent; (package samples, the agent's last health point,
    the rapl collector's health points, the store)."""
    store = SQLiteStore(tmp_path / "tubai.db")
    Agent([source], store, HOST, {"power": interval_s, "system": 1.0}).run(duration_s)
    samples = store.read("energy", 0, 2**62, tags={"domain": "package-0"})
    health = store.read("agent", 0, 2**62)
    agent = [p for p in health if p.tags["collector"] == "agent"][-1]
    return samples, agent, [p for p in health if p.tags["collector"] == "rapl"], store


def window(samples: list[Point], reads: list[int], first: int = 1, last: int = -2):
    """(start, end) of a window from stored sample ``first`` to ``last``, and the indices of
    the reads they stored (``reads``: the index of the read behind each stored sample)."""
    assert len(reads) == len(samples)
    return samples[first].time_ns, samples[last].time_ns, reads[first], reads[last]


BAD_READS = {
    "reads 0": "0",
    "above the range": str(int(RANGE_J * 1e6) + 1),
    "jumps past the ceiling": str(round((START_J + 500.0) * 1e6)),  # 500 J in 50 ms: 10 kW
}


@pytest.mark.parametrize("bad", BAD_READS.values(), ids=BAD_READS.keys())
def test_one_bad_read_is_skipped_counted_and_never_energy(tmp_path, bad: str) -> None:
    source = DrivenRapl(tmp_path / "sys", WATTS, shows={8: bad})
    samples, agent, _, store = run_agent(tmp_path, source, interval_s=0.05, duration_s=1.0)
    stored = [k for k in range(source.reads) if k != 8]  # the bad read made no point
    start, end, a, b = window(samples, stored)
    assert a < 8 < b  # the bad read lies inside the window
    with store:
        (package,) = window_energy(store, start, end).domains
    assert package.coverage == 1.0
    assert package.joules == pytest.approx(source.spent_j(a, b), abs=1e-5)
    fields = agent.fields
    assert (fields["counter_glitches_total"], fields["counter_resets_total"]) == (1, 0)
    assert fields["counter_wraps_total"] == 0


def test_an_unreadable_counter_is_a_failed_read_not_energy(tmp_path) -> None:
    source = DrivenRapl(tmp_path / "sys", WATTS, shows={8: "n/a"})
    samples, agent, rapl_health, store = run_agent(tmp_path, source, 0.05, 1.0)
    assert not all(p.fields["ok"] for p in rapl_health)  # the failed read is in the health
    start, end, a, b = window(samples, [k for k in range(source.reads) if k != 8])
    with store:
        (package,) = window_energy(store, start, end).domains
    assert package.coverage == 1.0
    assert package.joules == pytest.approx(source.spent_j(a, b), abs=1e-5)
    assert agent.fields["counter_glitches_total"] == agent.fields["counter_resets_total"] == 0


def test_a_real_reset_is_missing_coverage_flagged_and_never_more_energy(tmp_path) -> None:
    source = DrivenRapl(tmp_path / "sys", WATTS, reset_at=8)  # drops to 0 and counts on
    samples, agent, _, store = run_agent(tmp_path, source, interval_s=0.05, duration_s=1.0)
    stored = [k for k in range(source.reads) if k != 8]  # the read at the reset is held
    start, end, a, b = window(samples, stored)
    with store:
        (package,) = window_energy(store, start, end).domains
        add_events(store, "r1", "resnet50", HOST, start / S, (end - start) / S)
        (run,) = load_runs(store)
    assert (agent.fields["counter_resets_total"], agent.fields["counter_glitches_total"]) == (1, 0)
    # the next read starts a new segment: from the read before the reset to the one after it,
    # the energy is unknown, and missing, never guessed
    assert package.joules < source.spent_j(a, b)
    assert package.joules == pytest.approx(source.spent_j(a, b) - source.spent_j(7, 9), abs=1e-5)
    gap_ns = samples[stored.index(9)].time_ns - samples[stored.index(7)].time_ns
    assert package.coverage == pytest.approx(1 - gap_ns / (end - start))
    assert 0.6 < package.coverage < 1.0
    assert run.coverage == pytest.approx(package.coverage, abs=1e-6)
    assert run.energy_j == pytest.approx(package.joules, abs=1e-3)
    assert any(flag.startswith("samples cover") for flag in run.flags), run.flags


def test_every_wrap_is_counted_at_1_s_over_a_100_j_counter_at_60_w(tmp_path) -> None:
    """60 J between reads on a 100 J counter: each wrapped step is more than half the range,
    which a half-range rule took for a reset. Under the zone's ceiling (twice its 45 W TDP:
    90 J in a second) only a wrap explains it."""
    source = DrivenRapl(tmp_path / "sys", 60.0, range_j=100.0, tdp_w=45.0)
    samples, agent, _, store = run_agent(tmp_path, source, interval_s=1.0, duration_s=4.5)
    start, end, a, b = window(samples, list(range(source.reads)), first=0, last=-1)
    wraps = int(source.totals_j[-1] // 100 - source.totals_j[0] // 100)
    assert wraps >= 2  # some 240 J in 4 s: 5 reads, each step 60 J, 2 of them wrapped
    with store:
        (package,) = window_energy(store, start, end).domains
    assert (agent.fields["counter_wraps_total"], agent.fields["counter_resets_total"]) == (wraps, 0)
    assert agent.fields["counter_glitches_total"] == 0
    assert package.coverage == 1.0
    assert package.joules == pytest.approx(source.spent_j(a, b), abs=1e-5)  # some 240 J


def test_a_cadence_longer_than_a_wrap_at_the_ceiling_gets_guard_reads(tmp_path) -> None:
    """2 s between samples on a 100 J counter at 60 W: 120 J, more than the range, so two
    periodic reads alone cannot tell one wrap from two. The agent reads the counter in between
    (guard reads: nothing stored) and every joule is counted."""
    source = DrivenRapl(tmp_path / "sys", 60.0, range_j=100.0, tdp_w=45.0)
    samples, agent, _, store = run_agent(tmp_path, source, interval_s=2.0, duration_s=6.5)
    assert source.reads > 2 * len(samples)  # guard reads between the stored samples
    start, end = samples[0].time_ns, samples[-1].time_ns
    assert (end - start) / 1e9 >= 3.9
    with store:
        (package,) = window_energy(store, start, end).domains
    assert agent.fields["counter_resets_total"] == 0
    assert agent.fields["counter_glitches_total"] == 0
    assert package.coverage == 1.0
    # read instants and sample stamps agree to microseconds: 60 W x 1 ms = 0.06 J at most
    assert package.joules == pytest.approx(60.0 * (end - start) / 1e9, abs=0.06)
