"""A bundle anyone can verify: ``python -m scoring export RUN_ID... --out FILE.tar.gz``.

A bundle is a gzip'd tar of flat files, each a list of JSON documents, one a line:

- ``samples.jsonl``: every sample (``energy``, ``gpu``, ``cpu``, ``mem``, ``disk``, ``net``,
  ``agent``) of each run's host from :data:`~exporters.window.MARGIN_NS` before its window to
  as long after it: exactly what scoring reads to score the run;
- ``events.jsonl``: every ``run`` event of the runs;
- ``scores.jsonl``: each run's figures (:data:`scoring.figures.FIGURES`) as scored at export;
- ``manifests.jsonl``: each run's machine id and manifest, from its ``start`` event;
- ``version.json``: the bundle format and the tubai and Python versions that wrote it;
- ``SHA256SUMS``: the SHA-256 of every other file, as ``sha256sum`` writes it, so that
  ``tar xzf FILE.tar.gz && sha256sum -c SHA256SUMS`` checks a bundle without tubai.

A point is ``{"measurement", "tags", "fields", "time_ns"}``; JSON keeps its types (an int stays
an int). :func:`read_bundle` checks the sums before it parses anything: a file whose sum
differs, is missing or is not listed is :class:`BundleTampered` (exit 1); a file that is no
bundle at all, or a line that is no point, is a :class:`~exporters.errors.UsageError` (exit 2).
:mod:`scoring.verify` recomputes the scores from the samples; :mod:`scoring.importer` merges a
bundle's samples and events into a store.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import math
import os
import platform
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporters.errors import TubaiError, UsageError, shown
from exporters.schema import AGENT, CPU, DISK, ENERGY, GPU, MEM, NET, RUN, Point, names_problem
from exporters.stores import open_store
from exporters.stores.base import Store
from exporters.window import MARGIN_NS
from scoring.events import EVENT, RunStart
from scoring.figures import FIGURES
from scoring.jsonout import finite
from scoring.runs import RunScore, annotate_groups, parse_manifest, runs_from_events, score_runs

FORMAT = 1  # the bundle format's version, in version.json
SAMPLES, EVENTS, SCORES = "samples.jsonl", "events.jsonl", "scores.jsonl"
MANIFESTS, VERSION, SUMS = "manifests.jsonl", "version.json", "SHA256SUMS"
FILES = (SAMPLES, EVENTS, SCORES, MANIFESTS, VERSION)  # listed in SUMS, in this order
SAMPLE_MEASUREMENTS = (ENERGY, GPU, CPU, MEM, DISK, NET, AGENT)
_LAST_NS = 2**62
_NOT_A_BUNDLE = "a .tar.gz written by python -m scoring export"


class BundleTampered(TubaiError):
    """A bundle whose files do not match its SHA256SUMS: exit 1, naming the file."""


@dataclass
class Bundle:
    """What a bundle holds, parsed."""

    samples: list[Point] = field(default_factory=list)
    events: list[Point] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    manifests: list[dict] = field(default_factory=list)
    version: dict = field(default_factory=dict)


def tubai_version() -> str:
    """The installed tubai's version ("unknown" where it is not installed as a distribution)."""
    try:
        return importlib.metadata.version("tubai")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- points and scores as JSON lines --------------------------------------------------------


def point_doc(p: Point) -> dict:
    """The JSON document of a point."""
    return {"measurement": p.measurement, "tags": dict(p.tags), "fields": dict(p.fields),
            "time_ns": p.time_ns}  # fmt: skip


def _is_value(v: object) -> bool:
    return isinstance(v, bool | int | str) or (isinstance(v, float) and math.isfinite(v))


def point_of(doc: object) -> Point:
    """The point a JSON document holds; ValueError (what is wrong) where it holds none."""
    if not isinstance(doc, dict) or set(doc) != {"measurement", "tags", "fields", "time_ns"}:
        raise ValueError("not a point: measurement, tags, fields and time_ns")
    m, tags, fields, t = doc["measurement"], doc["tags"], doc["fields"], doc["time_ns"]
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ValueError("tags must be an object of strings")
    if not isinstance(fields, dict) or not fields or not all(map(_is_value, fields.values())):
        raise ValueError("fields must be an object of finite numbers, booleans and strings")
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 2**63:
        raise ValueError(f"time_ns {shown(t)} is not a time in nanoseconds")
    point = Point(m, tags, fields, t)
    problem = names_problem(point)
    if problem:
        raise ValueError(problem)
    return point


