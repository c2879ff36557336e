"""Turns raw hardware counters into totals and rates, deciding each step from physics.

Each series field keeps its last good raw value. A new raw value is judged against what is
physically possible in the time elapsed since that value was read:

- **invalid** (not a finite number, negative, or above the counter's range ``Counter.wrap``):
  a bad read, skipped and counted as a glitch. It never becomes energy.
- **ok**: the counter rose by no more than its ceiling allows (``Counter.max_rate`` raw units
  per second, e.g. a RAPL zone's maximum power) over the elapsed time.
- **wrap**: it fell, and the wrapped difference ``wrap - last + raw`` is possible in the elapsed
  time under the ceiling. Without a ceiling, a wrap is a wrapped difference under half the range
  (the older rule, kept for counters that declare no ceiling).
- **suspect**: anything else (a fall that no wrap explains, a rise above the ceiling). The
  reading is held, not counted, and the next one decides: if it follows on from the last good
  value, the suspect reading was a glitch (counted, skipped); if it follows on from the suspect
  value, the counter really was reset (driver reload, suspend, hot-plug) and the series starts a
  new *segment*: its total restarts at zero. Window energy (:mod:`exporters.window`) treats a
  drop in a stored total as the end of a segment, so the energy lost in a reset shows as missing
  coverage, with its flag, and is never invented.

Within a segment ``joules_total`` is monotonic; a segment starts when the agent starts and after
every confirmed reset. The energy a counter adds between two readings is therefore never
negative and never more than ``max_rate`` times the elapsed time (plus :data:`SLACK_S`), and it
is exact whenever readings are close enough that one interval holds less than one wrap at the
ceiling; :func:`max_unambiguous_s` gives that interval, and the agent warns when it samples a
counter more slowly.

A reading taken between the periodic ones (a window's edge: ``fields(..., rates=False)``)
advances the total like any other but leaves the rate alone: rates are measured between
periodic readings only, since one over the milliseconds from an edge to the next tick would be
mostly the hardware's update granularity. :meth:`CounterTotals.segment` numbers each counter's
segments, so that two totals can be known to belong to the same one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable
from dataclasses import dataclass

from exporters.schema import Counter, FieldValue, Reading

log = logging.getLogger(__name__)

_NOISE = 1e-12  # relative: a counter derived by float sums may wobble by a few ulps
SLACK_S = 0.005  # timing slack on the ceiling: reads are stamped around, not at, the update

OK, WRAP, SUSPECT, INVALID = "ok", "wrap", "suspect", "invalid"


def valid_raw(raw: object, wrap: float | None) -> bool:
    """Whether a raw reading can be a counter value at all (finite, >= 0, within its range)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return False
    return math.isfinite(raw) and raw >= 0 and (wrap is None or wrap <= 0 or raw <= wrap)


def ceiling(max_rate: float | None, elapsed_s: float) -> float:
    """The largest raw increase physically possible in ``elapsed_s`` (inf without a ceiling)."""
    if max_rate is None:
        return math.inf
    return max_rate * (max(elapsed_s, 0.0) + SLACK_S)


def counter_step(
    last_raw: float,
    raw: float,
    wrap: float | None,
    elapsed_s: float = math.inf,
    max_rate: float | None = None,
) -> tuple[float, str]:
    """(raw increase, verdict) from ``last_raw`` to ``raw``: ok, wrap, suspect or invalid.

    The increase is 0.0 unless the verdict is ok or wrap.
    """
    if not valid_raw(raw, wrap):
        return 0.0, INVALID
    limit = ceiling(max_rate, elapsed_s)
    if raw >= last_raw - _NOISE * abs(last_raw):  # float noise is no step back
        rise = max(0.0, raw - last_raw)
        return (rise, OK) if rise <= limit else (0.0, SUSPECT)
    if wrap is not None and wrap > 0:
        wrapped = wrap - last_raw + raw
        possible = wrapped <= limit if max_rate is not None else wrapped < wrap / 2
        if 0 <= wrapped and possible:
            return wrapped, WRAP
    return 0.0, SUSPECT


def max_unambiguous_s(counter: Counter) -> float:
    """The longest interval in which one wrap at the ceiling cannot pass for none or two."""
    if counter.wrap is None or counter.wrap <= 0 or not counter.max_rate:
        return math.inf
    return counter.wrap / counter.max_rate - SLACK_S


@dataclass
class _State:
    raw: float  # the last good raw value
    total: float
    mono_ns: int
    suspect: tuple[float, int] | None = None  # (raw, mono_ns) of a reading held for judgement
    segment: int = 0  # how many resets this counter has seen
    rate_from: tuple[float, int] | None = None  # (total, mono_ns) of the last rated reading

    def __post_init__(self) -> None:
        if self.rate_from is None:
            self.rate_from = (self.total, self.mono_ns)


