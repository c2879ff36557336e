"""The on-disk spool: order, acknowledgement, durability across reopen and SIGKILL, errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from exporters.errors import StoreError
from exporters.stores.spool import REJECTED_FILE, Spool


def test_append_peek_ack_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert len(spool) == 0 and spool.peek(10) == (0, [])
    assert spool.head_id() is None and spool.tail_id() is None
    assert spool.append([]) == 0
    last = spool.append([f"m v={i}" for i in range(5)])
    spool.append(["m v=5", "m v=6"])
    assert len(spool) == 7 and spool.tail_id() == last + 2

    first_id, lines = spool.peek(3)
    assert lines == ["m v=0", "m v=1", "m v=2"]
    assert spool.peek(3) == (first_id, lines), "peek does not consume"
    assert spool.ack(first_id) == 3
    assert spool.peek(100)[1] == [f"m v={i}" for i in range(3, 7)]
    assert spool.head_id() == first_id + 1
    spool.ack(spool.tail_id())
    assert len(spool) == 0 and spool.peek(1) == (0, [])
    spool.close()


def test_entries_survive_reopen_and_keep_any_text(tmp_path: Path) -> None:
    odd = ['m s="two\nlines"', "ünï ☃ 'q' \"d\" \\ ,= ; DROP DATABASE x", ""]
    spool = Spool(tmp_path / "a" / "b")
    spool.append(odd)
    spool.set_meta("database", "tubai")
    spool.close()

    again = Spool(tmp_path / "a" / "b")
    assert again.peek(10)[1] == odd
    assert again.get_meta("database") == "tubai" and again.get_meta("nothing") is None
    again.close()


@pytest.mark.timing
def test_concurrent_appends_and_draining_lose_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    writers, per_writer = 4, 50
    drained: list[str] = []
    done = threading.Event()

    def write(w: int) -> None:
        for i in range(per_writer):
            spool.append([f"w{w} {i}a", f"w{w} {i}b"])

    def drain() -> None:
        while not (done.is_set() and len(spool) == 0):
            last, lines = spool.peek(7)
            if lines:
                drained.extend(lines)
                spool.ack(last)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    consumer = threading.Thread(target=drain)
    consumer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    consumer.join(10)
    assert len(drained) == writers * per_writer * 2
    for w in range(writers):
        mine = [line for line in drained if line.startswith(f"w{w} ")]
        assert mine == [f"w{w} {i}{s}" for i in range(per_writer) for s in "ab"]
    spool.close()


def test_sigkill_loses_at_most_the_append_in_progress(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from exporters.stores.spool import Spool
        spool = Spool(sys.argv[1])
        n = 0
        while True:
            spool.append([f"m v={n + j}i" for j in range(10)])
            n += 10
            print(n, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    committed = 0
    try:
        while committed < 300:
            line = proc.stdout.readline()
            assert line, "the appending process died"
            committed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    spool = Spool(tmp_path)
    n = len(spool)
    assert n >= committed, "an acknowledged append was lost"
    assert n % 10 == 0, "an append was torn"
    assert spool.peek(n + 1)[1] == [f"m v={i}i" for i in range(n)]
    spool.close()


def test_unusable_directory_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as e:
        Spool(blocker / "spool")
    message = str(e.value)
    assert str(blocker / "spool") in message and "TUBAI_SPOOL_DIR" in message
    assert "\n" not in message


def test_a_full_spool_refuses_an_append_whole_and_says_why(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=32 * 1024)
    spool.append(["m v=0"])
    with pytest.raises(StoreError, match=r"cannot take more points \(database or disk is full\)"):
        for i in range(1, 10_000):
            spool.append([f'm v={i}i,pad="{"x" * 100}"'] * 10)
    n = len(spool)
    assert n > 1 and (n - 1) % 10 == 0, "the refused append left nothing behind"
    spool.ack(spool.tail_id())
    spool.append(["m v=1"])  # the room that was freed is used again
    spool.close()


def test_reject_keeps_lines_with_their_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    path = spool.reject(["m f=1", 'm s="x"'], "HTTP 400: field type\nconflict")
    spool.reject(["m g=2"], "HTTP 400: bad")
    assert path == tmp_path / REJECTED_FILE
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and lines[0].endswith("HTTP 400: field type conflict")
    assert lines[1:3] == ["m f=1", 'm s="x"']
    assert lines[3].endswith("HTTP 400: bad") and lines[4] == "m g=2"
    spool.close()


def test_only_one_consumer_at_a_time(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)
    assert first.claim_consumer() and first.claim_consumer()
    assert not second.claim_consumer()
    first.close()
    assert second.claim_consumer()
    second.close()