def score_doc(run: RunScore) -> dict:
    """A run's line in ``scores.jsonl``: what names it and every figure (non-finite as null)."""
    figures = {f.name: f.value(run) for f in FIGURES}
    return {"run_id": run.run_id, "start_ns": run.start_ns, "figures": finite(figures)}


def _lines(docs: Iterable[object]) -> bytes:
    text = "".join(json.dumps(d, allow_nan=False, sort_keys=True) + "\n" for d in docs)
    return text.encode()


def _docs(name: str, data: bytes) -> list:
    try:
        lines = data.decode().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{name} in the bundle is not JSON lines ({e}): {_NOT_A_BUNDLE}") from e


def _points(name: str, data: bytes) -> list[Point]:
    out = []
    for i, doc in enumerate(_docs(name, data), 1):
        try:
            out.append(point_of(doc))
        except ValueError as e:
            raise UsageError(f"{name} line {i} in the bundle: {e}") from e
    return out


# -- collecting runs from a store -----------------------------------------------------------


def _windows(runs: Sequence[RunScore], events: Sequence[Point]) -> dict[str, list[list[int]]]:
    """Each host's sample windows (a run's window with the margin), overlapping ones merged,
    so that no sample is read twice."""
    last = {}
    for p in events:
        key = p.tags.get("run_id", "")
        last[key] = max(last.get(key, p.time_ns), p.time_ns)
    spans: dict[str, list[list[int]]] = {}
    for r in runs:
        end = r.end_ns if r.end_ns is not None else last.get(r.run_id, r.start_ns)
        spans.setdefault(r.host, []).append([r.start_ns - MARGIN_NS, end + MARGIN_NS])
    for host, items in spans.items():
        items.sort()
        merged = [items[0]]
        for start, end in items[1:]:
            if start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        spans[host] = merged
    return spans


def collect(store: Store, run_ids: Sequence[str]) -> Bundle:
    """The bundle of ``run_ids``: their events, their hosts' samples around their windows, and
    their scores computed here. UsageError for a run id the store has no run of."""
    bundle = Bundle(version={"format": FORMAT, "tubai": tubai_version(),
                             "python": platform.python_version()})  # fmt: skip
    runs = []
    for run_id in dict.fromkeys(run_ids):
        events = store.read(RUN, 0, _LAST_NS, tags={"run_id": run_id})
        found = runs_from_events(events)
        if not found:
            raise UsageError(f"the store {store.url} has no run {shown(run_id)}: "
                             "python -m scoring runs lists the run ids")  # fmt: skip
        bundle.events += events
        runs += found
    for host, spans in _windows(runs, bundle.events).items():
        for m in SAMPLE_MEASUREMENTS:
            for start, end in spans:
                bundle.samples += store.read(m, start, end, tags={"host": host})
    for run in score_all(store, runs):
        bundle.scores.append(score_doc(run))
        start = next(p for p in bundle.events if _starts(p, run))
        bundle.manifests.append(_manifest(run, start))
    return bundle


def score_all(store: Store, runs: Sequence[RunScore]) -> list[RunScore]:
    """``runs`` scored as ``scoring runs`` scores them, their groups (repeats) taken among
    themselves: a bundle's figures depend on the bundle alone."""
    scored = score_runs(store, runs)
    annotate_groups(scored)
    return scored


def _starts(p: Point, run: RunScore) -> bool:
    """Whether ``p`` is the ``start`` event of ``run``."""
    same = p.tags.get("run_id") == run.run_id and p.time_ns == run.start_ns
    return same and p.fields.get(EVENT) == RunStart.kind


def _manifest(run: RunScore, start: Point) -> dict:
    text = start.fields.get("manifest")
    manifest = parse_manifest(text if isinstance(text, str) else None)
    return {"run_id": run.run_id, "start_ns": run.start_ns, "host": run.host,
            "machine_id": start.fields.get("machine_id"), "manifest": manifest}  # fmt: skip


# -- the file ------------------------------------------------------------------------------


def sha256sums(files: Mapping[str, bytes]) -> bytes:
    """``SHA256SUMS`` of ``files``, as ``sha256sum`` writes it."""
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n"
                   for name, data in files.items()).encode()  # fmt: skip


def bundle_files(bundle: Bundle) -> dict[str, bytes]:
    """Every file of the bundle, SHA256SUMS last."""
    files = {
        SAMPLES: _lines(point_doc(p) for p in bundle.samples),
        EVENTS: _lines(point_doc(p) for p in bundle.events),
        SCORES: _lines(bundle.scores),
        MANIFESTS: _lines(bundle.manifests),
        VERSION: _lines([bundle.version]),
    }
    return files | {SUMS: sha256sums(files)}


