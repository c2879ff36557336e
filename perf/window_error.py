"""Window-energy error against ground truth on synthetic traces, counter against power.

Three true power profiles (steps, short bursts, and a steady load whose RAPL counter wraps
several times) are sampled at 1, 0.1 and 0.01 s the way the agent samples: the counter as the
hardware reports it (whole microjoules, wrapping at ``max_energy_range_uj``, unwrapped by the
agent's :class:`~exporters.counters.CounterTotals`) and the instantaneous power (as NVML reports
it). For random windows of 10 to 120 s, the counter method (:func:`counter_energy`) and power
integration (:func:`power_energy`) are compared with the exact integral. Prints one JSON document.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys

from exporters.counters import CounterTotals
from exporters.schema import Counter, Reading
from exporters.window import counter_energy, gap_threshold_ns, power_energy

S = 1_000_000_000
DURATION_S = 600.0
WRAP_UJ = 262_143_328_850  # an Intel package's max_energy_range_uj


def steps(t: float) -> float:
    return (20.0, 95.0, 45.0, 130.0)[int(t // 7.3) % 4]


def bursts(t: float) -> float:
    return 180.0 if (t % 2.9) < 0.15 else 35.0  # 150 ms bursts every 2.9 s


def steady(t: float) -> float:
    return 400.0 + 5.0 * math.sin(t / 3.0)  # a big server package: wraps every ~11 minutes


PROFILES = {"steps": steps, "bursts": bursts, "steady (wraps)": steady}


def energy_fn(power, dt: float = 0.001):
    """Exact-enough cumulative energy on a 1 ms grid (midpoint rule) and its lookup."""
    n = int(DURATION_S / dt) + 2
    cumulative = [0.0] * (n + 1)
    for i in range(n):
        cumulative[i + 1] = cumulative[i] + power((i + 0.5) * dt) * dt

    def energy(t: float) -> float:
        i = int(t / dt)
        return cumulative[i] + power(t) * (t - i * dt)

    return energy


def sample(power, energy, interval_s: float, offset_uj: int):
    """What the agent stores: times, unwrapped joules_total, and instantaneous watts."""
    totals = CounterTotals()
    times, joules, watts = [], [], []
    t = 0.0
    while t <= DURATION_S:
        raw = (offset_uj + int(energy(t) * 1e6)) % WRAP_UJ
        counter = Counter(raw=raw, scale=1e-6, wrap=WRAP_UJ)
        fields = totals.fields(Reading("energy", {}, counters={"joules_total": counter}), 0)
        times.append(round(t * S))
        joules.append(fields["joules_total"])
        watts.append(power(t))
        t += interval_s
    return times, joules, watts


def main() -> None:
    rng = random.Random(2023)
    results = []
    for name, power in PROFILES.items():
        energy = energy_fn(power)
        windows = []
        for _ in range(200):
            length = rng.uniform(10, 120)
            start = rng.uniform(1, DURATION_S - length - 1)
            windows.append((start, start + length))
        for interval in (1.0, 0.1, 0.01):
            times, joules, watts = sample(power, energy, interval, rng.randrange(WRAP_UJ))
            gap = gap_threshold_ns(times)
            errors = {"counter": [], "power": []}
            for a, b in windows:
                truth = energy(b) - energy(a)
                t0, t1 = round(a * S), round(b * S)
                by_counter, _ = counter_energy(times, joules, t0, t1)
                by_power, _ = power_energy(times, watts, t0, t1, gap)
                errors["counter"].append(abs(by_counter - truth) / truth * 100)
                errors["power"].append(abs(by_power - truth) / truth * 100)
            for method, errs in errors.items():
                results.append({
                    "profile": name, "interval_s": interval, "method": method,
                    "windows": len(errs), "median_error_pct": statistics.median(errs),
                    "max_error_pct": max(errs),
                })  # fmt: skip
    json.dump({"window_error": results}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
