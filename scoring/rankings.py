"""Rankings per machine (the reference paper's Table II) and across machines (its Table III).

An entry is one model at one operating point (backend, precision, jit, batch size) on one
machine: the mean over its finished, scored runs (its passes) of energy per inference and of
each score (a run without a usable energy, flagged, or an invalid run is in no entry), with the
accuracy of the runs (mean where several), the 95% interval of energy per inference over the
passes and the composite's derived from it (:mod:`scoring.confidence`), and its energy rating
(:mod:`scoring.rating`). Rankings order entries by one score within a machine; :func:`marks`
says which neighbours' intervals overlap (not distinguishable) and which entries have a single
pass, and :func:`mixed_settings` which settings differ within a ranking (two machines under
one host name, GPU drivers, power limits, backends, precisions). The cross-machine table puts
each entry's figures on every machine beside their ratio to a reference machine's.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from scoring import confidence, rating
from scoring.confidence import Interval
from scoring.runs import RunScore, operating_point, point_labels
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
    """One model at one operating point on one machine: the means over its passes, their 95%
    intervals (:mod:`scoring.confidence`), its rating (:mod:`scoring.rating`) and the settings
    its passes ran with (:func:`settings_of`)."""

    host: str
    model: str
    runs: int
    accuracy: float
    uwh_per_inference: float
    params: float | None = None
    macs: float | None = None
    dataset: str = ""
    backend: str = ""
    precision: str = ""
    jit: str = ""
    batch_size: int | None = None
    uwh_ci: Interval | None = None
    composite_ci: Interval | None = None
    rating: str | None = None
    rating_ratio: float | None = None
    settings: dict[str, str] = field(default_factory=dict)
    label: str = ""  # the model, and its operating point where the model has several

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

    def interval(self, score: str) -> Interval | None:
        """The 95% interval of ``score`` over the passes (None for a score without one)."""
        return {"composite": self.composite_ci, "uwh_per_inference": self.uwh_ci}.get(score)

    @property
    def point(self) -> str:
        """The operating point in words: ``tensorflow fp32 jit off, batch 32``."""
        return operating_point(self.backend, self.precision, self.jit, self.batch_size)

    def as_dict(self) -> dict:
        """For ``--json``: its fields, its scores and its intervals."""
        out = {k: v for k, v in vars(self).items() if k not in ("uwh_ci", "composite_ci")}
        out.update((name, self.score(name)) for name in SCORES if name != "uwh_per_inference")
        for name, value in (("uwh_ci", self.uwh_ci), ("composite_ci", self.composite_ci)):
            out[name] = None if value is None else vars(value) | {"single": value.single}
        return out


def settings_of(run: RunScore) -> dict[str, str]:
    """The settings a ranking must not mix silently: the machine (its id), the GPU driver,
    the GPUs' power limits (from the run's manifest), backend, precision and jit."""
    gpus = run.manifest.get("gpus") or []
    limits = ", ".join(f"{g['power_limit_w']:g} W" for g in gpus if "power_limit_w" in g)
    found = {
        "machine": run.machine_id,
        "driver": str(run.manifest.get("driver") or ""),
        "power limit": limits,
        "backend": run.backend,
        "precision": run.precision,
        "jit": run.jit,
    }
    return {k: v for k, v in found.items() if v}


def _merged(members: Iterable[RunScore]) -> dict[str, str]:
    values: dict[str, set[str]] = defaultdict(set)
    for r in members:
        for k, v in settings_of(r).items():
            values[k].add(v)
    return {k: " / ".join(sorted(vs)) for k, vs in values.items()}


def entries(runs: Iterable[RunScore]) -> list[Entry]:
    """Aggregate finished, scored runs into one entry per machine, model and operating point
    (:func:`scoring.confidence.group_key`)."""
    runs = list(runs)
    references = rating.reference_uwh(runs)
    scored = {k: [r for r in rs if r.top1 is not None] for k, rs in confidence.groups(runs).items()}
    out = []
    for key, rs in sorted(((k, rs) for k, rs in scored.items() if rs), key=lambda kv: str(kv[0])):
        uwh_ci, composite_ci = confidence.group_intervals(rs)
        reference = references.get(rating.basis_key(rs[0]))
        ratio = uwh_ci.mean / reference if reference else None
        out.append(
            Entry(
                rs[0].host, rs[0].model, len(rs), accuracy=statistics.fmean(r.top1 for r in rs),
                uwh_per_inference=uwh_ci.mean, params=rs[-1].params, macs=rs[-1].macs,
                dataset=key[2], backend=key[3], precision=key[4], jit=key[5], batch_size=key[6],
                uwh_ci=uwh_ci, composite_ci=composite_ci, rating_ratio=ratio,
                rating=None if ratio is None else rating.rating_of(ratio), settings=_merged(rs),
            )
        )  # fmt: skip
    return [replace(e, label=label) for e, label in zip(out, point_labels(out), strict=True)]


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
            table[e.label or e.model][e.host] = value
    out = []
    for model, values in sorted(table.items()):
        ref = values.get(reference)
        ratios = {h: v / ref for h, v in values.items()} if ref else {}
        out.append(Comparison(model, dict(sorted(values.items())), ratios))
    return out


def marks(ranked: list[Entry], score: str = "composite") -> list[list[str]]:
    """Per entry of a ranking (best first): ``one pass`` where it has no interval, and
    ``not distinguishable from #k`` for each neighbour whose ``score`` interval overlaps its
    own. Scores without intervals (accuracy, Canziani, NetScore) get no marks."""
    out: list[list[str]] = [[] for _ in ranked]
    if score not in ("composite", "uwh_per_inference"):
        return out
    for i, e in enumerate(ranked):
        if e.runs < 2:
            out[i].append("one pass: no interval")
        for j in (i - 1, i + 1):
            if 0 <= j < len(ranked):
                apart = confidence.distinguishable(e.interval(score), ranked[j].interval(score))
                if apart is False:
                    out[i].append(f"not distinguishable from #{j + 1}")
    return out


def mixed_settings(ranked: Iterable[Entry]) -> list[str]:
    """The settings whose values differ within a ranking, each with its values:
    ``driver: 550.54 / 560.35``; empty where every entry ran alike (settings a pass does not
    record, such as an older run's driver, are not counted as different)."""
    values: dict[str, set[str]] = defaultdict(set)
    for e in ranked:
        for k, v in e.settings.items():
            values[k].update(v.split(" / "))
    return [f"{k}: {' / '.join(sorted(vs))}" for k, vs in values.items() if len(vs) > 1]


def environment_summary(manifest: dict) -> str:
    """A run's manifest in one line: CPU, memory, GPUs with power limits, driver and CUDA,
    kernel, Python, frameworks (what the manifest lacks is left out)."""
    cpu = manifest.get("cpu") or {}
    parts = []
    if cpu:
        where = f"{cpu.get('sockets', '?')} socket(s), {cpu.get('cores', '?')} cores"
        parts.append(f"{cpu.get('model', 'CPU')} ({where})")
    if manifest.get("memory_bytes"):
        parts.append(f"{manifest['memory_bytes'] / 2**30:.0f} GiB")
    for g in manifest.get("gpus") or []:
        limit = f" at {g['power_limit_w']:g} W" if "power_limit_w" in g else ""
        parts.append(f"GPU{g.get('index', '')} {g.get('name', '?')}{limit}")
    for key, label in (("driver", "driver"), ("cuda", "CUDA"), ("kernel", "kernel"),
                       ("python", "Python"), ("tubai", "tubai")):  # fmt: skip
        if manifest.get(key):
            parts.append(f"{label} {manifest[key]}")
    parts += [f"{k} {v}" for k, v in sorted((manifest.get("frameworks") or {}).items())]
    if manifest.get("gpu_note"):
        parts.append(f"no GPUs read ({manifest['gpu_note']})")
    return ", ".join(parts) or "no manifest"


def environments(runs: Iterable[RunScore]) -> dict[tuple[str, str], dict]:
    """Per (host, machine id): the manifest of its latest run that has one."""
    out: dict[tuple[str, str], dict] = {}
    for r in sorted(runs, key=lambda r: r.start_ns):
        if r.manifest:
            out[(r.host, r.machine_id)] = r.manifest
    return dict(sorted(out.items()))


def ranking_lines(host: str, ranked: list[Entry], score: str) -> list[str]:
    """A machine's ranking as ``scoring runs`` prints it: each entry with its score, its 95%
    interval and rating, and its marks; then the settings the ranking mixes, if any."""
    lines = [f"ranking on {host} by {score}:"]
    for i, (e, notes) in enumerate(zip(ranked, marks(ranked, score), strict=True), 1):
        value = e.interval(score)
        ci = "" if value is None or value.single else f" [{value.low:.4g}, {value.high:.4g}]"
        rated = f"  rating {e.rating} ({e.rating_ratio:.2f}x refs)" if e.rating else ""
        runs = f"{e.runs} pass{'es' if e.runs > 1 else ''}"
        notes_text = f"  {'; '.join(notes)}" if notes else ""
        lines.append(f"  {i:2d}. {e.label or e.model:24} {e.score(score):10.4g}{ci}  ({runs})"
                     f"{rated}{notes_text}")  # fmt: skip
    mixed = mixed_settings(ranked)
    if mixed:
        lines.append(f"  this ranking mixes settings: {'; '.join(mixed)}")
    return lines


def rating_lines(runs: list[RunScore]) -> list[str]:
    """How ratings are made, and where references are missing: which models to run."""
    lines = [f"energy rating: {rating.bands_text()} (x: energy per inference over the "
             "geometric mean of the reference models' on the same machine, task and "
             "operating point)"]  # fmt: skip
    for key, missing in rating.missing_references(runs).items():
        host, task, backend, precision, jit, batch = key
        point = operating_point(backend, precision, jit, batch)
        lines.append(f"  no rating on {host} for {task} ({point}): measure the reference "
                     f"model(s) {', '.join(missing)} there")  # fmt: skip
    return lines


def ranking_json(runs: list[RunScore], items: list[Entry], score: str) -> dict:
    """The ``--json`` part for rankings: entries (with intervals, ratings and marks) per
    machine, the settings each ranking mixes, the machines' environments, the rating's
    references and bands."""
    ranked = ranking(items, score)
    return {
        "ranked": {
            h: [e.as_dict() | {"marks": m} for e, m in zip(es, marks(es, score), strict=True)]
            for h, es in ranked.items()
        },
        "mixed_settings": {h: mixed_settings(es) for h, es in ranked.items()},
        "environments": [
            {"host": h, "machine_id": m, "manifest": manifest}
            for (h, m), manifest in environments(runs).items()
        ],
        "rating": {
            "references": rating.REFERENCES,
            "classes": rating.CLASSES,
            "edges": list(rating.EDGES),
        },
    }


def environment_lines(runs: Iterable[RunScore]) -> list[str]:
    """Each machine's environment (its latest manifest) in one line."""
    return [
        f"environment of {host}" + (f" (machine {machine})" if machine else "") + ": "
        + environment_summary(manifest)
        for (host, machine), manifest in environments(runs).items()
    ]  # fmt: skip
