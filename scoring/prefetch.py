"""A read-through view of a store that reads many runs' samples in few queries.

Scoring a run reads its host's columns around its window (``energy`` with a margin either side,
``gpu`` and ``cpu`` over the window): one to three queries a run, which for thousands of runs
costs more than the computation. :class:`Prefetched` knows the runs about to be scored: it
plans, for each host, *spans* that cover consecutive runs' windows plus :data:`PAD_NS` either
side (windows closer than :data:`GAP_MAX_NS` share a span, and a span grows to at most
:data:`SPAN_MAX_NS` unless one window alone is longer; a window that does not fit starts the
next span, which may overlap the one before). A ``read_columns`` whose host tag and
range fall inside a span reads that span's columns once (with the same measurement, tags and
fields) and is answered by slicing them in time, with the store's inclusive bounds: series
order, times and values exactly as the store would return them for the range, series with no
sample in it left out. Anything else (no host tag, a range across spans or outside them, no
fields) goes to the store.

Memory: one span per (measurement, tags, fields) is kept, and only for one host at a time, so
runs are scored best in :attr:`Prefetched.runs`' order (by host, then start): each span is then
read once. Any other order gives the same answers with more reads.

The view is a snapshot per span: a span is read at its first use, so samples written after
that (a live agent's) are not seen by later runs of that span; a run whose last samples may be
on their way is scored again later anyway (:mod:`scoring.service`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from exporters.schema import Point
from exporters.stores.base import Columns, Store
from exporters.window import MARGIN_NS, in_window

if TYPE_CHECKING:
    from scoring.runs import RunScore

S = 1_000_000_000
PAD_NS = MARGIN_NS  # read_energy's margin: the widest range a run's scoring reads
GAP_MAX_NS = 300 * S  # windows of one host closer than this share a span
SPAN_MAX_NS = 3600 * S  # a span's length at most (one longer window aside): bounds memory
LOOK_BACK = 3  # spans (they may overlap) looked at for one read, latest start first

Span = tuple[int, int]
Key = tuple[str, frozenset, tuple[str, ...]]


def spans_of(
    windows: Iterable[Span], gap_ns: int = GAP_MAX_NS, max_ns: int = SPAN_MAX_NS
) -> list[Span]:
    """Spans, sorted by start, each covering whole ``windows``: a window joins the span before
    it when the gap between them is under ``gap_ns`` and the span then stays within ``max_ns``
    (else it starts a span, which may overlap the one before)."""
    spans: list[list[int]] = []
    for start, end in sorted(windows):
        last = spans[-1] if spans else None
        if last and start - last[1] < gap_ns and max(end, last[1]) - last[0] <= max_ns:
            last[1] = max(last[1], end)
        else:
            spans.append([start, end])
    return [(s, e) for s, e in spans]


def scored_windows(runs: Iterable[RunScore], pad_ns: int = PAD_NS) -> dict[str, list[Span]]:
    """Each host's windows that scoring reads: every finished run's, ``pad_ns`` either side."""
    out: dict[str, list[Span]] = defaultdict(list)
    for r in runs:
        if r.status == "finished" and r.end_ns is not None and r.end_ns > r.start_ns:
            out[r.host].append((r.start_ns - pad_ns, r.end_ns + pad_ns))
    return out


class Prefetched(Store):
    """``store`` as seen by scoring ``runs``: reads inside their spans answered from one read
    per span (see the module's docstring); writes and everything else go to ``store``."""

    def __init__(
        self,
        store: Store,
        runs: Sequence[RunScore],
        gap_ns: int = GAP_MAX_NS,
        max_ns: int = SPAN_MAX_NS,
    ) -> None:
        self.store, self.url = store, store.url
        self.runs = sorted(runs, key=lambda r: (r.host, r.start_ns, r.run_id))
        self._spans = {h: spans_of(w, gap_ns, max_ns) for h, w in scored_windows(runs).items()}
        self._starts = {h: [s for s, _ in spans] for h, spans in self._spans.items()}
        self._host: str | None = None  # whose spans are cached
        self._cache: dict[Key, tuple[Span, list[Columns]]] = {}

    def _span(self, host: str, start_ns: int, end_ns: int, cached: Span | None) -> Span | None:
        """A span of ``host`` holding ``[start_ns, end_ns]``: ``cached`` where it does, else
        one of the last few starting before it."""
        if cached and cached[0] <= start_ns and end_ns <= cached[1]:
            return cached
        spans, starts = self._spans.get(host), self._starts.get(host)
        if not spans or not starts:
            return None
        i = bisect_right(starts, start_ns) - 1
        for span in spans[max(0, i - LOOK_BACK + 1) : i + 1][::-1]:
            if end_ns <= span[1]:
                return span
        return None

    def read_columns(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] = (),
    ) -> list[Columns]:
        host = (tags or {}).get("host")
        if not host or not fields or tags is None:
            return self.store.read_columns(measurement, start_ns, end_ns, tags, fields)
        if host != self._host:
            self._host, self._cache = host, {}
        key = (measurement, frozenset(tags.items()), tuple(fields))
        cached = self._cache.get(key)
        span = self._span(host, start_ns, end_ns, cached[0] if cached else None)
        if span is None:
            return self.store.read_columns(measurement, start_ns, end_ns, tags, fields)
        if cached is None or cached[0] != span:
            series = self.store.read_columns(measurement, span[0], span[1], tags, fields)
            cached = self._cache[key] = (span, series)
        return [s for c in cached[1] if (s := _sliced(c, start_ns, end_ns)) is not None]

    def read(
        self,
        measurement: str,
        start_ns: int,
        end_ns: int,
        tags: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
        *,
        missing_ok: bool = False,
    ) -> list[Point]:
        return self.store.read(measurement, start_ns, end_ns, tags, fields, missing_ok=missing_ok)

    def write(self, points: Iterable[Point]) -> None:
        self.store.write(points)

    def flush(self, timeout_s: float | None = None) -> None:
        self.store.flush(timeout_s)


def _sliced(columns: Columns, start_ns: int, end_ns: int) -> Columns | None:
    """``columns`` within ``[start_ns, end_ns]`` (new lists), None where no sample is."""
    inside = in_window(columns.times, start_ns, end_ns)
    if inside.start >= inside.stop:
        return None
    values = {f: v[inside] for f, v in columns.values.items()}
    return Columns(dict(columns.tags), columns.times[inside], values)
