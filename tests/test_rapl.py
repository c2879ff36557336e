"""The RAPL source against fake powercap trees (tests/fixtures/rapl/<machine>/class/powercap)."""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rapl_writer import make_tree

from exporters.config import load_config
from exporters.errors import ConfigError, SourceError, SourceUnavailable
from exporters.schema import Counter
from exporters.sources import all_sources
from exporters.sources.base import Source
from exporters.sources.rapl import CounterFile, RaplSource

FIXTURES = Path(__file__).parent / "fixtures" / "rapl"
PACKAGE_RANGE, DRAM_RANGE, AMD_RANGE = 262143328850, 65712999613, 65532610987


def copy_tree(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest / name)
    return dest / name


def zone(root: Path, zone_id: str) -> Path:
    return root / "class" / "powercap" / zone_id


def counters(source: RaplSource) -> dict[str, Counter]:
    readings = source.read()
    assert all(r.measurement == "energy" and not r.fields for r in readings)
    return {r.tags["domain"]: r.counters["joules_total"] for r in readings}


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (
            "intel_desktop",
            [
                ("package-0", None),
                ("core-0", "package-0"),
                ("uncore-0", "package-0"),
                ("dram-0", "package-0"),
                ("psys", None),
            ],
        ),
        (
            "dual_socket_server",
            [
                ("package-0", None),
                ("dram-0", "package-0"),
                ("package-1", None),
                ("dram-1", "package-1"),
            ],
        ),
        (
            "amd_epyc",
            [
                ("package-0", None),
                ("core-0", "package-0"),
                ("package-1", None),
                ("core-1", "package-1"),
            ],
        ),
        ("intel_mmio", [("package-0", None), ("core-0", "package-0")]),
    ],
)
def test_each_machine_gives_exactly_its_domains(machine, expected):
    source = RaplSource(FIXTURES / machine)
    ok, message = source.available()
    names = [domain for domain, _ in expected]
    assert ok, message
    assert message == f"{len(names)} domains: {', '.join(names)}"
    assert source.domains() == expected
    assert [r.tags for r in source.read()] == [
        {"source": "rapl", "domain": d, "estimated": "false"} for d in names
    ]


def test_counters_are_raw_microjoules_with_scale_and_wrap():
    source = RaplSource(str(FIXTURES / "intel_desktop"))  # a str root works too
    assert isinstance(source, Source) and (source.name, source.kind) == ("rapl", "power")
    got = counters(source)
    assert got["package-0"] == Counter(48213398710, 1e-6, PACKAGE_RANGE, "watts", max_rate=506e6)
    assert got["dram-0"] == Counter(9876543210, 1e-6, DRAM_RANGE, "watts", max_rate=1000e6)
    assert got["psys"].raw == 103456789012
    assert counters(RaplSource(FIXTURES / "amd_epyc"))["core-1"].wrap == AMD_RANGE


def ceilings_w(source: RaplSource) -> dict[str, float]:
    return {domain: c.max_rate * c.scale for domain, c in counters(source).items()}


def test_ceiling_is_twice_the_highest_stated_power_else_the_default():
    # package-0 states its TDP (125 W, PL1's max_power_uw) and enforces PL2 at 253 W: 2 x 253.
    # core-0's only limit is 0 (none), psys has a limit but no max_power_uw (maybe a disabled
    # one), dram-0 states nothing: all three get the default.
    assert ceilings_w(RaplSource(FIXTURES / "intel_desktop")) == pytest.approx(
        {"package-0": 506.0, "core-0": 1000.0, "uncore-0": 1000.0, "dram-0": 1000.0, "psys": 1000.0}
    )
    server = ceilings_w(RaplSource(FIXTURES / "dual_socket_server", max_watts=300))
    assert server == pytest.approx(
        {"package-0": 648.0, "dram-0": 300.0, "package-1": 648.0, "dram-1": 300.0}
    )
    assert set(ceilings_w(RaplSource(FIXTURES / "amd_epyc")).values()) == {1000.0}  # AMD: none


def test_ceiling_files_read_once_and_unreadable_ones_left_out(tmp_path):
    root = copy_tree("intel_desktop", tmp_path)
    package = zone(root, "intel-rapl:0")
    source = RaplSource(root)
    assert source.available()[0]
    (package / "constraint_1_power_limit_uw").write_text("4095000000\n")  # raised later
    assert ceilings_w(source)["package-0"] == pytest.approx(506.0)  # as found
    (package / "constraint_1_power_limit_uw").unlink()
    (package / "constraint_1_power_limit_uw").mkdir()  # reading it fails: left out
    assert ceilings_w(RaplSource(root))["package-0"] == pytest.approx(250.0)  # 2 x the TDP
    (package / "constraint_0_max_power_uw").write_text("n/a\n")
    (package / "constraint_1_max_power_uw").unlink()
    fresh = RaplSource(root, max_watts=700.0)
    assert ceilings_w(fresh)["package-0"] == pytest.approx(700.0)  # no max_power_uw left


