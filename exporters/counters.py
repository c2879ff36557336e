"""Turns raw hardware counters into monotonic totals and rates: the agent's only state.

Each series field keeps its last raw value. A raw value below the last one is either a
wraparound (the counter passed ``Counter.wrap`` and restarted from zero) or a reset (driver
reload, CPU hot-plug, suspend): when the counter has a known range and the wrapped difference is
less than half that range it is a wraparound, otherwise a reset, after which the energy counted
is the new raw value (the counter restarted from zero). Totals start at zero when the agent
starts, so ``joules_total`` is "energy since agent start", monotonic whatever the hardware did.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass

from exporters.schema import Counter, FieldValue, Reading

log = logging.getLogger(__name__)

_NOISE = 1e-12  # relative: a counter derived by float sums may wobble by a few ulps


@dataclass
class _State:
    raw: float
    total: float
    mono_ns: int


def counter_delta(last_raw: float, raw: float, wrap: float | None) -> tuple[float, str]:
    """Raw increase from ``last_raw`` to ``raw`` and what happened: "ok", "wrap" or "reset"."""
    if raw >= last_raw - _NOISE * abs(last_raw):  # float noise is no step back
        return max(0.0, raw - last_raw), "ok"
    if wrap is not None and wrap > 0:
        wrapped = wrap - last_raw + raw
        if 0 <= wrapped < wrap / 2:
            return wrapped, "wrap"
    return raw, "reset"


class CounterTotals:
    """Keeps the last raw value of every counter and produces totals and rates."""

    def __init__(self) -> None:
        self._state: dict[Hashable, _State] = {}
        self.wraps = 0
        self.resets = 0

    def fields(self, reading: Reading, mono_ns: int) -> dict[str, FieldValue]:
        """The reading's plain fields plus its counters as totals (and rates after the first)."""
        out: dict[str, FieldValue] = dict(reading.fields)
        series = (reading.measurement, tuple(sorted(reading.tags.items())))
        for name, counter in reading.counters.items():
            out.update(self._advance((series, name), name, counter, mono_ns))
        return out

    def _advance(
        self, key: Hashable, name: str, counter: Counter, mono_ns: int
    ) -> dict[str, FieldValue]:
        last = self._state.get(key)
        if last is None:
            self._state[key] = _State(counter.raw, 0.0, mono_ns)
            return {name: 0.0}
        delta, what = counter_delta(last.raw, counter.raw, counter.wrap)
        if what == "wrap":
            self.wraps += 1
        elif what == "reset":
            self.resets += 1
            log.warning("counter %s was reset (%s -> %s)", key, last.raw, counter.raw)
        total = last.total + delta * counter.scale
        out: dict[str, FieldValue] = {name: total}
        dt_s = (mono_ns - last.mono_ns) / 1e9
        if counter.rate_field and dt_s > 0:
            out[counter.rate_field] = (total - last.total) / dt_s * counter.rate_scale
        self._state[key] = _State(counter.raw, total, mono_ns)
        return out
