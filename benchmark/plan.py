"""A campaign's plan (:mod:`benchmark.campaign`): the YAML read and checked whole, its points
in a stable order with stable keys, and the shards they are dealt to.

The plan names the matrix: ``models`` x ``batch_sizes`` x ``backends`` x ``precisions`` x ``jit``
x ``repeats``, with one ``data``, ``limit``, ``weights`` and ``min_duration_s`` for all. It is
checked whole before anything runs: the error names every problem with its key, on one line.
Points come in a stable order (repeat, then model, batch size, backend, precision, jit: repeats
are spread out in time), each with a stable ``key``, a hash of everything that decides what it
measures.

Sharding: the points sorted by key are dealt out to ``N`` shards in turn (point of rank ``r`` to
shard ``r mod N``): every point is in exactly one shard, shard sizes differ by at most one, and
each shard gets a mix of models, batch sizes and repeats. ``--shard`` defaults to the Slurm
array task (``SLURM_ARRAY_TASK_ID``, counted from ``SLURM_ARRAY_TASK_MIN`` by
``SLURM_ARRAY_TASK_STEP``, out of ``SLURM_ARRAY_TASK_COUNT``), else ``0/1``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark import engines
from exporters.config_checks import tag_problem
from exporters.errors import UsageError, shown
from exporters.yaml_file import read_yaml

MAX_POINTS = 100_000  # more is a typo in the plan
LISTS = {  # plan key: (default, what one item must be)
    "models": (None, "model name"),
    "batch_sizes": ([32], "whole number above 0"),
    "backends": (["tensorflow"], "backend"),
    "precisions": (["fp32"], "precision"),
    "jit": (["auto"], "jit setting (auto, on or off)"),
}
SCALARS = ("campaign", "repeats", "data", "limit", "weights", "min_duration_s")


@dataclass(frozen=True)
class Point:
    """One point of a campaign: one measured pass of one model at one operating point."""

    index: int  # position in the plan's stable order
    key: str  # stable: a hash of everything below but the index
    model: str
    batch_size: int
    backend: str
    precision: str
    jit: str
    repeat: int
    data: str
    limit: int | None
    weights: str
    min_duration_s: float


@dataclass(frozen=True)
class Plan:
    """A checked plan: its name and its points in the stable order."""

    name: str
    points: tuple[Point, ...]


def point_key(fields: Mapping[str, object]) -> str:
    """The stable key of a point: 12 hex digits of the SHA-256 of its fields as sorted JSON."""
    text = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10**9


def _list(raw: Mapping, key: str, problems: list[str]) -> list:
    default, item = LISTS[key]
    value = raw.get(key, default)
    if value is None:
        problems.append(f"{key}: missing: list at least one {item}")
        return []
    items = value if isinstance(value, list) else [value]
    if not items:
        problems.append(f"{key}: empty: list at least one {item}")
    for i in items:
        kind_ok = _whole(i) if key == "batch_sizes" else isinstance(i, str) and i.strip() != ""
        if not kind_ok:
            problems.append(f"{key}: {shown(i)} is not a {item}")
    if len(set(map(repr, items))) < len(items):
        problems.append(f"{key}: lists an item twice: list each once")
    return items


def _scalars(raw: Mapping, problems: list[str]) -> dict:
    name = raw.get("campaign")
    if not isinstance(name, str) or not name.strip():
        problems.append("campaign: missing: name the campaign (its runs carry the name)")
    elif why := tag_problem(name):
        problems.append(f"campaign: {shown(name)} is not usable: {why}")
    repeats, limit = raw.get("repeats", 1), raw.get("limit")
    if not _whole(repeats):
        problems.append(f"repeats: {shown(repeats)} is not a whole number above 0")
    if limit is not None and not _whole(limit):
        problems.append(f"limit: {shown(limit)} is not a whole number above 0 (or leave it out)")
    data, weights = raw.get("data", "auto"), raw.get("weights", "auto")
    if not isinstance(data, str) or not data:
        problems.append(f"data: {shown(data)} is not auto, synthetic, digits or a directory")
    elif data not in ("auto", "synthetic", "digits") and not Path(data).is_dir():
        problems.append(f"data: {shown(data)} is not a directory: give an ILSVRC2012 val "
                        "directory, or auto, synthetic or digits")  # fmt: skip
    if not isinstance(weights, str) or not weights:
        problems.append(f"weights: {shown(weights)} is not auto, imagenet, random or a file")
    seconds = raw.get("min_duration_s", 0)
    number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not number or not 0 <= seconds <= 86_400:
        problems.append(f"min_duration_s: {shown(seconds)} is not a number of seconds, 0 to "
                        "86400")  # fmt: skip
    return {"name": name, "repeats": repeats, "limit": limit, "data": data,
            "weights": weights, "min_duration_s": float(seconds) if number else 0.0}  # fmt: skip


def _models(names: Iterable[str], backends: list, problems: list[str]) -> list[str]:
    """The registry names of ``names``; an unknown one, or one a backend cannot run, is a
    problem."""
    from benchmark.registry import get_spec

    found = []
    for name in names:
        try:
            spec = get_spec(name)
        except UsageError as e:
            problems.append(f"models: {e}")
            continue
        if spec.name in found:
            problems.append(f"models: {shown(name)} is {spec.name} again: list each model once")
        found.append(spec.name)
        whys = [engines.check_model(spec, b) for b in backends if isinstance(b, str)]
        problems.extend(f"models/backends: {why}" for why in whys if why)
    return found


def check_plan(raw: object, problems: list[str]) -> Plan | None:
    """The plan that ``raw`` (parsed YAML) describes; each problem is appended to ``problems``
    as one line naming its key, and then None is returned."""
    if not isinstance(raw, Mapping):
        problems.append(f"the plan must be a mapping of keys, not {shown(raw)}")
        return None
    for key in raw:
        if key not in LISTS and key not in SCALARS:
            problems.append(f"{shown(key)}: unknown key; the keys are "
                            f"{', '.join([*SCALARS, *LISTS])}")  # fmt: skip
    lists = {key: _list(raw, key, problems) for key in LISTS}
    scalars = _scalars(raw, problems)
    models = _models([m for m in lists["models"] if isinstance(m, str)], lists["backends"],
                     problems)  # fmt: skip
    combos = list(itertools.product(lists["backends"], lists["precisions"], lists["jit"]))
    for backend, precision, jit in combos:
        if all(isinstance(v, str) for v in (backend, precision, jit)):
            if why := engines.check_point(backend, precision, jit):
                problems.append(f"backends/precisions/jit: {why}")
    problems[:] = dict.fromkeys(problems)  # each once
    if not problems:
        count = len(models) * len(lists["batch_sizes"]) * len(combos) * scalars["repeats"]
        if count > MAX_POINTS:
            problems.append(f"the plan has {count:,} points, more than {MAX_POINTS:,}: split it")
    if problems:
        return None
    return Plan(scalars["name"], tuple(_points(models, lists["batch_sizes"], combos, scalars)))


def _points(models: list[str], batches: list[int], combos: list, s: dict) -> Iterable[Point]:
    grid = itertools.product(range(1, s["repeats"] + 1), models, batches, combos)
    for index, (repeat, model, batch, (backend, precision, jit)) in enumerate(grid):
        fields = {"model": model, "batch_size": batch, "backend": backend, "precision": precision,
                  "jit": jit, "repeat": repeat, "data": s["data"], "limit": s["limit"],
                  "weights": s["weights"], "min_duration_s": s["min_duration_s"]}  # fmt: skip
        yield Point(index=index, key=point_key(fields), **fields)


def load_plan(path: str) -> Plan:
    """Read and check the plan file at ``path``; :class:`UsageError` where it is unusable,
    naming every problem (one line: each names its key, ``;`` between them)."""
    raw = read_yaml(path, "plan")
    problems: list[str] = []
    plan = check_plan(raw, problems)
    if plan is None:
        many = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise UsageError(f"plan {shown(path)}: {many}{'; '.join(problems)}")
    return plan


def shard_points(points: Sequence[Point], shard: int, count: int) -> list[Point]:
    """The points of shard ``shard`` (0-based) of ``count``, in the plan's order: the points
    sorted by key are dealt out in turn, so each shard gets a mix of every list of the plan."""
    dealt = sorted(points, key=lambda p: p.key)[shard::count]
    chosen = {p.index for p in dealt}
    return [p for p in points if p.index in chosen]


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (0 <= I < N): the shard and the shard count; :class:`UsageError` otherwise."""
    head, _, tail = text.strip().partition("/")
    if head.isascii() and tail.isascii() and head.isdigit() and tail.isdigit():
        shard, count = int(head), int(tail)
        if 0 <= shard < count <= MAX_POINTS:
            return shard, count
    raise UsageError(f"--shard {shown(text)} is not I/N with 0 <= I < N (e.g. 0/3, 1/3, 2/3)")


def slurm_shard(env: Mapping[str, str]) -> tuple[int, int] | None:
    """The shard of a Slurm array task (its index among the array's tasks), or None outside
    an array job."""
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
             "SLURM_ARRAY_TASK_STEP")  # fmt: skip
    if not env.get(names[0]) or not env.get(names[1]):
        return None
    defaults = {names[2]: "0", names[3]: "1"}
    values = []
    for name in names:
        text = env.get(name) or defaults[name]
        if not (text.isascii() and text.isdigit()):
            raise UsageError(f"{name}={shown(text)} is not a whole number: give --shard I/N")
        values.append(int(text))
    task, count, first, step = values
    return parse_shard(f"{(task - first) // max(1, step)}/{count}")
