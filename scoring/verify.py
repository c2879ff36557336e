"""``python -m scoring verify FILE.tar.gz``: check a bundle and recompute every figure.

First the checksums (:func:`scoring.bundle.read_files`): a file changed, missing or added
exits 1 naming it. Then the bundle's samples and events are loaded into a temporary SQLite
store and every run is scored by the same code as ``scoring runs``
(:func:`scoring.bundle.score_all`); each figure of :data:`scoring.figures.FIGURES` is compared
with the one the bundle stores. Numbers agree within :data:`REL_TOL` (relative) or
:data:`ABS_TOL` (absolute): the same code on the same samples gives the same bits, and the
tolerance only lets another Python or tubai version sum in another order; text, flags and
booleans agree exactly. Any difference exits 1 with one line per figure: the run, the figure,
the stored and the recomputed value.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from exporters.errors import shown
from exporters.stores.sqlite import SQLiteStore
from scoring.bundle import Bundle, read_bundle, score_all, score_doc, tubai_version
from scoring.runs import runs_from_events

REL_TOL = 1e-9
ABS_TOL = 1e-12


def recompute(bundle: Bundle) -> dict[tuple[str, int], dict]:
    """Each run of the bundle's events, scored from the bundle's samples alone, as its
    ``scores.jsonl`` line, by (run id, start)."""
    with tempfile.TemporaryDirectory(prefix="tubai-verify-") as tmp:
        with SQLiteStore(Path(tmp) / "bundle.db") as store:
            store.write(bundle.samples)
            store.write(bundle.events)
            runs = score_all(store, runs_from_events(bundle.events))
    return {(r.run_id, r.start_ns): score_doc(r) for r in runs}


def same(stored: object, recomputed: object) -> bool:
    """Whether a stored figure and its recomputation agree (numbers within the tolerance)."""
    numbers = (int, float)
    if isinstance(stored, bool) or isinstance(recomputed, bool):
        return stored is recomputed
    if isinstance(stored, numbers) and isinstance(recomputed, numbers):
        return math.isclose(stored, recomputed, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return stored == recomputed


def differences(stored: Sequence[Mapping], recomputed: Mapping[tuple[str, int], dict]) -> list[str]:
    """One line per figure that differs, and per run scored on one side only."""
    out = []
    keys = set()
    for doc in stored:
        key = (doc.get("run_id"), doc.get("start_ns"))
        keys.add(key)
        run = f"run {shown(key[0])} (start {key[1]})"
        again = recomputed.get(key)
        if again is None:
            out.append(f"{run}: scored in the bundle, but its events are not there")
            continue
        figures, now = doc["figures"], again["figures"]
        for name in sorted(set(figures) | set(now)):
            if name not in figures or name not in now:
                side = "the bundle" if name in figures else "this tubai"
                out.append(f"{run}: figure {name} only in {side}")
            elif not same(figures[name], now[name]):
                out.append(f"{run}: {name}: stored {shown(figures[name])}, "
                           f"recomputed {shown(now[name])}")  # fmt: skip
    for run_id, start_ns in sorted(set(recomputed) - keys):
        out.append(f"run {shown(run_id)} (start {start_ns}): events in the bundle, no scores")
    return out


def add_parser(sub) -> None:
    """``verify``'s arguments, on the ``scoring`` command's subparsers."""
    verify = sub.add_parser("verify", help="check a bundle's sums and recompute its scores")
    verify.add_argument("bundle", metavar="FILE.tar.gz", help="a bundle from scoring export")


def verify_command(args) -> int:
    bundle = read_bundle(args.bundle)
    found = differences(bundle.scores, recompute(bundle))
    made, mine = bundle.version.get("tubai"), tubai_version()
    note = "" if made == mine else f" (made by tubai {shown(made)}, checked by {mine})"
    for line in found:
        print(line)
    if found:
        print(f"{args.bundle}: REFUSED, {len(found)} differences{note}")
        return 1
    print(f"{args.bundle}: OK, sums match and every figure of {len(bundle.scores)} runs "
          f"recomputed from {len(bundle.samples)} samples agrees{note}")  # fmt: skip
    return 0
