"""``python -m benchmark campaign PLAN.yaml [--shard I/N]``: a matrix of benchmark points run as
tagged runs, resumable and shardable without a coordinator of our own.

The plan and its shards are :mod:`benchmark.plan`'s: checked whole before anything runs (one
line naming every problem with its key, exit 2), points with stable keys, dealt out to shards.
Each point is one measured pass: a run whose ``start`` event carries ``campaign`` and
``campaign_point`` (the key), and under Slurm the job's ``slurm_job_id`` and
``slurm_array_task_id``. Done points are found by key, whatever shard ran them: N may change
between runs.

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
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from benchmark import engines
from benchmark.plan import Point, load_plan, parse_shard, shard_points, slurm_shard
from exporters.errors import UsageError
from exporters.schema import RUN
from exporters.stores.base import Store

log = logging.getLogger(__name__)


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