def write_files(files: Mapping[str, bytes], out: Path) -> None:
    """Write a tar.gz of ``files`` to ``out`` (through a temporary file beside it); the same
    files make the same bytes (no times, owners or modes from this machine)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(
        fileobj=gz, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:  # fmt: skip
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(raw.getvalue())
        os.replace(tmp, out)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        tmp.unlink(missing_ok=True)
        why = getattr(e, "strerror", None) or e
        raise UsageError(f"cannot write the bundle {shown(str(out))}: {why}; "
                         "choose a writable --out") from e  # fmt: skip


def read_files(path: Path) -> dict[str, bytes]:
    """The files of the bundle at ``path``, their sums checked: :class:`BundleTampered` names
    a file whose sum differs, that is missing or that SHA256SUMS does not list."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            files = {}
            for member in tar:
                if not member.isfile() or "/" in member.name or member.name in files:
                    raise UsageError(f"{path} holds {shown(member.name)}, which no bundle "
                                     f"holds: {_NOT_A_BUNDLE}")  # fmt: skip
                files[member.name] = tar.extractfile(member).read()
    except FileNotFoundError as e:
        raise UsageError(f"no bundle {path}: give the path of a .tar.gz from export") from e
    except (OSError, ValueError, tarfile.TarError, EOFError) as e:
        raise UsageError(f"{shown(str(path))} is not a bundle ({e}): {_NOT_A_BUNDLE}") from e
    if SUMS not in files:
        raise UsageError(f"{path} has no {SUMS}: {_NOT_A_BUNDLE}")
    listed = _listed(path, files[SUMS])
    extra = sorted(set(files) - {SUMS} - set(listed))
    if extra:
        raise BundleTampered(f"{path}: {extra[0]} is not listed in {SUMS}: a file was added")
    for name, digest in listed.items():
        if name not in files:
            raise BundleTampered(f"{path}: {name}, listed in {SUMS}, is missing")
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise BundleTampered(f"{path}: {name} does not match its SHA-256 in {SUMS}: "
                                 "it was changed after export")  # fmt: skip
    return files


def _listed(path: Path, sums: bytes) -> dict[str, str]:
    listed = {}
    for line in sums.decode(errors="replace").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or set(digest) - set("0123456789abcdef"):
            raise BundleTampered(f"{path}: {SUMS} line {shown(line)} is no SHA-256 and name")
        listed[name] = digest
    missing = [n for n in FILES if n not in listed]
    if missing:
        raise BundleTampered(f"{path}: {SUMS} does not list {', '.join(missing)}")
    return listed


def read_bundle(path: str | Path) -> Bundle:
    """The bundle at ``path``, its sums checked (:func:`read_files`), then parsed."""
    files = read_files(Path(path))
    version = _docs(VERSION, files[VERSION])
    if len(version) != 1 or not isinstance(version[0], dict) or "format" not in version[0]:
        raise UsageError(f"{VERSION} in {path} holds no format: {_NOT_A_BUNDLE}")
    if version[0]["format"] != FORMAT:
        made = shown(version[0]["format"])
        raise UsageError(f"{path} is a format {made} bundle; this tubai ({tubai_version()}) "
                         f"reads format {FORMAT}: verify it with a matching tubai")  # fmt: skip
    scores = _docs(SCORES, files[SCORES])
    if not all(isinstance(s, dict) and isinstance(s.get("figures"), dict) for s in scores):
        raise UsageError(f"{SCORES} in {path} holds a line that is no run's figures")
    return Bundle(samples=_points(SAMPLES, files[SAMPLES]), events=_points(EVENTS, files[EVENTS]),
                  scores=scores, manifests=_docs(MANIFESTS, files[MANIFESTS]),
                  version=version[0])  # fmt: skip


# -- the command ---------------------------------------------------------------------------


def add_parser(sub) -> None:
    """``export``'s arguments, on the ``scoring`` command's subparsers."""
    export = sub.add_parser("export", help="write runs' samples, events and scores to a bundle")
    export.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="the runs to export")
    export.add_argument("--out", required=True, help="the bundle to write (FILE.tar.gz)")
    export.add_argument(
        "--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)"
    )


def export_command(args) -> int:
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"--out {shown(args.out)} is not a file in an existing directory: "
                         "name the bundle to write, e.g. --out runs.tar.gz")  # fmt: skip
    with open_store(args.store) as store:
        bundle = collect(store, args.run_ids)
    write_files(bundle_files(bundle), out)
    print(
        f"wrote {out}: {len(bundle.scores)} runs, {len(bundle.events)} events, "
        f"{len(bundle.samples)} samples; check it with python -m scoring verify {out}"
    )
    return 0