def test_max_watts_is_configured_and_checked(tmp_path):
    cfg = load_config(env={"TUBAI_SOURCES__RAPL__MAX_WATTS": "400"}, overrides={
        "sysfs_root": str(FIXTURES / "dual_socket_server")})  # fmt: skip
    assert ceilings_w(all_sources(cfg)["rapl"])["dram-0"] == pytest.approx(400.0)
    assert load_config(env={})["sources"]["rapl"]["max_watts"] == 1000.0
    for bad in ("0", "-5", "lots", ".inf", "true"):
        with pytest.raises(ConfigError, match=r"'sources\.rapl\.max_watts' is .*watts above 0"):
            load_config(env={"TUBAI_SOURCES__RAPL__MAX_WATTS": bad})


def test_read_is_stateless_and_needs_no_available_call(tmp_path):
    root = copy_tree("dual_socket_server", tmp_path)
    source = RaplSource(root)
    assert counters(source)["package-1"].raw == 179884120337
    (zone(root, "intel-rapl:1") / "energy_uj").write_text("12\n")  # wrapped: still raw
    assert counters(source)["package-1"].raw == 12


def test_mmio_duplicate_is_read_only_where_the_msr_zone_is_missing(tmp_path):
    assert counters(RaplSource(FIXTURES / "intel_mmio"))["package-0"].raw == 70311520478  # MSR
    root = copy_tree("intel_mmio", tmp_path)
    for zone_id in ("intel-rapl:0", "intel-rapl:0:0"):  # intel_rapl_msr not loaded
        shutil.rmtree(zone(root, zone_id))
    source = RaplSource(root)
    assert source.available() == (True, "1 domain: package-0")
    assert counters(source)["package-0"].raw == 70311498112  # the mmio zone


def test_mmio_duplicate_stands_in_for_an_unreadable_msr_zone(tmp_path):
    root = copy_tree("intel_mmio", tmp_path)
    energy = zone(root, "intel-rapl:0") / "energy_uj"
    energy.unlink()
    energy.mkdir()  # reading it fails with an OSError that is not a permission error
    source = RaplSource(root)
    assert source.available() == (True, "2 domains: package-0, core-0")
    assert source.domains() == [("package-0", None), ("core-0", "package-0")]
    assert counters(source)["package-0"].raw == 70311498112


def test_kernel_layout_with_symlinks_and_nested_sub_zones(tmp_path):
    """As in real sysfs: zones nest in devices/, class/powercap holds symlinks to each."""
    devices = tmp_path / "devices" / "virtual" / "powercap" / "intel-rapl"
    flat = zone(FIXTURES / "intel_desktop", "")
    shutil.copytree(flat / "intel-rapl", devices)
    for zone_id in ("intel-rapl:0", "intel-rapl:1"):
        shutil.copytree(flat / zone_id, devices / zone_id)
    for zone_id in ("intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:0:2"):
        shutil.copytree(flat / zone_id, devices / "intel-rapl:0" / zone_id)
    powercap = tmp_path / "class" / "powercap"
    powercap.mkdir(parents=True)
    (devices / "intel-rapl:0" / "subsystem").symlink_to("../../../../../class/powercap")
    for target in [devices, *devices.glob("intel-rapl:*"), *devices.glob("*/intel-rapl:*")]:
        (powercap / target.name).symlink_to(os.path.relpath(target, powercap))
    source = RaplSource(tmp_path)
    assert source.available()[0]
    assert source.domains() == RaplSource(FIXTURES / "intel_desktop").domains()
    assert counters(source) == counters(RaplSource(FIXTURES / "intel_desktop"))


def test_several_psys_zones_are_numbered(tmp_path):
    root = copy_tree("intel_desktop", tmp_path)
    shutil.copytree(zone(root, "intel-rapl:1"), zone(root, "intel-rapl:2"))
    assert [d for d, _ in RaplSource(root).domains()][-2:] == ["psys-0", "psys-1"]


@pytest.mark.parametrize("layout", ["absent", "empty"])
def test_no_rapl_says_to_load_the_module(tmp_path, layout):
    if layout == "empty":  # powercap exists (another driver) but has no RAPL zone
        (tmp_path / "class" / "powercap" / "dtpm").mkdir(parents=True)
    source = RaplSource(tmp_path)
    ok, message = source.available()
    assert not ok and "modprobe intel_rapl_msr" in message
    assert str(tmp_path / "class" / "powercap") in message
    with pytest.raises(SourceUnavailable, match="modprobe intel_rapl_msr"):
        source.read()


@pytest.mark.parametrize("broken", ["vanished", "garbage"])
def test_zone_broken_after_available_is_an_error_naming_the_file(tmp_path, broken):
    root = copy_tree("dual_socket_server", tmp_path)
    source = RaplSource(root)
    assert source.available()[0]
    energy = zone(root, "intel-rapl:1:0") / "energy_uj"
    if broken == "vanished":
        energy.unlink()
    else:
        energy.write_text("n/a\n")
    with pytest.raises(SourceError, match=str(energy)):
        source.read()


