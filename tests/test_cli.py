"""The command-line contract: bad input gets one line naming the problem and fix, exit 2."""

from __future__ import annotations

import errno
import json
import re
import socket
import subprocess
import sys

import pytest

from exporters import metrics
from exporters.agent import Agent
from exporters.errors import ConfigError
from exporters.schema import Point, energy_tags
from exporters.stores.sqlite import SQLiteStore

TF_LOG = re.compile(
    r"^([IWEF]\d{4} \S+ +\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl|Downloading data from)"
)


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("exporters", "run", "--store", "mysql://x/y"), "unknown scheme"),
        (("exporters", "run", "--store", "sqlite://"), "names no file"),
        (("exporters", "run", "--interval", "0"), "not a number of seconds above 0"),
        (("exporters", "run", "--duration", "soon"), "not a number of seconds above 0"),
        (("exporters", "run", "--config", "/nonexistent.yaml"), "cannot read config file"),
        (("exporters", "run", "--metrics-port", "99999"), "'metrics.port' is 99999"),
        (("exporters", "launch"), "invalid choice"),
        (("scoring", "energy", "--start", "yesterday"), "RFC 3339"),
        (("scoring", "energy", "--start", "now", "--end=-1h"), "is not after --start"),
        (("scoring", "energy"), "--start"),
        (("scoring", "energy", "--start=-1h", "--store", "influxdb://h:8086/"), "database"),
        (("benchmark", "run", "--model", "efficientnet_v2s"), "did you mean 'efficientnetv2_s'"),
        (("benchmark", "run", "--model", "digits_cnn", "--batch-size", "0"), "above 0"),
        (("benchmark", "run", "--model", "digits_cnn", "--repeats", "two"), "above 0"),
        (("benchmark", "run", "--model", "digits_cnn", "--run-id", "a\nb"), "line breaks"),
        (("benchmark", "run", "--model", "digits_cnn", "--run-id", "a\\"), "final backslash"),
        (("benchmark", "run", "--model", "digits_cnn", "--replace"), "give the --run-id to"),
        (("benchmark", "run", "--model", "mobilenetv2", "--data", "/nonexistent/val"), "/val"),
        (("benchmark", "run", "--model", "mobilenetv2", "--weights", "/x/w.keras"), "w.keras"),
        (("benchmark", "run", "--model", "mobilenetv2", "--weights", "imagenet"), "imagenet"),
        (("benchmark", "run"), "--model"),
        (("exporters", "run", "--config", "{bad_key}"), "did you mean 'interval_s'"),
        (("exporters", "doctor", "--config", "{bad_yaml}"), "not valid YAML at line 3"),
        (("exporters", "run", "--store", "influxdb://u:secret@h/db"), "credentials"),
        (("scoring", "energy", "--start", "2026-02-30T00:00:00Z"), "RFC 3339"),
        (("scoring", "runs", "--score", "speed"), "invalid choice"),
        (("benchmark", "run", "--model", "mobilenetv2", "--data", "{not_wnids}"), "wnid"),
        (("benchmark", "run", "--model", "mobilenetv2", "--data", "{flat}"), "labels.csv"),
        (("benchmark", "run", "--model", "digits_cnn", "--limit", "-5"), "above 0"),
        # times a store cannot hold, odd digits, non-finite numbers, files that are not UTF-8
        (("scoring", "energy", "--start", "1969-12-31T23:59:59Z"), "outside what a store can"),
        (("scoring", "energy", "--start", "2263-01-01T00:00:00Z"), "outside what a store can"),
        (("scoring", "runs", "--since", "99999999999999999999"), "outside what a store can"),
        (("scoring", "report", "--out", "r", "--since=-99999999999d"), "outside what a store"),
        (("scoring", "runs", "--since", "²"), "not understood"),
        (("exporters", "run", "--duration", "١٢"), "not a number of seconds above 0"),
        (("exporters", "run", "--duration", "1e99"), "at most 1e+09"),
        (("benchmark", "run", "--model", "digits_cnn", "--repeats", "١٢"), "whole number above 0"),
        (("exporters", "run", "--config", "{inf}"), "'interval_s.power' is inf"),
        (("exporters", "doctor", "--config", "{latin1}"), "not UTF-8 text (byte 0xe9"),
        (("exporters", "doctor", "--config", "{wrong_type}"), "'sources.dcgm.url' is ['a']"),
        # a report --out onto a file, or where nothing can be written
        (("scoring", "report", "--out", "{bad_key}"), "is a file, not a directory"),
        (("scoring", "report", "--out", "/proc/tubai-report"), "cannot be made"),
        # URLs that are not what they seem: influxdb://h:0/db once wrote to port 8086
        (("scoring", "energy", "--start=-1h", "--store", "influxdb://h:0/db"), "no usable port"),
        (("exporters", "run", "--store", "influxdb://h:/db"), "no usable port"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, words) -> None:
    (tmp_path / "bad_key.yaml").write_text("intervals: {power: 0.1}\n")
    (tmp_path / "bad_yaml.yaml").write_text("store: x\ninterval_s: {power: [\n")
    (tmp_path / "inf.yaml").write_text("interval_s: {power: .inf}\n")
    (tmp_path / "latin1.yaml").write_bytes("host: café\n".encode("latin-1"))
    (tmp_path / "wrong_type.yaml").write_text("sources: {dcgm: {enabled: true, url: [a]}}\n")
    (tmp_path / "not_wnids" / "cats").mkdir(parents=True)
    (tmp_path / "not_wnids" / "cats" / "a.JPEG").write_bytes(b"\xff\xd8")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.JPEG").write_bytes(b"\xff\xd8")
    files = {
        "bad_key": tmp_path / "bad_key.yaml",
        "bad_yaml": tmp_path / "bad_yaml.yaml",
        "not_wnids": tmp_path / "not_wnids",
        "flat": tmp_path / "flat",
        **{name: tmp_path / f"{name}.yaml" for name in ("inf", "latin1", "wrong_type")},
    }
    args = [a.format(**files) for a in args]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    # TensorFlow's C++ runtime logs at import whatever TF_CPP_MIN_LOG_LEVEL says, and Keras
    # announces a weights download before it tries: neither is ours.
    lines = [line for line in result.stderr.strip().splitlines() if not TF_LOG.match(line)]
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _last_line_exit_2(result: subprocess.CompletedProcess, prog: str, words: str) -> None:
    """Exit 2, no traceback, and the last line on stderr is the error with ``words``: a command
    that has started logs its progress before."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: ") and words in last, result.stderr


def test_a_metrics_port_in_use_or_an_address_not_here_is_one_line_exit_2(tmp_path) -> None:
    (tmp_path / "addr.yaml").write_text("metrics: {port: 0, addr: 192.0.2.1}\n")  # TEST-NET-1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        for args, words in [
            (("--metrics-port", str(busy.getsockname()[1])), "is in use: choose another"),
            (("--config", "addr.yaml"), "'192.0.2.1' cannot be listened on"),
        ]:
            result = cli("exporters", "run", "--duration", "0.1", *args, cwd=tmp_path)
            _last_line_exit_2(result, "exporters", words)


def test_a_metrics_port_not_permitted_says_which_are(tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(metrics, "start_http_server", refuse)
    with SQLiteStore(tmp_path / "m.db") as store:
        with pytest.raises(ConfigError, match="port 80 on '::' is not permitted: ports below 1024"):
            metrics.serve_metrics(Agent([], store, host="h"), 80, "::")


def test_a_corrupt_image_is_a_fail_event_then_one_line_exit_2(tmp_path) -> None:
    """The pass that meets it writes a ``fail`` event with the reason; then one line, exit 2."""
    tf = pytest.importorskip("tensorflow")
    from benchmark.ilsvrc import imagenet_wnids
    from benchmark.records import read_events

    folder = tmp_path / "val" / imagenet_wnids()[1]
    folder.mkdir(parents=True)
    good = tf.io.encode_jpeg(tf.zeros((40, 40, 3), tf.uint8)).numpy()
    for k in range(8):  # batches of 2: the warm-up takes 4, the pass meets the 7th
        (folder / f"img{k}.JPEG").write_bytes(good if k != 6 else good[: len(good) // 3])
    result = cli("benchmark", "run", "--model", "mobilenetv3_small", "--weights", "random",
                 "--data", "val", "--batch-size", "2", "--run-id", "broken",
                 "--store", "sqlite:///b.db", cwd=tmp_path)  # fmt: skip
    _last_line_exit_2(result, "benchmark", "an image in --data 'val' cannot be decoded (")
    assert "Invalid JPEG data" in result.stderr.strip().splitlines()[-1]
    with SQLiteStore(tmp_path / "b.db") as store:
        events = read_events(store, "broken")
    assert [e.fields["event"] for e in events] == ["start", "fail"]
    assert "Invalid JPEG data" in events[1].fields["reason"]


def test_scoring_energy_prints_a_table_and_json(tmp_path) -> None:
    s = 1_000_000_000
    with SQLiteStore(tmp_path / "x.db") as store:
        tags = {**energy_tags("rapl", "package-0"), "host": "lab1"}
        store.write(Point("energy", tags, {"joules_total": 10.0 * i}, i * s) for i in range(11))
    url = f"sqlite:///{tmp_path}/x.db"
    table = cli("scoring", "energy", "--store", url, "--start", str(2 * s), "--end", str(7 * s))
    assert table.returncode == 0, table.stderr
    assert "package-0" in table.stdout and "total 50.000 J" in table.stdout
    out = cli("scoring", "energy", "--store", url, "--start", str(2 * s), "--end", str(7 * s),
              "--json")  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["total_joules"] == pytest.approx(50.0)
    assert doc["domains"][0] | {"joules": 50.0} == {
        "host": "lab1", "source": "rapl", "domain": "package-0", "joules": 50.0,
        "method": "counter", "estimated": False, "coverage": 1.0, "role": "counted",
        "counted": True, "samples": 6, "power_joules": None, "mismatch": False,
        "edges": "read",  # samples stand exactly at both edges
    }  # fmt: skip
    assert doc["start"] == "1970-01-01T00:00:02.000000000Z"


def test_doctor_explains_every_source(tmp_path) -> None:
    result = cli("exporters", "doctor", "--sysfs-root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line[:1].strip()}
    assert set(lines) == {"rapl", "nvml", "dcgm", "system", "cpu_model", "ipmi"}
    assert "modprobe intel_rapl_msr" in lines["rapl"]
    assert "Used here because no RAPL domain is readable" in lines["cpu_model"]
    assert "disabled" in lines["dcgm"]
