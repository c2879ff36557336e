"""A lab of machines and one central store: TLS, per-host write-only credentials, one report.

One real ``influxd`` plays the central machine (``influxd.start_influxd``): HTTPS with a
certificate that ``scripts/make-certs.sh`` signed with a fresh local CA, and credentials
required. Each simulated host is the real exporter (``python -m exporters run``) on a fixture
RAPL tree of its own, whose counters a forked writer advances at that host's power, with its own
host tag, its own spool and its own InfluxDB 1.x user that may only write the lab's database
(what ``make token`` mints on the central machine). Runs are written with the same credential,
as the benchmark on that host writes them; the central machine's report (``python -m scoring
report``) then scores every host's runs and shows the cross-machine table.

Faults: a revoked credential, and a CA that did not sign the server's certificate, each give one
line saying what is wrong and how to fix it; the spool keeps every point, and the exporter
started again with a fresh credential, or the right CA, delivers them all. The CA option itself
(the store URL's ``?ca=``, else ``TUBAI_INFLUXDB_CA``) is checked first, without a server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxd import InfluxD, find_influxd, make_certs, start_influxd
from rapl_writer import ProfileWriter, make_tree
from run_fixtures import add_events

from exporters.errors import StoreError, UsageError
from exporters.schema import Point
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.influxdb_url import CA_ENV, Endpoint

DB = "lab"
WRAP_J = 262_144.0
HOSTS = {"lab-a": 10.0, "lab-b": 20.0, "lab-c": 40.0}  # each host's package power, watts
INTERVAL_S = 0.05
WINDOW_S = 1.0
S = 1_000_000_000


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxD]:
    """The central machine's InfluxDB: over TLS (a local CA's certificate), auth required."""
    if find_influxd() is None:
        if os.environ.get("TUBAI_REQUIRE_INFLUXDB") == "1":
            pytest.fail("influxd not found (TUBAI_REQUIRE_INFLUXDB=1 requires it)")
        pytest.skip("influxd not found: apt-get install influxdb (Debian)")
    server = start_influxd(tmp_path_factory.mktemp("central"), tls=True, auth=True)
    yield server
    server.stop()


class Host:
    """One simulated machine: a RAPL tree at ``watts``, its exporter, its spool, its log."""

    def __init__(self, root: Path, name: str, watts: float) -> None:
        self.root, self.name, self.watts = root / name, name, watts
        zones = make_tree(self.root / "sys", {"package-0": WRAP_J})
        self.writer = ProfileWriter(zones, {"package-0": WRAP_J}, lambda _d, t: watts * t)
        self.writer.start()
        self.log = self.root / "exporter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, url: str, user: str, password: str) -> None:
        env = {
            **os.environ,
            "TUBAI_INFLUXDB_USERNAME": user,
            "TUBAI_INFLUXDB_PASSWORD": password,
            "TUBAI_SPOOL_DIR": str(self.root / "spool"),
            "TUBAI_SAMPLER_PRIORITY": "normal",
            "TUBAI_FLUSH_INTERVAL_S": "0.2",
            **{f"TUBAI_SOURCES__{s}__ENABLED": "false" for s in ("NVML", "SYSTEM", "CPU_MODEL")},
        }
        env.pop("TUBAI_INFLUXDB_CA", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporters", "run", "--store", url, "--host", self.name,
                 "--sysfs-root", str(self.root / "sys"), "--interval", str(INTERVAL_S)],
                stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip

    def stop(self) -> str:
        """SIGTERM the exporter; its log so far. It must exit 0 without a traceback."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        text = self.log.read_text(errors="replace")
        assert rc == 0 and "Traceback" not in text, text
        return text

    def written(self) -> int:
        """The points the last exporter wrote into its store (its last line says)."""
        counts = re.findall(r"stopped after writing (\d+) points", self.log.read_text())
        assert counts, self.log.read_text()
        return int(counts[-1])

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text(errors="replace"):
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"no {text!r} in {self.log.read_text()}"
            time.sleep(0.05)


def _samples(central: InfluxD, host: str, after_ns: int = 0) -> list[Point]:
    """The host's package samples in the central store (read with the admin's credential)."""
    q = (
        f"SELECT joules_total FROM energy WHERE host = '{host}' AND domain = 'package-0' "
        f"AND time >= {after_ns}"
    )
    series = central.query(q, DB)["results"][0].get("series") or []
    rows = [row for s in series for row in s["values"]]
    return [Point("energy", {"host": host}, {"joules_total": v}, t) for t, v in rows]