@pytest.fixture
def shared_tree() -> Iterator[Path]:
    """A copy of intel_desktop that an unprivileged user can traverse (tmp_path is 0700)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        yield copy_tree("intel_desktop", Path(tmp))


def available_unprivileged(root: Path) -> tuple[bool, str]:
    """RaplSource(root).available() as an unprivileged user: as nobody when run as root."""
    if os.geteuid() != 0:
        return RaplSource(root).available()
    script = (
        "import os, sys\n"
        "from exporters.sources.rapl import CounterFile, RaplSource\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "print(repr(RaplSource(sys.argv[1]).available()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout)


def make_root_only(root: Path, *zone_ids: str) -> None:
    """Linux 5.10+: energy_uj is 0400 root (0000 when the tests do not run as root)."""
    for zone_id in zone_ids:
        os.chmod(zone(root, zone_id) / "energy_uj", 0o400 if os.geteuid() == 0 else 0)


def test_root_only_counters_say_how_to_grant_access(shared_tree):
    make_root_only(shared_tree, *(p.name for p in zone(shared_tree, "").glob("intel-rapl:*")))
    ok, message = available_unprivileged(shared_tree)
    assert not ok
    assert "readable by root only since Linux 5.10" in message
    assert "RAPL permissions" in message and str(zone(shared_tree, "")) in message


def test_readable_zones_are_read_and_the_rest_named(shared_tree):
    make_root_only(shared_tree, "intel-rapl:0:2")
    ok, message = available_unprivileged(shared_tree)
    assert ok
    assert message.startswith("4 domains: package-0, core-0, uncore-0, psys; not readable: dram-0")
    assert "root only" in message


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_counter_files_stay_open_between_reads_and_close_lets_go(tmp_path):
    root = copy_tree("intel_desktop", tmp_path)
    before = open_fds()
    source = RaplSource(root)
    assert source.available()[0]
    held = open_fds() - before
    assert len(held) == 5  # one energy_uj per domain, opened when found
    for _ in range(3):
        counters(source)
    assert open_fds() - before == held  # read through the same descriptors
    package = zone(root, "intel-rapl:0") / "energy_uj"
    package.write_text("1234\n")  # rewritten in place, as the kernel's value changes
    assert counters(source)["package-0"].raw == 1234
    source.close()
    assert not open_fds() - before
    assert counters(source)["package-0"].raw == 1234  # read after close: opened again
    source.close()
    assert source.available()[0] and len(open_fds() - before) == 5  # found anew: no leak
    source.close()


def test_replaced_or_re_added_counter_files_are_read_anew(tmp_path):
    root = copy_tree("intel_desktop", tmp_path)
    source = RaplSource(root)
    assert counters(source)["package-0"].raw == 48213398710
    package = zone(root, "intel-rapl:0")
    (package / "energy_uj.new").write_text("77\n")
    (package / "energy_uj.new").replace(package / "energy_uj")  # replaced by a rename
    assert counters(source)["package-0"].raw == 77
    shutil.rmtree(zone(root, "intel-rapl:0:2"))  # the zone goes away...
    with pytest.raises(SourceError, match="intel-rapl:0:2"):
        source.read()
    shutil.copytree(FIXTURES / "intel_desktop" / "class/powercap/intel-rapl:0:2",
                    zone(root, "intel-rapl:0:2"))  # fmt: skip
    assert counters(source)["dram-0"].raw == 9876543210  # ...and comes back
    source.close()


@pytest.mark.skipif(
    not os.path.exists("/sys/class/net/lo/statistics/rx_bytes"), reason="no sysfs here"
)
def test_a_kernel_attribute_is_read_live_through_one_descriptor():
    """As with RAPL's energy_uj on a real machine: sysfs shows the value anew at offset 0."""
    counter = CounterFile("/sys/class/net/lo/statistics/rx_bytes")
    before = counter.read()
    held = open_fds()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        for _ in range(10):
            tx.sendto(b"x" * 1000, rx.getsockname())
    assert counter.read() >= before + 10_000
    assert open_fds() == held  # the same descriptor, not opened anew
    counter.close()


def test_an_edge_waits_for_the_counter_to_update_then_reads(tmp_path) -> None:
    """await_update returns True once the counter changes (the next read sees the new value),
    False at its timeout where the counter stands still."""
    zone = make_tree(tmp_path, {"package-0": 100.0})["package-0"]
    (zone / "energy_uj").write_text("1000\n")
    source = RaplSource(tmp_path)
    assert source.available()[0]
    started = time.monotonic()
    assert source.await_update(timeout_s=0.05) is False  # nothing moves the counter
    assert time.monotonic() - started >= 0.05

    def tick() -> None:
        time.sleep(0.05)
        new = zone / "energy_uj.new"
        new.write_text("2000\n")
        os.replace(new, zone / "energy_uj")  # as the kernel's update: all at once

    threading.Thread(target=tick).start()
    assert source.await_update(timeout_s=60.0) is True
    assert source.read()[0].counters["joules_total"].raw == 2000
    source.close()
