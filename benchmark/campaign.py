"""``python -m benchmark campaign PLAN.yaml [--shard I/N]``: a matrix of benchmark points run as
tagged runs, resumable and shardable without a coordinator of our own.

The plan (YAML) names the matrix: ``models`` x ``batch_sizes`` x ``backends`` x ``precisions``
x ``jit`` x ``repeats``, with one ``data``, ``limit``, ``weights`` and ``min_duration_s`` for
all. It is checked whole before anything runs: the error names every problem with its key, on
one line, and the command exits 2. Its points come in a stable order (repeat, then model,
batch size, backend, precision, jit: repeats are spread out in time), each with a stable
``key``, a hash of everything that decides what it measures. Each point is one measured pass:
a run whose ``start`` event carries ``campaign`` and ``campaign_point`` (the key), and under
Slurm the job's ``slurm_job_id`` and ``slurm_array_task_id``.

Sharding: the points sorted by key are dealt out to ``N`` shards in turn (point of rank ``r``
to shard ``r mod N``): every point is in exactly one shard, shard sizes differ by at most one,
and each shard gets a mix of models, batch sizes and repeats (not all of one batch size, as
dealing in the plan's order would where a list is N long). Done points are found by key,
whatever shard ran them: N may change between runs. ``--shard`` defaults to the Slurm
array task (``SLURM_ARRAY_TASK_ID``, counted from ``SLURM_ARRAY_TASK_MIN`` by
``SLURM_ARRAY_TASK_STEP``, out of ``SLURM_ARRAY_TASK_COUNT``), else ``0/1``.

Resume: a point is done where the store holds a run of this campaign with that point's key and
an ``end`` event. A start without an end (the process was killed) or with a ``fail`` is run
again, under a new run id. So the same command, run again after anything stopped it, runs only
what is left.

Backends: Keras fixes its backend when first imported (``KERAS_BACKEND``). Points of the
process's backend (and of engines that are not Keras backends) run in this process; those of
another Keras backend run in a child process (this command, ``--only-backend B``) with
``KERAS_BACKEND=B``, after this process's own points.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from benchmark import engines
from exporters.config_checks import tag_problem
from exporters.errors import UsageError, shown
from exporters.schema import RUN
from exporters.stores.base import Store

log = logging.getLogger(__name__)

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
    try:
        raw = yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read plan {shown(path)}: {e.strerror}; check the path") from e
    except UnicodeDecodeError as e:
        raise UsageError(f"plan {shown(path)} is not UTF-8 text: save it as UTF-8") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"plan {shown(path)} is not valid YAML{where}: fix the syntax") from e
    except RecursionError as e:
        raise UsageError(f"plan {shown(path)} is nested too deeply: flatten it") from e
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


def done_points(store: Store, campaign: str) -> tuple[set[str], dict[str, int]]:
    """The keys of the campaign's points with a finished run in ``store``, and per key how
    many runs were started (finished or not)."""
    events = store.read(RUN, 0, 2**62, fields=["event", "campaign", "campaign_point"])
    keys: dict[str, str] = {}  # run id -> point key, for this campaign's runs
    ended: set[str] = set()
    for e in events:
        run_id, kind = e.tags.get("run_id", ""), e.fields.get("event")
        if kind == "start" and e.fields.get("campaign") == campaign:
            key = e.fields.get("campaign_point")
            if isinstance(key, str):
                keys[run_id] = key
        elif kind == "end":
            ended.add(run_id)
    done = {key for run_id, key in keys.items() if run_id in ended}
    return done, dict(Counter(keys.values()))


def run_id_of(campaign: str, point: Point, attempts: int) -> str:
    """The run id of a point's run: ``CAMPAIGN-KEY``, ``-retryN`` after N earlier attempts."""
    base = f"{campaign}-{point.key}"
    return base if attempts == 0 else f"{base}-retry{attempts}"


def process_backend(todo: Sequence[Point]) -> str:
    """This process's Keras backend. Where Keras is not imported yet and none of ``todo`` is
    of the backend it would get, it gets the first Keras backend of ``todo`` instead."""
    current = engines.default_backend()
    wanted = [p.backend for p in todo if p.backend in engines.KERAS_BACKENDS]
    if "keras" in sys.modules or not wanted or current in wanted:
        return engines.use_backend(current)
    return engines.use_backend(wanted[0])


@dataclass
class Outcome:
    """What became of one point of the shard."""

    point: Point
    state: str  # "done before", "ran", "failed" (or "to do", in a dry run)
    run_id: str | None = None
    uwh_per_inference: float | None = None
    why: str | None = None

    def as_json(self) -> dict:
        return {**asdict(self.point), **{k: v for k, v in vars(self).items() if k != "point"}}


def run_point(
    campaign: str, point: Point, store: Store, sampler: object, attempts: int, progress: bool
) -> Outcome:
    """One point as one measured pass; a failure other than bad input is its outcome (the
    runner wrote its ``fail`` event), not an exception."""
    from benchmark.runner import RunOptions, claim_run_id, prepare, run_benchmark

    opts = RunOptions(
        model=point.model, data=point.data, batch_size=point.batch_size, limit=point.limit,
        repeats=1, weights=point.weights, min_duration_s=point.min_duration_s,
        backend=point.backend, precision=point.precision, jit=point.jit, campaign=campaign,
        campaign_point=point.key, progress=progress,
    )  # fmt: skip
    try:
        prepared = prepare(opts)
        run_id = claim_run_id(store, run_id_of(campaign, point, attempts), point.model, 1)
        (result,) = run_benchmark(replace(opts, run_id=run_id), store, sampler, prepared)  # type: ignore[arg-type]
    except UsageError:
        raise
    except Exception as e:
        log.error("point %s (%s, batch %d) failed: %s", point.key, point.model,
                  point.batch_size, e)  # fmt: skip
        return Outcome(point, "failed", why=" ".join(f"{type(e).__name__}: {e}".split())[:500])
    return Outcome(point, "ran", result.run_id, result.uwh_per_inference)


