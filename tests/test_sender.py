"""The outbox and its sender without a server: order, retries, rejected lines, failover, flush."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from exporters.errors import UsageError
from exporters.stores import sender as sender_module
from exporters.stores.influxdb_url import Credentials
from exporters.stores.outbox import Outbox, max_bytes_from_env
from exporters.stores.sender import Retry, Sender
from exporters.stores.spool import REJECTED_FILE

FAST = {"retry_min_s": 0.01, "retry_max_s": 0.05}


class Server:
    """A ``deliver`` function: down while ``down`` is set, refuses lines holding ``bad``."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.down = threading.Event()

    def __call__(self, lines: list[str]) -> list[tuple[str, str]]:
        if self.down.is_set():
            raise Retry("unreachable (test)")
        refused = [(line, "HTTP 400: bad line") for line in lines if "bad" in line]
        self.got += [line for line in lines if "bad" not in line]
        return refused


def sender_for(outbox: Outbox, server: Server, batch_size: int = 3) -> Sender:
    sender = Sender(
        outbox, server, server="test", thread_name="test", batch_size=batch_size, **FAST
    )
    sender.start()
    return sender


def test_sender_delivers_in_order_retries_and_keeps_refused_lines(tmp_path: Path) -> None:
    outbox, server = Outbox(tmp_path, "db"), Server()
    server.down.set()
    sender = sender_for(outbox, server)
    try:
        outbox.append([f"m v={i}" for i in range(5)])
        outbox.append(["m bad=1", "m v=5"])
        assert not sender.drain(0.2), "nothing is acknowledged while the server is down"
        assert sender.last_error == "unreachable (test)" and len(outbox) == 7
        server.down.clear()
        assert sender.drain(5)
        assert sender.last_error is None and len(outbox) == 0
    finally:
        sender.stop(5)
        outbox.close()
    assert server.got == [f"m v={i}" for i in range(6)]
    rejected = (tmp_path / REJECTED_FILE).read_text().splitlines()
    assert rejected[0].endswith("HTTP 400: bad line") and rejected[1:] == ["m bad=1"]


def test_an_unusable_spool_fails_over_to_memory_and_still_delivers(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    outbox, server = Outbox(blocker / "spool", "db", memory_bound=4), Server()
    assert outbox.spool is None and outbox.where == "in memory"
    outbox.append([f"m v={i}" for i in range(6)])
    assert len(outbox) == outbox.in_memory == 4, "the oldest beyond the bound are dropped"
    sender = sender_for(outbox, server)
    try:
        assert sender.drain(5)
    finally:
        sender.stop(5)
        outbox.close()
    assert server.got == [f"m v={i}" for i in range(2, 6)]


@pytest.mark.timing
def test_an_idle_sender_sleeps_until_a_write_wakes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_module, "SPOOL_POLL_S", 60.0)
    outbox, server = Outbox(tmp_path, "db"), Server()
    looks: list[float] = []  # each look for work ends in the memory queue while all is sent
    peek = outbox.memory.peek
    monkeypatch.setattr(outbox.memory, "peek", lambda n: looks.append(time.monotonic()) or peek(n))
    sender = sender_for(outbox, server)
    try:
        time.sleep(2.5)  # the sender used to look every second
        assert len(looks) == 1, "one look at start, then none while nothing is written"
        outbox.append(["m v=1"])
        sender.wake()  # what the store does after every write
        deadline = time.monotonic() + 30
        while not server.got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.got == ["m v=1"], "sent at once, not at the next look at the spool"
    finally:
        sender.stop(5)
        outbox.close()


def test_drain_waits_only_for_what_was_queued_before(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "db")
    marks = outbox.marks()
    assert marks == [] and Outbox.passed(marks)
    outbox.append(["a", "b"])
    marks = outbox.marks()
    outbox.append(["c"])
    assert outbox.spool is not None
    first, _ = outbox.spool.peek(2)
    outbox.spool.ack(first)
    assert Outbox.passed(marks) and not Outbox.passed(outbox.marks())
    outbox.close()


def test_a_spool_cap_from_the_environment_must_be_a_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUBAI_SPOOL_MAX_MB", " 1.5 ")
    assert max_bytes_from_env() == 1_500_000
    monkeypatch.delenv("TUBAI_SPOOL_MAX_MB")
    assert max_bytes_from_env() is None
    for bad in ("lots", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("TUBAI_SPOOL_MAX_MB", bad)
        with pytest.raises(UsageError, match="cap in megabytes"):
            max_bytes_from_env()


def test_credentials_come_from_arguments_else_the_environment_and_stay_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TUBAI_INFLUXDB_TOKEN", "env-t0ken")
    monkeypatch.setenv("TUBAI_INFLUXDB_USERNAME", "env-user")
    monkeypatch.setenv("TUBAI_INFLUXDB_PASSWORD", "env-pa55")
    assert Credentials.resolve() == Credentials("env-t0ken", "env-user", "env-pa55")
    given = Credentials.resolve(token="arg-t0ken", password="arg-pa55")
    assert given == Credentials("arg-t0ken", "env-user", "arg-pa55")
    assert "t0ken" not in repr(given) and "pa55" not in repr(given)
