"""Stores checked where they start and where points are made, with real files and servers:

- a SQLite store that opens but cannot be written (read-only, damaged, not a database, a
  directory, under a file): one line, exit 2, before anything is sampled, the file untouched;
  the benchmark's sampler refuses it too; one that is only busy (locked) is not refused;
- names with control characters (NUL, ESC, a line separator): the agent leaves such a reading
  out, both stores (SQLite and a real ``influxd``) refuse them and store none of the batch, and
  ``benchmark run --run-id`` says so in one line.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rapl_writer import make_tree
from sqlite_faults import damaged, read_only, tubai_db, write_lock

from exporters.agent import Agent
from exporters.config import load_config
from exporters.errors import UsageError
from exporters.schema import Point, Reading
from exporters.stores.base import Store
from exporters.stores.sqlite import SQLiteStore

ENV = {**os.environ, "TUBAI_SOURCES__NVML__ENABLED": "false"}


def unwritable(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A store path that cannot be written, and the words its error line holds."""
    db = tmp_path / "bad.db"
    if kind == "read-only":
        read_only(tubai_db(db))
        return db, "readonly database"
    if kind == "damaged":
        damaged(tubai_db(db))
        return db, "malformed"
    if kind == "not a database":
        db.write_bytes(bytes(range(256)) * 64)
        return db, "file is not a database"
    if kind == "a directory":
        db.mkdir()
        return db, "cannot open the SQLite store"
    (tmp_path / "file").write_text("a file")
    return tmp_path / "file" / "sub" / "x.db", "cannot open the SQLite store"


KINDS = ["read-only", "damaged", "not a database", "a directory", "under a file"]


def digest(path: Path) -> str:
    if not path.is_file():
        return "not a file"
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
def test_an_unwritable_store_is_one_line_exit_2_before_sampling(tmp_path: Path, kind: str) -> None:
    make_tree(tmp_path / "sys", {"package-0": 262_143.0})
    db, words = unwritable(kind, tmp_path)
    was = digest(db)
    result = subprocess.run(
        [sys.executable, "-m", "exporters", "run", "--sysfs-root", str(tmp_path / "sys"),
         "--store", f"sqlite:///{db}", "--duration", "30"],
        capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "--store" in lines[0], result.stderr
    assert lines[0].startswith("exporters: error: ")
    assert digest(db) == was  # no data lost, nothing written


@pytest.mark.parametrize("kind", ["read-only", "damaged"])
def test_the_benchmark_sampler_refuses_an_unwritable_store_before_it_starts(
    tmp_path: Path, kind: str, monkeypatch
) -> None:
    from benchmark.sampling import Sampler

    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    db, words = unwritable(kind, tmp_path)
    with SQLiteStore(db) as store:
        sampler = Sampler(store, host="h", config=load_config())
        with pytest.raises(UsageError, match=words):
            sampler.start()
        assert sampler.agent is None  # nothing started


def test_a_store_locked_by_another_process_is_writable_just_busy(tmp_path: Path, caplog) -> None:
    db = tubai_db(tmp_path / "t.db")
    with SQLiteStore(db) as store, write_lock(db, 120) as holder:
        store.check_writable()  # waits a moment, not for the lock
        assert holder.poll() is None
    assert "locked by another process" in caplog.text


class Tagged:
    """A power source whose second reading has a tag value with ``bad`` in it."""

    name, kind = "tagged", "power"

    def __init__(self, bad: str) -> None:
        self.bad = bad

    def available(self) -> tuple[bool, str]:
        return True, "always"

    def read(self) -> list[Reading]:
        return [
            Reading("energy", {"domain": "good"}, {"watts": 1.0}),
            Reading("energy", {"domain": f"a{self.bad}b"}, {"watts": 2.0}),
        ]


@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\u2028"])
def test_the_agent_leaves_out_a_reading_no_store_can_keep(
    store: Store, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent([Tagged(bad)], store, "h", {"power": 0.05, "system": 0.2})
    agent.run(duration_s=0.4)
    points = store.read("energy", 0, 2**62)
    assert points and {p.tags["domain"] for p in points} == {"good"}
    assert caplog.text.count("a reading left out") == 1 and "control character" in caplog.text
    assert agent.points_lost == 0


@pytest.mark.parametrize(
    "point",
    [
        Point("run", {"run_id": "a\x00b"}, {"f": 1.0}, 2),
        Point("run", {"run\x01id": "a"}, {"f": 1.0}, 2),
        Point("r\x7fun", {"run_id": "a"}, {"f": 1.0}, 2),
        Point("run", {"run_id": "a"}, {"f\x1b": 1.0}, 2),
    ],
)
def test_both_stores_refuse_control_characters_in_names_and_store_none_of_the_batch(
    store: Store, point: Point
) -> None:
    good = Point("run", {"run_id": "ok"}, {"f": 1.0}, 1)
    assert store.refusal(point) and store.refusal(good) is None
    with pytest.raises(UsageError, match="control character"):
        store.write([good, point])
    store.write([Point("run", {"run_id": "later"}, {"f": 2.0}, 3)])
    store.flush()
    assert [p.tags["run_id"] for p in store.read("run", 0, 10)] == ["later"]


def test_a_run_id_with_a_control_character_is_one_line_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--model", "digits_cnn", "--run-id", "a\x1bb"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=ENV,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if "--run-id" in line]
    assert len(lines) == 1 and "control characters" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