def run_child(plan_path: str, backend: str, shard: tuple[int, int], store: str | None) -> tuple:
    """Run the shard's ``backend`` points in a child process with ``KERAS_BACKEND`` set: its
    exit status, and what became of each point (by key) as its ``--json`` says."""
    cmd = [sys.executable, "-m", "benchmark", "campaign", plan_path, "--only-backend", backend,
           "--shard", f"{shard[0]}/{shard[1]}", "--no-progress", "--json"]  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": backend}
    child = subprocess.run(cmd + (["--store", store] if store else []), env=env, check=False,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        rows = {row["key"]: row for row in json.loads(child.stdout)["points"]}
    except (ValueError, KeyError, TypeError):
        rows = {}
    return child.returncode, rows


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``campaign`` command's options."""
    p = sub.add_parser("campaign", help="run a plan's matrix of points as tagged runs, "
                       "resumable and shardable (examples/campaign.yaml)")  # fmt: skip
    p.add_argument("plan", help="the plan, a YAML file (examples/campaign.yaml)")
    p.add_argument("--shard", help="I/N: run shard I (from 0) of N: one N-th of the points "
                   "(default: the Slurm array task where one runs, else 0/1)")  # fmt: skip
    p.add_argument("--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db); "
                   "shards on several hosts share one InfluxDB")  # fmt: skip
    p.add_argument("--dry-run", action="store_true",
                   help="list the shard's points and which are done; run nothing")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--only-backend", help=argparse.SUPPRESS)  # a child process's points


def command(args: argparse.Namespace) -> int:
    """``python -m benchmark campaign``: run what is left of the shard; 1 where a point
    failed (it is run again next time), else 0."""
    from benchmark.sampling import Sampler
    from exporters.stores import open_store

    plan = load_plan(args.plan)
    shard = parse_shard(args.shard) if args.shard else slurm_shard(os.environ) or (0, 1)
    mine = shard_points(plan.points, *shard)
    if args.only_backend:
        mine = [p for p in mine if p.backend == args.only_backend]
    with open_store(args.store) as store:
        done, started = done_points(store, plan.name)
        outcomes = {p.key: Outcome(p, "done before") for p in mine if p.key in done}
        todo = [p for p in mine if p.key not in done]
        here = [] if args.dry_run or not todo else todo
        if here:
            backend = process_backend(here)  # an engine not of Keras runs in any process
            keras = engines.KERAS_BACKENDS
            here = [p for p in todo if p.backend == backend or p.backend not in keras]
        if here:
            with Sampler(store) as sampler:
                print(f"sampling: {sampler.describe()}", file=sys.stderr)
                for p in here:
                    print(f"campaign {plan.name}: point {p.index} ({p.key}): {p.model}, "
                          f"batch {p.batch_size}, {p.backend}/{p.precision}/jit {p.jit}, "
                          f"repeat {p.repeat}", file=sys.stderr)  # fmt: skip
                    progress = not args.no_progress and sys.stderr.isatty()
                    outcome = run_point(plan.name, p, store, sampler, started.get(p.key, 0),
                                        progress)  # fmt: skip
                    outcomes[p.key] = outcome
    status = 0
    if not args.dry_run:
        for backend in sorted({p.backend for p in todo if p.key not in outcomes}):
            # a child whose Keras did not take KERAS_BACKEND starts no grandchild
            code, rows = (1, {}) if args.only_backend else run_child(args.plan, backend, shard,
                                                                     args.store)  # fmt: skip
            status = status or (0 if code == 0 else 1)
            for p in (p for p in todo if p.backend == backend):
                r = rows.get(p.key) or {"state": "failed", "why": f"{backend}: exit status {code}"}
                outcomes[p.key] = Outcome(p, r["state"], r.get("run_id"),
                                          r.get("uwh_per_inference"), r.get("why"))  # fmt: skip
    rows = [outcomes.get(p.key) or Outcome(p, "to do") for p in mine]
    _print(plan.name, shard, rows, args.json)
    return 1 if status or any(o.state == "failed" for o in rows) else 0


def _print(name: str, shard: tuple[int, int], rows: list[Outcome], as_json: bool) -> None:
    if as_json:
        from scoring import jsonout

        jsonout.dump({"campaign": name, "shard": list(shard),
                      "points": [o.as_json() for o in rows]})  # fmt: skip
        return
    print(f"campaign {name}, shard {shard[0]}/{shard[1]}: {len(rows)} points")
    print(f"{'#':>5} {'key':12} {'model':22} {'batch':>5} {'backend':10} {'prec':5} {'jit':4} "
          f"{'rep':>3} {'state':11} {'uWh/inf':>9} run")  # fmt: skip
    for o in rows:
        p, uwh = o.point, o.uwh_per_inference
        uwh_text = "-" if uwh is None else format(uwh, "9.4f")
        print(f"{p.index:5d} {p.key:12} {p.model[:22]:22} {p.batch_size:5d} {p.backend[:10]:10} "
              f"{p.precision[:5]:5} {p.jit[:4]:4} {p.repeat:3d} {o.state:11} {uwh_text:>9} "
              f"{o.run_id or o.why or ''}")  # fmt: skip
