"""Shared fixtures.

Stores: ``store`` is each of the two backends in turn, empty: the embedded SQLite store and
InfluxDB (a fresh database on the session's ``influxd``), so the same test asks both.

InfluxDB: ``influxd`` yields an :class:`influxd.InfluxTarget`: one real ``influxd`` per test
session (``influxd_server``) and a fresh database name per test (``.url``, ``.http``,
``.database``, ``.stop()``, ``.start()``, ``.query(q)``). Where ``influxd`` is not installed the
tests are skipped, unless ``TUBAI_REQUIRE_INFLUXDB=1`` makes that a failure.

CPU load: tests marked ``timing`` (measured windows, end-to-end energy, agent cadence) must hold
on a busy machine. ``--cpu-load N`` (or ``TUBAI_TEST_CPU_LOAD=N``; ``cores`` for one per CPU this
process may use) runs N busy-loop processes beside each of them, from its first fixture to its
last teardown, with the sampler at normal priority (``TUBAI_SAMPLER_PRIORITY``, as README
advises on a shared machine) unless the test sets one; ``make test`` runs them a second time so
(pyproject.toml, the marker).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from influxd import InfluxD, InfluxTarget, find_influxd

from exporters.stores.base import Store
from exporters.stores.influxdb import InfluxDBStore
from exporters.stores.sqlite import SQLiteStore

_INFLUXD_MISSING = "influxd not found: apt-get install influxdb (Debian) to run the InfluxDB tests"
_databases = itertools.count(1)
# A busy loop that ends by itself soon after pytest does, however pytest ended.
_BUSY = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(10**5))\n"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-load",
        default=os.environ.get("TUBAI_TEST_CPU_LOAD", "0"),
        help="busy-loop processes to run beside each test marked timing: a number, or 'cores' "
        "for one per usable CPU (default: $TUBAI_TEST_CPU_LOAD, else 0)",
    )


PRIORITY_ENV = "TUBAI_SAMPLER_PRIORITY"


def _cpu_load(config: pytest.Config) -> int:
    value = str(config.getoption("--cpu-load")).strip()
    if value == "cores":
        return len(os.sched_getaffinity(0))
    if not value.isdigit():
        raise pytest.UsageError(f"--cpu-load / TUBAI_TEST_CPU_LOAD: {value!r} is not a number")
    return int(value)


def pytest_report_header(config: pytest.Config) -> str | None:
    n = _cpu_load(config)
    return f"cpu load: {n} busy-loop processes beside each test marked timing" if n else None


@pytest.fixture(autouse=True)
def cpu_load(request: pytest.FixtureRequest) -> Iterator[int]:
    """Busy-loop processes (``--cpu-load``) for the whole of a test marked ``timing``."""
    n = _cpu_load(request.config) if request.node.get_closest_marker("timing") else 0
    busy = [
        subprocess.Popen([sys.executable, "-c", _BUSY], stdin=subprocess.DEVNULL) for _ in range(n)
    ]
    # On a machine other processes saturate, README says to sample at normal priority: a
    # SCHED_IDLE sampler (the default) would wait behind the busy loops for seconds (a stop
    # 2 s late, a counter read after its wrap time). A test that sets the priority keeps its own.
    before = os.environ.get(PRIORITY_ENV)
    if n and before is None:
        os.environ[PRIORITY_ENV] = "normal"
    try:
        yield n
    finally:
        if n and before is None:
            os.environ.pop(PRIORITY_ENV, None)
        for process in busy:
            process.kill()
        for process in busy:
            process.wait()


@pytest.fixture(scope="session")
def influxd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxD]:
    """One ``influxd`` for the whole session, on free loopback ports."""
    binary = find_influxd()
    if binary is None:
        if os.environ.get("TUBAI_REQUIRE_INFLUXDB") == "1":
            pytest.fail(f"{_INFLUXD_MISSING} (TUBAI_REQUIRE_INFLUXDB=1 requires them)")
        pytest.skip(_INFLUXD_MISSING)
    server = InfluxD(tmp_path_factory.mktemp("influxd"), binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influxd(influxd_server: InfluxD) -> Iterator[InfluxTarget]:
    """The session's ``influxd`` with a database name (``tubai_test_<n>``) of this test's own."""
    yield InfluxTarget(influxd_server, f"tubai_test_{next(_databases)}")
    if not influxd_server.running:  # a test that stopped it must not break the next ones
        influxd_server.start()


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each kind: the same questions must get the same answers from both."""
    if request.param == "sqlite":
        opened: Store = SQLiteStore(tmp_path / "store.db")
    else:
        influxd = request.getfixturevalue("influxd")
        opened = InfluxDBStore.from_url(influxd.url, spool_dir=tmp_path / "spool")
    with opened as s:
        yield s
