"""Rankings per machine (the reference paper's Table II) and across machines (its Table III).

An entry is one model on one machine: the mean over its finished, scored runs of energy per
inference and of each score (a run without a usable energy, flagged, or an invalid run is in no
entry), with the accuracy of the runs (mean where several). Rankings order entries by
one score within a machine; the cross-machine table puts each model's figures on every machine
beside their ratio to a reference machine's.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from scoring.runs import RunScore
from scoring.scores import canziani, composite, netscore

# score name -> True where higher is better
SCORES = {
    "composite": True,
    "uwh_per_inference": False,
    "accuracy": True,
    "canziani": True,
    "netscore": True,
}


@dataclass(frozen=True)
class Entry:
    """One model on one machine."""

    host: str
    model: str
    runs: int
    accuracy: float
    uwh_per_inference: float
    params: float | None = None
    macs: float | None = None

    @property
    def composite(self) -> float:
        return composite(self.accuracy, self.uwh_per_inference)

    @property
    def canziani(self) -> float | None:
        return canziani(self.accuracy, self.params) if self.params else None

    @property
    def netscore(self) -> float | None:
        return (
            netscore(self.accuracy, self.params, self.macs) if self.params and self.macs else None
        )

    def score(self, name: str) -> float | None:
        return getattr(self, name)


def entries(runs: Iterable[RunScore]) -> list[Entry]:
    """Aggregate finished, scored runs into one entry per (machine, model)."""
    groups: dict[tuple[str, str], list[RunScore]] = defaultdict(list)
    for r in runs:
        if r.status == "finished" and r.uwh_per_inference is not None and r.top1 is not None:
            groups[(r.host, r.model)].append(r)
    return [
        Entry(
            host,
            model,
            len(rs),
            accuracy=statistics.fmean(r.top1 for r in rs),
            uwh_per_inference=statistics.fmean(r.uwh_per_inference for r in rs),
            params=rs[-1].params,
            macs=rs[-1].macs,
        )
        for (host, model), rs in sorted(groups.items())
    ]


def ranking(items: Iterable[Entry], score: str = "composite") -> dict[str, list[Entry]]:
    """Per machine, entries best first by ``score`` (entries without that score last out)."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}: one of {', '.join(SCORES)}")
    by_host: dict[str, list[Entry]] = defaultdict(list)
    for e in items:
        if e.score(score) is not None:
            by_host[e.host].append(e)
    return {
        host: sorted(es, key=lambda e: e.score(score), reverse=SCORES[score])
        for host, es in sorted(by_host.items())
    }


@dataclass(frozen=True)
class Comparison:
    """One model across machines: its figure on each and the ratio to the reference's."""

    model: str
    values: dict[str, float]
    ratios: dict[str, float]


def compare(items: Iterable[Entry], reference: str, score: str = "composite") -> list[Comparison]:
    """Each model's ``score`` on every machine and its ratio to ``reference``'s."""
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for e in items:
        value = e.score(score)
        if value is not None:
            table[e.model][e.host] = value
    out = []
    for model, values in sorted(table.items()):
        ref = values.get(reference)
        ratios = {h: v / ref for h, v in values.items()} if ref else {}
        out.append(Comparison(model, dict(sorted(values.items())), ratios))
    return out