def _points(central: InfluxD, host: str) -> int:
    """How many points of any measurement the central store holds from ``host`` (in each
    series, every point has the field counted most)."""
    q = f"SELECT count(*) FROM /.*/ WHERE host = '{host}' GROUP BY *"
    series = central.query(q, DB)["results"][0].get("series") or []
    return sum(max(v for v in s["values"][0][1:] if v is not None) for s in series)


def _wait_samples(central: InfluxD, host: str, after_ns: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not _samples(central, host, after_ns):
        assert time.monotonic() < deadline, f"no sample of {host} after {after_ns} arrived"
        time.sleep(0.1)


def _writer_store(central: InfluxD, host: str, password: str, spool: Path) -> InfluxDBStore:
    return InfluxDBStore.from_url(
        central.url(DB), username=host, password=password, spool_dir=spool
    )


# -- the CA option: the store URL's ?ca=, else TUBAI_INFLUXDB_CA ---------------------------------


def test_the_ca_file_comes_from_the_url_else_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = Endpoint.from_url("influxdb+https://lab-1:8086/lab?ca=/etc/tubai/ca%20x.pem")
    assert endpoint.ca_file == "/etc/tubai/ca x.pem" and endpoint.base_url == "https://lab-1:8086"
    assert Endpoint.from_url(endpoint.url) == endpoint
    bad = {
        "influxdb://lab-1/lab?ca=/x.pem": "for plain HTTP",
        "influxdb+https://lab-1/lab?ca=": "the only parameter is ?ca=",
        "influxdb+https://lab-1/lab?ca=/a&ca=/b": "the only parameter is ?ca=",
        "influxdb+https://lab-1/lab?ca=/a&x=1": "the only parameter is ?ca=",
    }
    for url, why in bad.items():
        with pytest.raises(UsageError, match=why.replace("?", r"\?")):
            Endpoint.from_url(url)
    certs = make_certs(tmp_path / "certs")
    ca, other = str(certs / "ca.pem"), str(certs / "server.pem")
    monkeypatch.setenv(CA_ENV, ca)
    url = "influxdb+https://127.0.0.1:1/lab"
    with InfluxDBStore.from_url(url, spool_dir=tmp_path / "a") as store:
        assert store.url == f"{url}?ca={ca}"  # the environment's, said where it shows
    with InfluxDBStore.from_url(f"{url}?ca={other}", spool_dir=tmp_path / "b") as store:
        assert store.url.endswith(f"?ca={other}")  # the URL's wins
    with InfluxDBStore.from_url("influxdb://127.0.0.1:1/lab", spool_dir=tmp_path / "c") as store:
        assert "ca=" not in store.url  # plain HTTP has no CA


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=30))
def test_a_ca_parameter_is_kept_as_given_or_a_usage_error(value: str) -> None:
    url = f"influxdb+https://lab-1:8086/lab?ca={quote(value, safe='')}"
    try:
        endpoint = Endpoint.from_url(url)
    except UsageError as e:
        assert "\n" not in str(e) and not value.strip(), str(e)
    else:
        assert endpoint.ca_file == value and Endpoint.from_url(endpoint.url) == endpoint


