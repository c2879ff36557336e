"""A real InfluxDB 1.x server for tests: ``influxd`` on free loopback ports in a temporary dir.

:class:`InfluxD` starts the server, waits for ``/ping`` and can be stopped and started again on
the same ports and data (outage tests). :class:`InfluxTarget` is what the ``influxd`` fixture
(``tests/conftest.py``) yields: the shared server plus a database name of the test's own.

A lab's central server: :func:`start_influxd` (``tls=True, auth=True``) starts one that serves
HTTPS with a certificate that ``scripts/make-certs.sh`` signs with a fresh local CA (``.ca_file``),
and requires credentials, with an admin user (``.admin``) made on its first start;
:meth:`InfluxD.add_writer` makes an InfluxDB 1.x user who may only write one database (what
``make token`` gives a joining host) and :meth:`InfluxD.revoke` drops it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

MAKE_CERTS = Path(__file__).resolve().parent.parent / "scripts" / "make-certs.sh"


def find_influxd() -> str | None:
    """``TUBAI_INFLUXD``, else ``influxd`` on PATH or in /usr/bin, /usr/sbin; None if absent."""
    explicit = os.environ.get("TUBAI_INFLUXD")
    candidates = [explicit] if explicit else [shutil.which("influxd"), "/usr/bin/influxd"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certs(directory: Path, *names: str) -> Path:
    """A local CA and a server certificate for ``names`` (and localhost, 127.0.0.1), made by
    ``scripts/make-certs.sh`` in ``directory``; returns it (``ca.pem``, ``server.pem``, ...)."""
    subprocess.run(
        ["sh", str(MAKE_CERTS), str(directory), *names],
        check=True,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "TUBAI_TLS_NAMES"},
        timeout=60,
    )
    return Path(directory)


class InfluxD:
    """One ``influxd`` process bound to 127.0.0.1, with all its files under ``root``.

    ``certs``: a directory with ``server.pem`` and ``server.key`` (:func:`make_certs`) to serve
    HTTPS with; ``auth``: require credentials, with an admin user (``.admin``) that is made on
    the first start and that :meth:`query` uses.
    """

    def __init__(
        self, root: Path, binary: str, *, certs: Path | None = None, auth: bool = False
    ) -> None:
        self.root = Path(root)
        self.binary = binary
        self.port = _free_port()
        self.bind_port = _free_port()
        self.certs = certs
        self.ca_file = str(certs / "ca.pem") if certs else None
        self.admin = ("tubai-admin", secrets.token_hex(12)) if auth else None
        self.http = f"{'https' if certs else 'http'}://127.0.0.1:{self.port}"
        self.log_path = self.root / "influxd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = requests.Session()
        self._http.trust_env = False
        self._http.verify = self.ca_file or True
        self._http.auth = self.admin

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, database: str, ca_file: str | None = None) -> str:
        """The store URL of ``database`` on this server (over TLS: verified with ``ca_file``,
        by default the CA that signed the server's certificate)."""
        if not self.certs:
            return f"influxdb://127.0.0.1:{self.port}/{database}"
        return f"influxdb+https://127.0.0.1:{self.port}/{database}?ca={ca_file or self.ca_file}"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the server (same ports and data as before) and wait until ``/ping`` answers."""
        if self.running:
            return
        env = dict(
            os.environ,
            INFLUXDB_HTTP_BIND_ADDRESS=f"127.0.0.1:{self.port}",
            INFLUXDB_BIND_ADDRESS=f"127.0.0.1:{self.bind_port}",
            INFLUXDB_META_DIR=str(self.root / "meta"),
            INFLUXDB_DATA_DIR=str(self.root / "data"),
            INFLUXDB_DATA_WAL_DIR=str(self.root / "wal"),
            INFLUXDB_REPORTING_DISABLED="true",
            INFLUXDB_MONITOR_STORE_ENABLED="false",
            INFLUXDB_HTTP_LOG_ENABLED="false",
            INFLUXDB_DATA_QUERY_LOG_ENABLED="false",
        )
        if self.certs:
            env["INFLUXDB_HTTP_HTTPS_ENABLED"] = "true"
            env["INFLUXDB_HTTP_HTTPS_CERTIFICATE"] = str(self.certs / "server.pem")
            env["INFLUXDB_HTTP_HTTPS_PRIVATE_KEY"] = str(self.certs / "server.key")
        if self.admin:
            env["INFLUXDB_HTTP_AUTH_ENABLED"] = "true"
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "run", "-config", "/dev/null"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"influxd exited with {self._proc.returncode}: {self._tail()}")
            try:
                if self._http.get(f"{self.http}/ping", timeout=1).status_code == 204:
                    self._make_admin()
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"influxd did not answer /ping within {timeout_s} s: {self._tail()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server and wait for it (SIGKILL if it takes longer than ``timeout_s``)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def query(self, q: str, database: str | None = None) -> dict[str, Any]:
        """Run InfluxQL (POST /query, as the admin where auth is on) and return the JSON answer,
        for test assertions."""
        params = {"epoch": "ns"} | ({"db": database} if database else {})
        r = self._http.post(f"{self.http}/query", params=params, data={"q": q}, timeout=10)
        return r.json()

    def _make_admin(self) -> None:
        """The admin user, on the first start (InfluxDB 1.x lets anyone create the first)."""
        if not self.admin or (self.root / "meta" / ".tubai-admin").exists():
            return
        user, password = self.admin
        q = f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
        r = self._http.post(f"{self.http}/query", data={"q": q}, auth=None, timeout=10)
        if r.status_code != 200 or "error" in r.text:
            raise RuntimeError(f"influxd refused to create the admin user: {r.text}")
        (self.root / "meta" / ".tubai-admin").touch()

    def add_writer(self, user: str, database: str) -> str:
        """An InfluxDB 1.x user who may only write ``database`` (made if missing); its password."""
        password = secrets.token_hex(12)
        self._checked(f'CREATE DATABASE "{database}"')
        self._checked(f"CREATE USER \"{user}\" WITH PASSWORD '{password}'")
        self._checked(f'GRANT WRITE ON "{database}" TO "{user}"')
        return password

    def revoke(self, user: str) -> None:
        """Drop ``user``: its credential is refused from now on."""
        self._checked(f'DROP USER "{user}"')

    def _checked(self, q: str) -> None:
        answer = self.query(q)
        errors = [r["error"] for r in answer.get("results", []) if r.get("error")]
        if answer.get("error") or errors:
            raise RuntimeError(f"influxd refused {q.split(' WITH ')[0]!r}: {answer}")

    def databases(self) -> list[str]:
        """Names of the databases on the server."""
        series = self.query("SHOW DATABASES")["results"][0].get("series") or []
        return [row[0] for s in series for row in s.get("values") or []]

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def start_influxd(
    root: Path, *, tls: bool = True, auth: bool = True, names: tuple[str, ...] = ()
) -> InfluxD:
    """A started ``influxd`` under ``root``: over TLS with a fresh local CA's certificate (for
    127.0.0.1, localhost and ``names``) and/or requiring credentials. Its ``.url(db)`` is the store
    URL (with ``?ca=``), ``.ca_file`` the CA, ``.admin`` the admin's (user, password); stop it
    with ``.stop()``. RuntimeError where ``influxd`` is missing or does not start."""
    binary = find_influxd()
    if binary is None:
        raise RuntimeError("influxd not found: apt-get install influxdb")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    certs = make_certs(root / "certs", *names) if tls else None
    server = InfluxD(root, binary, certs=certs, auth=auth)
    server.start()
    return server


@dataclass
class InfluxTarget:
    """The ``influxd`` fixture: the shared server and a fresh database name for one test."""

    server: InfluxD
    database: str

    @property
    def url(self) -> str:
        """``influxdb://127.0.0.1:PORT/<database>``."""
        return self.server.url(self.database)

    @property
    def http(self) -> str:
        """``http://127.0.0.1:PORT``, the base URL of the HTTP API."""
        return self.server.http

    def stop(self) -> None:
        """Stop the server; the fixture starts it again after the test if the test did not."""
        self.server.stop()

    def start(self) -> None:
        """Start the server again on the same ports and data."""
        self.server.start()

    def query(self, q: str) -> dict[str, Any]:
        """Run InfluxQL against this test's database."""
        return self.server.query(q, self.database)
