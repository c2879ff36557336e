"""``python -m scoring import FILE [--store URL]``: merge another machine's points into a store.

``FILE`` is another machine's SQLite store (read from a copy, never changed) or an export
bundle (:mod:`scoring.bundle`, its sums checked first). Every point is written to the target
store as it is, with its ``host`` tag, except in two cases:

- **already there**: a point whose series (measurement and non-empty tags) and time the target
  holds already is not written again, so importing twice adds nothing (InfluxDB would overwrite
  such a point; SQLite would keep both);
- **another machine, same name**: machines are known by the ``machine_id`` of their runs'
  ``start`` events. Where the target holds runs of host ``NAME`` with machine ids and the
  incoming ``NAME``'s one machine id is none of them, the incoming points (samples, events and
  scores) are imported as host ``NAME~ID8``, ``ID8`` being the first 8 characters of its
  machine id. A host without machine ids on either side cannot be told apart, and is merged.

Memory is bounded: each measurement is merged in time windows of about ``chunk_points``
(:data:`CHUNK_POINTS`) points of the source, a window holding those points (plus any sharing
its first time) and the target's points of the same hosts in the same time span, nothing
more. The windows start at every ``chunk_points``-th time of the source's measurement (SQLite
sorts the times; only they are read whole), so they never overlap: a point and its duplicates
always fall in one window. A bundle is read whole by :func:`~scoring.bundle.read_bundle` (its
runs' samples) and merged in the same windows.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from exporters.errors import UsageError, shown
from exporters.schema import RUN, SCORE, Point
from exporters.stores import open_store
from exporters.stores.base import Store
from exporters.stores.sqlite import SQLiteStore
from scoring.bundle import SAMPLE_MEASUREMENTS, read_bundle
from scoring.events import EVENT, RunStart

log = logging.getLogger(__name__)

MEASUREMENTS = (*SAMPLE_MEASUREMENTS, RUN, SCORE)  # what a store from tubai holds
BATCH = 5000  # points per write
# Source points merged at a time, per measurement: some 150 MB of memory measured (500k
# points: 150 MB over the 112 MB at start, against 730 MB read whole).
CHUNK_POINTS = 100_000
_LAST_NS = 2**62
_SQLITE_MAGIC = b"SQLite format 3\x00"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Imported:
    """What an import did."""

    written: int = 0
    present: int = 0  # already in the target
    refused: int = 0  # names the target cannot keep
    renamed: dict[str, str] = field(default_factory=dict)  # incoming host -> host written


def machine_ids(events: Iterable[Point]) -> dict[str, set[str]]:
    """Each host's machine ids, from its runs' ``start`` events."""
    out: dict[str, set[str]] = defaultdict(set)
    for p in events:
        mid = p.fields.get("machine_id")
        if p.fields.get(EVENT) == RunStart.kind and isinstance(mid, str) and mid:
            out[p.tags.get("host", "")].add(mid)
    return out


def host_names(incoming: Mapping[str, set[str]], target: Mapping[str, set[str]]) -> dict[str, str]:
    """The host each incoming host is written as, where that is not its own name: ``NAME~ID8``
    where the target knows ``NAME`` by other machine ids than the incoming one."""
    renamed = {}
    for host, ids in incoming.items():
        if len(ids) > 1:
            log.warning("host %s has %d machine ids in the import: merged under its name",
                        shown(host), len(ids))  # fmt: skip
            continue
        known = target.get(host, set())
        if ids and known and not ids & known:
            renamed[host] = f"{host}~{next(iter(ids))[:8]}"
    return renamed


def series_time(p: Point) -> tuple:
    """What makes a point the same point in any store: its series (empty tags left out, as
    InfluxDB keeps none) and its time."""
    return p.measurement, tuple(sorted((k, v) for k, v in p.tags.items() if v)), p.time_ns


def _renamed(p: Point, names: Mapping[str, str]) -> Point:
    host = p.tags.get("host")
    if host not in names:
        return p
    return Point(p.measurement, {**p.tags, "host": names[host]}, p.fields, p.time_ns)


def windows(starts: Sequence[int]) -> Iterator[tuple[int, int]]:
    """The time windows ``(first_ns, last_ns)``, inclusive, that the sorted ``starts`` begin:
    each ends before the next start, the last one never; none is empty or overlaps another."""
    for first, following in pairwise([*starts, _LAST_NS + 1]):
        if first < following:
            yield first, following - 1


def _present(target: Store, incoming: Sequence[Point]) -> set[tuple]:
    """:func:`series_time` of the target's points of ``incoming``'s measurement and hosts in
    its time span (all hosts' where a point has none)."""
    start, end = min(p.time_ns for p in incoming), max(p.time_ns for p in incoming)
    hosts = {p.tags.get("host") or "" for p in incoming}
    reads = [None] if "" in hosts else [{"host": h} for h in sorted(hosts)]
    m = incoming[0].measurement
    points = (p for tags in reads for p in target.read(m, start, end, tags, missing_ok=True))
    return {series_time(p) for p in points}


def merge(target: Store, points: Iterable[Point], names: Mapping[str, str], done: Imported) -> None:
    """Write ``points`` of one measurement (hosts renamed by ``names``) that ``target`` lacks."""
    incoming = [_renamed(p, names) for p in points]
    if not incoming:
        return
    seen = _present(target, incoming)
    new = []
    for p in incoming:
        key = series_time(p)
        if key in seen:
            done.present += 1
        elif target.refusal(p):
            done.refused += 1
            log.warning("not imported: %s", target.refusal(p))
        else:
            seen.add(key)
            new.append(p)
    for i in range(0, len(new), BATCH):
        target.write(new[i : i + BATCH])
    done.written += len(new)


def _kind(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}: give a SQLite store or "
                         "a bundle from python -m scoring export") from e  # fmt: skip
    for magic in (_SQLITE_MAGIC, _GZIP_MAGIC):
        if head.startswith(magic):
            return magic
    raise UsageError(f"{path} is neither a SQLite store nor an export bundle (.tar.gz)")


