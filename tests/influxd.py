"""A real InfluxDB 1.x server for tests: ``influxd`` on free loopback ports in a temporary dir.

:class:`InfluxD` starts the server, waits for ``/ping`` and can be stopped and started again on
the same ports and data (outage tests). :class:`InfluxTarget` is what the ``influxd`` fixture
(``tests/conftest.py``) yields: the shared server plus a database name of the test's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


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


class InfluxD:
    """One ``influxd`` process bound to 127.0.0.1, with all its files under ``root``."""

    def __init__(self, root: Path, binary: str) -> None:
        self.root = Path(root)
        self.binary = binary
        self.port = _free_port()
        self.bind_port = _free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "influxd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, database: str) -> str:
        """The store URL of ``database`` on this server."""
        return f"influxdb://127.0.0.1:{self.port}/{database}"

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
                if requests.get(f"{self.http}/ping", timeout=1).status_code == 204:
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
        """Run InfluxQL (POST /query) and return the JSON answer, for test assertions."""
        params = {"epoch": "ns"} | ({"db": database} if database else {})
        r = requests.post(f"{self.http}/query", params=params, data={"q": q}, timeout=10)
        return r.json()

    def databases(self) -> list[str]:
        """Names of the databases on the server."""
        series = self.query("SHOW DATABASES")["results"][0].get("series") or []
        return [row[0] for s in series for row in s.get("values") or []]

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


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
