"""The command-line contract: bad input gets one line naming the problem and fix, exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

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
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, words) -> None:
    (tmp_path / "bad_key.yaml").write_text("intervals: {power: 0.1}\n")
    (tmp_path / "bad_yaml.yaml").write_text("store: x\ninterval_s: {power: [\n")
    (tmp_path / "not_wnids" / "cats").mkdir(parents=True)
    (tmp_path / "not_wnids" / "cats" / "a.JPEG").write_bytes(b"\xff\xd8")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.JPEG").write_bytes(b"\xff\xd8")
    files = {
        "bad_key": tmp_path / "bad_key.yaml",
        "bad_yaml": tmp_path / "bad_yaml.yaml",
        "not_wnids": tmp_path / "not_wnids",
        "flat": tmp_path / "flat",
    }
    args = [a.format(**files) for a in args]
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    # TensorFlow's C++ runtime logs at import whatever TF_CPP_MIN_LOG_LEVEL says, and Keras
    # announces a weights download before it tries: neither is ours.
    lines = [line for line in result.stderr.strip().splitlines() if not TF_LOG.match(line)]
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


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
        "method": "counter", "estimated": False, "coverage": 1.0, "counted": True,
        "samples": 6, "power_joules": None, "mismatch": False,
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