class CounterTotals:
    """Keeps the last good raw value of every counter and produces totals and rates.

    ``wraps``, ``resets`` and ``glitches`` count what was seen, for the agent's health points.
    """

    def __init__(self) -> None:
        self._state: dict[Hashable, _State] = {}
        self._series: dict[Hashable, Hashable] = {}  # see _series_of
        self._warned: set[Hashable] = set()
        self.wraps = 0
        self.resets = 0
        self.glitches = 0

    def fields(self, reading: Reading, mono_ns: int, rates: bool = True) -> dict[str, FieldValue]:
        """The reading's plain fields plus its counters as totals (and rates after the first,
        unless ``rates`` is False: an edge reading between the periodic ones).

        A counter whose reading is skipped (a glitch, or held as suspect) is left out.
        """
        out: dict[str, FieldValue] = dict(reading.fields)
        if reading.counters:
            series = self._series_of(reading)
            for name, counter in reading.counters.items():
                out.update(self._advance((series, name), name, counter, mono_ns, rates))
        return out

    def segment(self, reading: Reading, name: str) -> int | None:
        """The number of the segment the counter ``name`` of ``reading``'s series is in (0 at
        the first reading, one more after each reset); None before its first good reading."""
        state = self._state.get((self._series_of(reading), name))
        return None if state is None else state.segment

    def _series_of(self, reading: Reading) -> Hashable:
        """``reading``'s series, measurement and sorted tags: the state key of its counters with
        their names. Sorted once per series (per order its source gives the tags in), not per
        reading."""
        seen = (reading.measurement, tuple(reading.tags.items()))
        series = self._series.get(seen)
        if series is None:
            series = self._series[seen] = (reading.measurement, tuple(sorted(reading.tags.items())))
        return series

    def _advance(
        self, key: Hashable, name: str, counter: Counter, mono_ns: int, rates: bool = True
    ) -> dict[str, FieldValue]:
        last = self._state.get(key)
        if last is None:
            if not valid_raw(counter.raw, counter.wrap):
                self._glitch(key, counter.raw, "a first reading")
                return {}
            self._state[key] = _State(counter.raw, 0.0, mono_ns)
            return {name: 0.0}
        elapsed_s = (mono_ns - last.mono_ns) / 1e9
        self._warn_if_too_slow(key, counter, elapsed_s)
        delta, verdict = counter_step(
            last.raw, counter.raw, counter.wrap, elapsed_s, counter.max_rate
        )
        if verdict == INVALID:
            self._glitch(key, counter.raw, "not a counter value")
            return {}
        if verdict == SUSPECT:
            return self._judge_suspect(key, name, last, counter, mono_ns)
        if last.suspect is not None:  # the held reading was the odd one out
            self._glitch(key, last.suspect[0], "out of line with the readings around it")
            last.suspect = None
        if verdict == WRAP:
            self.wraps += 1
        return self._emit(name, last, counter, delta, mono_ns, rates)

    def _judge_suspect(
        self, key: Hashable, name: str, last: _State, counter: Counter, mono_ns: int
    ) -> dict[str, FieldValue]:
        held = last.suspect
        if held is not None:
            elapsed_s = (mono_ns - held[1]) / 1e9
            verdict = counter_step(held[0], counter.raw, counter.wrap, elapsed_s, counter.max_rate)[
                1
            ]
            if verdict in (OK, WRAP):  # the counter goes on from the held value: a reset
                self.resets += 1
                log.warning("counter %s was reset (%s -> %s)", key, last.raw, held[0])
                self._state[key] = _State(counter.raw, 0.0, mono_ns, segment=last.segment + 1)
                return {name: 0.0}  # a new segment: the energy across the reset is unknown
            self._glitch(key, held[0], "out of line with the readings around it")
        last.suspect = (counter.raw, mono_ns)
        return {}

    def _emit(
        self, name: str, last: _State, counter: Counter, delta: float, mono_ns: int, rates: bool
    ) -> dict[str, FieldValue]:
        """The new total (and rate, from the last rated reading) of a good step; ``last`` is
        moved on to it."""
        total = last.total + delta * counter.scale
        out: dict[str, FieldValue] = {name: total}
        last.raw, last.total, last.mono_ns = counter.raw, total, mono_ns
        if rates:
            rated_total, rated_mono = last.rate_from or (total, mono_ns)
            dt_s = (mono_ns - rated_mono) / 1e9
            if counter.rate_field and dt_s > 0:
                out[counter.rate_field] = (total - rated_total) / dt_s * counter.rate_scale
            last.rate_from = (total, mono_ns)
        return out

    def _glitch(self, key: Hashable, raw: object, why: str) -> None:
        self.glitches += 1
        log.warning("counter %s: skipped a bad reading %r (%s)", key, raw, why)

    def _warn_if_too_slow(self, key: Hashable, counter: Counter, elapsed_s: float) -> None:
        limit = max_unambiguous_s(counter)
        if elapsed_s > limit and key not in self._warned:
            self._warned.add(key)
            log.warning(
                "counter %s was read %.2f s apart, longer than the %.2f s in which it can wrap "
                "at most once at its ceiling: sample it more often (interval_s) so that no "
                "wrap can be missed",
                key,
                elapsed_s,
                limit,
            )
