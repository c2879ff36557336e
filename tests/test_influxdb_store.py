"""The InfluxDB store against a real ``influxd`` (1.x, v1 API), plus URL parsing and credentials.

Tests marked ``influxdb`` use the ``influxd`` fixture (tests/conftest.py); the credential tests
use a tiny local HTTP server that records what the store sends.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxd import InfluxTarget
from influxdb_client import Point as LinePoint
from influxdb_client import WritePrecision

from exporters.errors import StoreError, UsageError
from exporters.schema import Point
from exporters.stores import open_store
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.influxql import quote_ident, quote_literal
from exporters.stores.lineprotocol import line as line_protocol
from exporters.stores.spool import REJECTED_FILE, Spool

T0 = 1_700_000_000_123_456_789
FAST = {"retry_min_s": 0.05, "retry_max_s": 0.2, "timeout_s": 2.0, "close_timeout_s": 1.0}
HOSTILE = [
    "it's",
    'say "hi"',
    "a b,c=d",
    "back\\slash",
    "\\leading",
    "a\\ b\\,c\\=d",
    "; DROP DATABASE x",
    "' OR 1=1 --",
    '" OR ""="',
    "ünïcødé ☃ 模型",
    "x'); DROP MEASUREMENT run; --",
]


def store_for(target: InfluxTarget, tmp_path: Path, **kwargs: Any) -> InfluxDBStore:
    return InfluxDBStore.from_url(target.url, spool_dir=tmp_path / "spool", **(FAST | kwargs))


def seq_points(n: int, start: int = 0, measurement: str = "energy") -> list[Point]:
    return [
        Point(measurement, {"host": "h", "domain": "package-0"}, {"seq": i}, T0 + i * 1000)
        for i in range(start, start + n)
    ]


# -- quoting --------------------------------------------------------------------------------------


def test_quote_ident_and_literal() -> None:
    assert quote_ident("energy") == '"energy"'
    assert quote_ident('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
    assert quote_literal("it's") == "'it\\'s'"
    assert quote_literal("' OR 1=1 --") == "'\\' OR 1=1 --'"
    assert quote_literal("a\\'b\nc") == "'a\\\\\\'b\\nc'"
    assert quote_literal('"') == "'\"'" and quote_ident("'") == '"\'"'


# -- URLs -----------------------------------------------------------------------------------------


def test_from_url_parses_host_port_database_and_tls(tmp_path: Path) -> None:
    cases = {
        "influxdb://db.example:9999/tubai": ("http://db.example:9999", "tubai"),
        "influxdb://localhost/tubai": ("http://localhost:8086", "tubai"),
        "influxdb+https://db.example/my%20db": ("https://db.example:8086", "my db"),
        "influxdb+http://[::1]:8087/x": ("http://[::1]:8087", "x"),
    }
    for url, (base, database) in cases.items():
        with InfluxDBStore.from_url(url, spool_dir=tmp_path / database) as store:
            assert (store.base_url, store.database) == (base, database)
            assert store.url == url.replace("localhost/", "localhost:8086/").replace(
                "example/", "example:8086/"
            ).replace("influxdb+http:", "influxdb:")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("influxdb://localhost:8086", "names no database"),
        ("influxdb://localhost:8086/", "names no database"),
        ("influxdb://localhost:8086/db/rp", "more than a database name"),
        ("influxdb://localhost:8086/db?x=1", "more than a database name"),
        ("influxdb://localhost:notaport/db", "is not valid"),
        ("influxdb:///db", "names no host"),
        ("http://localhost:8086/db", "is not an InfluxDB URL"),
        ("influxdb://admin:s3cr3t@localhost:8086/db", "TUBAI_INFLUXDB_TOKEN"),
    ],
)
def test_from_url_refuses_bad_urls_in_one_line(url: str, expected: str) -> None:
    with pytest.raises(UsageError) as e:
        InfluxDBStore.from_url(url)
    message = str(e.value)
    assert expected in message and "influxdb://" in message and "\n" not in message
    assert "s3cr3t" not in message


def test_spool_dir_defaults_under_data_spool_or_tubai_spool_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUBAI_SPOOL_DIR", raising=False)
    with open_store("influxdb://127.0.0.1:1/tubai") as store:
        assert store.spool_dir == Path("data/spool/127.0.0.1_1_tubai")
        assert (tmp_path / "data/spool/127.0.0.1_1_tubai/spool.db").exists()
    monkeypatch.setenv("TUBAI_SPOOL_DIR", str(tmp_path / "elsewhere"))
    with open_store("influxdb://127.0.0.1:1/tubai") as store:
        assert store.spool_dir == tmp_path / "elsewhere" / "127.0.0.1_1_tubai"


def test_a_spool_serves_one_database(tmp_path: Path) -> None:
    InfluxDBStore("http://127.0.0.1:1", "one", spool_dir=tmp_path, **FAST).close()
    with pytest.raises(StoreError, match="holds points for database 'one'"):
        InfluxDBStore("http://127.0.0.1:1", "two", spool_dir=tmp_path)


# -- writing and reading --------------------------------------------------------------------------


@pytest.mark.influxdb
def test_round_trip_keeps_types_tags_and_nanoseconds(influxd: InfluxTarget, tmp_path: Path) -> None:
    points = [
        Point(
            "run",
            {"run_id": "r1", "model": "mobilenet"},
            {"inferences": 1000, "top1": 0.681, "ok": True, "event": "end", "params": 2542856},
            T0,
        ),
        Point(
            "run", {"run_id": "r1", "model": "mobilenet"}, {"event": "start", "ok": False}, T0 - 7
        ),
        Point("run", {"run_id": "r2", "model": "resnet", "backend": ""}, {"big": 2**40}, T0 + 1),
    ]
    with store_for(influxd, tmp_path) as store:
        store.write(points)
        store.flush(10)
        got = store.read("run", T0 - 10, T0 + 10)
        assert store.pending() == 0

    assert [p.time_ns for p in got] == [T0 - 7, T0, T0 + 1]
    start, end, other = got
    assert start.tags == {"run_id": "r1", "model": "mobilenet"}
    assert start.fields == {"event": "start", "ok": False}
    assert end.fields == {
        "inferences": 1000.0, "top1": 0.681, "ok": True, "event": "end", "params": 2542856.0
    }  # fmt: skip
    assert type(end.fields["inferences"]) is float and type(end.fields["ok"]) is bool
    assert other.tags == {"run_id": "r2", "model": "resnet"}, "empty tags are left out"
    assert other.fields == {"big": float(2**40)}


@pytest.mark.influxdb
def test_read_filters_by_tags_fields_and_time(influxd: InfluxTarget, tmp_path: Path) -> None:
    points = [
        Point("energy", {"domain": d, "source": "rapl"}, {"joules_total": float(i), "watts": 5.0},
              T0 + i)
        for i, d in enumerate(["package-0", "dram-0", "package-0", "psys"])
    ]  # fmt: skip
    with store_for(influxd, tmp_path) as store:
        store.write(points)
        store.flush(10)
        package = store.read("energy", T0, T0 + 10, tags={"domain": "package-0"})
        assert [p.fields["joules_total"] for p in package] == [0.0, 2.0]
        assert (
            store.read("energy", T0, T0 + 10, tags={"domain": "package-0", "source": "nvml"}) == []
        )
        assert store.read("energy", T0, T0 + 10, tags={"nosuch": "x"}) == []
        watts = store.read("energy", T0 + 1, T0 + 2, fields=["watts"])
        assert [(p.time_ns, p.fields) for p in watts] == [
            (T0 + 1, {"watts": 5.0}),
            (T0 + 2, {"watts": 5.0}),
        ]
        assert store.read("energy", T0, T0 + 10, fields=["nosuch"]) == []
        assert store.read("energy", T0, T0 + 10, fields=[]) == []
        assert store.read("nosuch", T0, T0 + 10) == []
        assert len(store.read("energy", T0 + 3, T0 + 3)) == 1, "both ends are inclusive"


@pytest.mark.influxdb
def test_hostile_strings_round_trip_as_tags_fields_and_filters(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    fields = [{"event": s, "note": s + "\nline two", "i": i} for i, s in enumerate(HOSTILE)]
    points = [
        Point("run", {"run_id": s, "model": s}, fields[i], T0 + i) for i, s in enumerate(HOSTILE)
    ]
    odd_name = 'my "measure", x=y z'
    points.append(Point(odd_name, {'tag "k", =': "v"}, {'field "f", =': 1.5}, T0))
    with store_for(influxd, tmp_path) as store:
        store.write(points)
        store.flush(10)
        everything = store.read("run", T0, T0 + 100)
        assert [(p.tags, p.fields["event"], p.fields["note"]) for p in everything] == [
            ({"run_id": s, "model": s}, s, s + "\nline two") for s in HOSTILE
        ]
        for i, s in enumerate(HOSTILE):
            only = store.read("run", T0, T0 + 100, tags={"run_id": s})
            assert [(p.time_ns, p.tags["run_id"]) for p in only] == [(T0 + i, s)], s
        odd = store.read(odd_name, T0, T0, tags={'tag "k", =': "v"}, fields=['field "f", ='])
        assert [(p.tags, p.fields) for p in odd] == [({'tag "k", =': "v"}, {'field "f", =': 1.5})]
    assert influxd.database in influxd.server.databases()
    assert "x" not in influxd.server.databases()


@pytest.mark.parametrize(
    ("tags", "fields", "expected"),
    [
        ({"run_id": "two\nlines"}, {"f": 1.0}, "control character"),
        ({"run_id": "tab\there"}, {"f": 1.0}, "control character"),
        ({"run_id": "nul\x00"}, {"f": 1.0}, "control character '\\\\x00'"),
        ({"run_id": "esc\x1b[31m"}, {"f": 1.0}, "control character"),
        ({"run\x7fid": "x"}, {"f": 1.0}, "control character"),
        ({}, {"f\u2028g": 1.0}, "control character"),
        ({"run_id": "ends with \\"}, {"f": 1.0}, "trailing backslash"),
        ({"": "x"}, {"f": 1.0}, "must be a string"),
        ({"time": "x"}, {"f": 1.0}, "reserved"),
        ({}, {"time": 1.0}, "reserved"),
        ({}, {"f": [1, 2]}, "has type list"),
        ({"a\\b": "x"}, {"f": 1.0}, "a backslash"),
        ({}, {"f\\g": 1.0}, "a backslash"),
    ],
)
def test_unstorable_points_are_refused_before_spooling(
    tmp_path: Path, tags: dict[str, str], fields: dict[str, Any], expected: str
) -> None:
    with InfluxDBStore("http://127.0.0.1:1", "db", spool_dir=tmp_path, **FAST) as store:
        good = Point("run", {"run_id": "ok"}, {"f": 1.0}, T0)
        with pytest.raises(UsageError, match=expected):
            store.write([good, Point("run", tags, fields, T0 + 1)])
        assert store.pending() == 0, "a refused batch spools nothing"
        for name in ("back\\slash", "#comment", "tab\t", "nul\x00"):
            with pytest.raises(UsageError, match="measurement"):
                store.write([Point(name, {}, {"f": 1.0}, T0)])
        store.write([Point("run", {}, {"nan": float("nan"), "inf": float("inf")}, T0)])
        assert store.pending() == 0, "a point with nothing storable is skipped"


_NAMES = st.text(st.sampled_from("ab_ ,=\"'é✓"), min_size=1, max_size=6)
_VALUES = st.one_of(st.floats(), st.integers(-(10**20), 10**20), st.booleans(), st.text(max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, max_size=5), st.integers(0, 2**62))
def test_fields_are_written_as_influxdb_client_writes_them(
    fields: dict[str, Any], time_ns: int
) -> None:
    # The fields are formatted by tubai, the series by influxdb-client: the line is the client's.
    expected = LinePoint("m,x").tag("a b", "c=d").time(time_ns, WritePrecision.NS)
    for key, value in fields.items():  # every number as a float, as the store writes it
        expected.field(key, value if isinstance(value, bool | str) else float(value))
    point = Point("m,x", {"a b": "c=d"}, fields, time_ns)
    assert line_protocol(point) == expected.to_line_protocol()


@pytest.mark.influxdb
def test_outage_points_wait_in_the_spool_and_arrive_once_in_order(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    with store_for(influxd, tmp_path, batch_size=50) as store:
        store.write(seq_points(100))
        store.flush(10)
        store.write(seq_points(3000, 100))  # the sender is busy with these when the server stops
        influxd.stop()
        for start in range(3100, 3400, 60):
            store.write(seq_points(60, start))
        with pytest.raises(StoreError) as e:
            store.flush(0.5)
        message = str(e.value)
        assert "point(s) still spooled" in message and str(store.spool_dir) in message
        assert "unreachable" in message and "\n" not in message
        assert 300 <= store.pending() <= 3300
        influxd.start()
        store.flush(15)
        got = store.read("energy", T0, T0 + 10**12)
    assert [p.fields["seq"] for p in got] == [float(i) for i in range(3400)]
    count = influxd.query('SELECT COUNT("seq") FROM "energy"')["results"][0]["series"][0]
    assert count["values"][0][1] == 3400


@pytest.mark.influxdb
def test_a_new_store_drains_what_an_earlier_one_left(influxd: InfluxTarget, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    dead = InfluxDBStore("http://127.0.0.1:1", influxd.database, spool_dir=spool_dir, **FAST)
    dead.write(seq_points(30))
    dead.close()  # the server never answered: the points stay on disk
    leftover = Spool(spool_dir)
    assert len(leftover) == 30
    leftover.close()

    with store_for(influxd, tmp_path) as store:
        store.write(seq_points(10, 30))
        store.flush(10)
        got = store.read("energy", T0, T0 + 10**9)
        assert store.pending() == 0
    assert [p.fields["seq"] for p in got] == [float(i) for i in range(40)]


@pytest.mark.influxdb
def test_points_spooled_by_a_killed_process_are_sent_by_the_next(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from exporters.schema import Point
        from exporters.stores.influxdb import InfluxDBStore
        store = InfluxDBStore("http://127.0.0.1:1", sys.argv[1], spool_dir=sys.argv[2])
        for i in range(50):
            store.write([Point("energy", {"domain": "psys"}, {"seq": i}, 1000 + i)])
        print("written", flush=True)
        time.sleep(60)
        """
    )
    spool_dir = tmp_path / "spool"
    args = [sys.executable, "-c", script, influxd.database, str(spool_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with store_for(influxd, tmp_path) as store:
        store.flush(10)
        got = store.read("energy", 0, 2000)
    assert [(p.time_ns, p.fields["seq"]) for p in got] == [(1000 + i, float(i)) for i in range(50)]


@pytest.mark.influxdb
def test_points_the_server_refuses_are_kept_aside_not_retried_forever(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    points = [
        Point("m", {}, {"f": 1.0}, T0),
        Point("m", {}, {"f": "now a string"}, T0 + 1),  # field type conflict: HTTP 400
        Point("m", {}, {"f": 3.0}, T0 + 2),
        Point("m", {}, {"f": 4.0}, T0 + 3),
    ]
    with store_for(influxd, tmp_path) as store:
        store.write(points)
        store.flush(10)
        store.write([Point("m", {}, {"f": f"s{i}"}, T0 + 10 + i) for i in range(3)])
        store.write([Point("m", {}, {"f": 5.0}, T0 + 20)])
        store.flush(10)
        got = store.read("m", T0, T0 + 100)
    assert [p.fields["f"] for p in got] == [1.0, 3.0, 4.0, 5.0]
    text = (tmp_path / "spool" / REJECTED_FILE).read_text().splitlines()
    notes = [line for line in text if line.startswith("# ")]
    assert text[0] in notes and all("HTTP 400" in n and "conflict" in n for n in notes)
    assert [line for line in text if line not in notes] == [
        f'm f="now a string" {T0 + 1}',
        *(f'm f="s{i}" {T0 + 10 + i}' for i in range(3)),
    ]


@pytest.mark.influxdb
def test_large_read_merges_series_and_chunks_in_time_order(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    n = 12_000
    points = [
        Point("energy", {"domain": f"d{i % 3}"}, {"joules_total": float(i)}, T0 + i)
        for i in range(n)
    ]
    with store_for(influxd, tmp_path) as store:
        store.write(points)
        store.flush(20)
        got = store.read("energy", T0, T0 + n)
    assert [p.time_ns for p in got] == [T0 + i for i in range(n)]
    assert all(p.tags == {"domain": f"d{i % 3}"} for i, p in enumerate(got))


@pytest.mark.influxdb
def test_missing_database_is_created_on_write_or_reported(
    influxd: InfluxTarget, tmp_path: Path
) -> None:
    with store_for(influxd, tmp_path, create_database=False) as store:
        with pytest.raises(StoreError, match="not found") as e:
            store.read("energy", 0, T0)
        assert influxd.database in str(e.value)
        store.write(seq_points(1))
        with pytest.raises(StoreError, match=f"database '{influxd.database}' not found"):
            store.flush(0.5)
    assert influxd.database not in influxd.server.databases()
    with store_for(influxd, tmp_path) as store:  # same spool: the point is still there
        store.flush(10)
        assert len(store.read("energy", 0, T0 + 10**9)) == 1


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = InfluxDBStore("http://127.0.0.1:1", "db", spool_dir=tmp_path, **FAST)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.write(seq_points(1))


# -- credentials and server errors, against a recording HTTP server -------------------------------


class Recorder(ThreadingHTTPServer):
    """Answers /write and /query as told, and records every request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.write_status = 204
        self.query_status = 200
        self.query_body = {"results": [{"statement_id": 0}]}
        self.hang_up = False  # close each connection after its answer

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"  # keep-alive, unless the recorder is told to hang up

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": body,
             "port": self.client_address[1]}  # the client's: one per connection
        )  # fmt: skip
        if self.path.startswith("/write"):
            status, payload = self.server.write_status, b'{"error":"nope"}'
        else:
            status, payload = self.server.query_status, json.dumps(self.server.query_body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload) if status != 204 else 0))
        self.end_headers()
        if status != 204:
            self.wfile.write(payload)
        self.close_connection = self.server.hang_up  # without saying so: a stale keep-alive

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_token_goes_in_the_header_and_nowhere_else(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "tok-3xtr3mely-s3cret"
    monkeypatch.setenv("TUBAI_INFLUXDB_TOKEN", token)
    monkeypatch.setenv("TUBAI_INFLUXDB_USERNAME", "ignored-when-a-token-is-set")
    url = recorder.http.replace("http://", "influxdb://") + "/tubai"
    with InfluxDBStore.from_url(url, spool_dir=tmp_path, **FAST) as store:
        store.write(seq_points(3))
        store.flush(5)
        assert token not in repr(store) and token not in str(vars(store).get("url"))
        writes = [r for r in recorder.requests if r["path"].startswith("/write")]
        assert writes[0]["headers"]["Authorization"] == f"Token {token}"
        assert writes[0]["headers"]["Content-Encoding"] == "gzip"
        assert "db=tubai" in writes[0]["path"] and "precision=ns" in writes[0]["path"]
        assert writes[0]["body"].decode().splitlines()[0].startswith("energy,domain=package-0")
        assert all(token not in r["path"] for r in recorder.requests)

        recorder.write_status = 401
        store.write(seq_points(1, 3))
        with pytest.raises(StoreError) as e:
            store.flush(0.5)
        assert "credentials refused (HTTP 401)" in str(e.value) and token not in str(e.value)
        recorder.query_status = 401
        with pytest.raises(StoreError) as e:
            store.read("energy", 0, 1)
        assert "TUBAI_INFLUXDB_TOKEN" in str(e.value) and token not in str(e.value)
        recorder.write_status = 204
        store.flush(5)  # auth errors are retried, never dropped


@pytest.mark.parametrize("hang_up", [False, True])
def test_writes_keep_one_connection_and_open_it_again_when_the_server_closed_it(
    recorder: Recorder, tmp_path: Path, hang_up: bool
) -> None:
    recorder.hang_up = hang_up
    with InfluxDBStore(recorder.http, "tubai", spool_dir=tmp_path, **FAST) as store:
        for batch in range(3):
            store.write(seq_points(2, 2 * batch))
            store.flush(5)
            assert store._sender.last_error is None, "a closed idle connection is no failure"
    writes = [r for r in recorder.requests if r["path"].startswith("/write")]
    assert [len(r["body"].splitlines()) for r in writes] == [2, 2, 2]
    assert len({r["port"] for r in writes}) == (3 if hang_up else 1)


def test_username_and_password_use_basic_auth(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TUBAI_INFLUXDB_TOKEN", raising=False)
    monkeypatch.setenv("TUBAI_INFLUXDB_USERNAME", "tubai")
    monkeypatch.setenv("TUBAI_INFLUXDB_PASSWORD", "pa55word")
    with InfluxDBStore(recorder.http, "tubai", spool_dir=tmp_path, **FAST) as store:
        store.read("energy", 0, 1)
        assert "pa55word" not in repr(store)
    sent = recorder.requests[0]
    assert sent["headers"]["Authorization"] == "Basic dHViYWk6cGE1NXdvcmQ="
    assert "pa55word" not in sent["path"]


def test_query_errors_become_store_errors(recorder: Recorder, tmp_path: Path) -> None:
    with InfluxDBStore(recorder.http, "tubai", spool_dir=tmp_path, **FAST) as store:
        recorder.query_body = {"results": [{"statement_id": 0, "error": "error parsing query"}]}
        with pytest.raises(StoreError, match="refused a query: error parsing query"):
            store.read("energy", 0, 1)
        recorder.query_body = {"error": "bad request"}
        recorder.query_status = 400
        with pytest.raises(StoreError, match="bad request"):
            store.read("energy", 0, 1)
        recorder.query_status = 500
        recorder.query_body = "not json"  # type: ignore[assignment]
        with pytest.raises(StoreError, match="HTTP 500"):
            store.read("energy", 0, 1)
    with InfluxDBStore("http://127.0.0.1:1", "tubai", spool_dir=tmp_path, **FAST) as store:
        with pytest.raises(StoreError, match="did not answer a query"):
            store.read("energy", 0, 1)