@contextmanager
def sqlite_copy(path: Path) -> Iterator[SQLiteStore]:
    """The SQLite store at ``path``, copied (with its WAL) to a temporary file and opened
    there, so that the other machine's file is only read."""
    with tempfile.TemporaryDirectory(prefix="tubai-import-") as tmp:
        copy = Path(tmp) / "import.db"
        try:
            source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            with sqlite3.connect(copy) as dest:
                source.backup(dest)
            source.close()
        except sqlite3.Error as e:
            raise UsageError(f"cannot read the SQLite store {path}: {e}") from e
        with SQLiteStore(copy) as store:
            yield store


def sqlite_chunks(
    source: SQLiteStore, measurement: str, chunk_points: int
) -> Iterator[list[Point]]:
    """The SQLite store's points of ``measurement``, oldest first, window by window."""
    for first, last in windows(source.every_nth_time(measurement, chunk_points)):
        yield source.read(measurement, first, last)


def list_chunks(points: Iterable[Point], chunk_points: int) -> Iterator[list[Point]]:
    """``points`` (of one measurement) oldest first, in the same windows as a SQLite store's."""
    ordered = sorted(points, key=lambda p: p.time_ns)
    times = [p.time_ns for p in ordered]
    for first, last in windows(times[::chunk_points]):
        yield ordered[bisect_left(times, first) : bisect_right(times, last)]


def import_file(path: Path, target: Store, chunk_points: int = CHUNK_POINTS) -> Imported:
    """Merge the store or bundle at ``path`` into ``target`` (see the module's docstring),
    ``chunk_points`` source points of a measurement at a time."""
    if chunk_points < 1:
        raise ValueError(f"chunk_points must be 1 or more, not {chunk_points}")
    done = Imported()
    fields = (EVENT, "machine_id")
    known = machine_ids(target.read(RUN, 0, _LAST_NS, fields=fields, missing_ok=True))
    if _kind(path) == _GZIP_MAGIC:
        bundle = read_bundle(path)
        done.renamed = host_names(machine_ids(bundle.events), known)
        by_measurement: dict[str, list[Point]] = defaultdict(list)
        for p in bundle.samples + bundle.events:
            by_measurement[p.measurement].append(p)
        for points in by_measurement.values():
            for chunk in list_chunks(points, chunk_points):
                merge(target, chunk, done.renamed, done)
    else:
        with sqlite_copy(path) as source:
            try:
                runs = (p for c in sqlite_chunks(source, RUN, chunk_points) for p in c)
                done.renamed = host_names(machine_ids(runs), known)
                for m in MEASUREMENTS:
                    for chunk in sqlite_chunks(source, m, chunk_points):
                        merge(target, chunk, done.renamed, done)
            except sqlite3.Error as e:  # another application's tables of these names
                raise UsageError(f"{path} is no tubai SQLite store ({e}): give one") from e
        if not done.written + done.present + done.refused:
            raise UsageError(f"{path} holds no tubai points: give a tubai SQLite store")
    target.flush()
    return done


def add_parser(sub) -> None:
    """``import``'s arguments, on the ``scoring`` command's subparsers."""
    imp = sub.add_parser("import", help="merge another machine's SQLite store or a bundle")
    imp.add_argument("file", metavar="FILE", help="a SQLite store (.db) or an export bundle")
    imp.add_argument("--store", help="store URL (default TUBAI_STORE or sqlite:///data/tubai.db)")


def import_command(args) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no file {shown(args.file)}: give a SQLite store or a bundle")
    with open_store(args.store) as target:
        done = import_file(path, target)
    hosts = "".join(f"; host {shown(a)} imported as {shown(b)} (another machine id)"
                    for a, b in done.renamed.items())  # fmt: skip
    refused = f", {done.refused} refused (see the log)" if done.refused else ""
    print(f"imported {done.written} points into {target.url}, {done.present} already there"
          f"{refused}{hosts}")  # fmt: skip
    return 0