@pytest.mark.parametrize("ca", ["missing.pem", "not-pem.txt"])
def test_an_unusable_ca_file_is_one_line_and_exit_status_2(tmp_path: Path, ca: str) -> None:
    (tmp_path / "not-pem.txt").write_text("hello\n")
    url = f"influxdb+https://127.0.0.1:1/lab?ca={tmp_path / ca}"
    done = subprocess.run(
        [sys.executable, "-m", "exporters", "run", "--store", url, "--duration", "0.1"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TUBAI_SPOOL_DIR": str(tmp_path / "spool")},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"CA file {tmp_path / ca} cannot be used" in line and CA_ENV in line


# -- three hosts, one central store -----------------------------------------------------------


@pytest.mark.influxdb
@pytest.mark.timing
def test_three_hosts_write_over_tls_with_write_only_users_into_one_report(
    central: InfluxD, tmp_path: Path
) -> None:
    passwords = {name: central.add_writer(name, DB) for name in HOSTS}
    hosts = [Host(tmp_path, name, watts) for name, watts in HOSTS.items()]
    try:
        for host in hosts:
            host.start(central.url(DB), host.name, passwords[host.name])
        for host in hosts:
            _wait_samples(central, host.name, 0)
        start_s = time.time() + 0.5  # each host's run window, inside its samples
        window = (round(start_s * S), round((start_s + WINDOW_S) * S))  # as add_events writes
        for host in hosts:  # written like the benchmark on that host: its own credential
            with _writer_store(central, host.name, passwords[host.name], host.root / "b") as s:
                add_events(s, f"run-{host.name}", "digits_cnn", host.name, start_s, WINDOW_S)
        for host in hosts:
            _wait_samples(central, host.name, window[1] + 2 * S // 10)
        for host in hosts:
            host.stop()
    finally:
        for host in hosts:
            host.writer.stop()
            if host.proc and host.proc.poll() is None:
                host.proc.kill()

    # least privilege: a host's credential writes the lab's database and does nothing else
    with _writer_store(central, "lab-a", passwords["lab-a"], tmp_path / "r") as store:
        with pytest.raises(StoreError, match=r"refused the credentials \(HTTP 403\).*make token"):
            store.read("energy", 0, 2**62)

    out = tmp_path / "report"
    env = {**os.environ, "TUBAI_INFLUXDB_USERNAME": central.admin[0]}
    env |= {"TUBAI_INFLUXDB_PASSWORD": central.admin[1], "TUBAI_SPOOL_DIR": str(tmp_path / "s")}
    done = subprocess.run(
        [sys.executable, "-m", "scoring", "report", "--store", central.url(DB),
         "--out", str(out), "--reference", "lab-a"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "scores.json").read_text())
    runs = {r["host"]: r for r in doc["runs"]}
    assert set(runs) == set(HOSTS)
    for host in hosts:  # each window's energy is exactly what that host's counters read
        samples = _samples(central, host.name)
        expected = host.writer.window_joules("package-0", samples, *window)
        assert runs[host.name]["energy_j"] == pytest.approx(expected, rel=1e-6)
        assert expected > 0
    (row,) = [c for c in doc["comparison"] if c["model"] == "digits_cnn"]
    ratios = row["ratios"]
    assert set(ratios) == set(HOSTS) and ratios["lab-a"] == 1.0
    for name in HOSTS:  # the composite is inverse to energy: 10 W scores 2x the 20 W host
        want = runs["lab-a"]["energy_j"] / runs[name]["energy_j"]
        assert ratios[name] == pytest.approx(want, rel=1e-6)
    page = (out / "index.html").read_text()
    assert "Across machines" in page
    assert all(f"<h3>{name}</h3>" in page for name in HOSTS)


def _one_line(log: str, text: str) -> str:
    """The one log line (before the exporter stopped) that says ``text``."""
    running = log.split("stopped after writing")[0]
    lines = [line for line in running.splitlines() if text in line]
    at_exit = [line for line in lines if "still spooled" in line]
    live = [line for line in lines if line not in at_exit]
    assert len(live) == 1, log
    return live[0]


@pytest.mark.influxdb
@pytest.mark.timing
@pytest.mark.parametrize("fault", ["revoked", "wrong-ca"])
def test_a_revoked_credential_or_a_wrong_ca_is_one_line_and_loses_nothing(
    central: InfluxD, tmp_path: Path, fault: str
) -> None:
    name = f"lab-{fault}"
    password = central.add_writer(name, DB)
    url = central.url(DB)
    if fault == "revoked":
        central.revoke(name)
        expect = "credentials refused (HTTP 401)"
        fix = "make token HOST="
    else:
        url = central.url(DB, str(make_certs(tmp_path / "other-ca") / "ca.pem"))
        expect = "certificate does not verify"
        fix = "?ca=/path/ca.pem in the store URL or TUBAI_INFLUXDB_CA"
    host = Host(tmp_path, name, 15.0)
    try:
        host.start(url, name, password)
        host.wait_for(expect)
        time.sleep(1.0)  # it keeps sampling; the points wait in the spool
        log = host.stop()
        first = host.written()
        line = _one_line(log, expect)
        assert fix in line and "spooled" in line and str(tmp_path) in line
        assert first > 0 and not _samples(central, name)
        # fixed: a fresh credential, or the right CA; the spool's points all arrive
        if fault == "revoked":
            password = central.add_writer(name, DB)
        host.start(central.url(DB), name, password)
        host.wait_for("sampling")
        _wait_samples(central, name, 0)
        host.stop()
    finally:
        host.writer.stop()
        if host.proc and host.proc.poll() is None:
            host.proc.kill()
    stored = _points(central, name)
    assert stored == first + host.written(), "every sampled point arrived, none twice"
