"""IpmiSource against a fake ``ipmitool``: a shell script that prints recorded output.

The fake (written into ``tmp_path``) records its arguments, one per line, and whether
``IPMI_PASSWORD`` reached it, so the tests check the LAN arguments and that the password is
never on the command line. Fixtures: ``tests/fixtures/ipmi`` (see its README).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporters.agent import Agent
from exporters.config import load_config
from exporters.errors import ConfigError, SourceError, SourceUnavailable
from exporters.schema import energy_tags
from exporters.sources import build_sources
from exporters.sources.base import Source
from exporters.sources.ipmi import IpmiSource
from exporters.window import window_energy

FIXTURES = Path(__file__).parent / "fixtures" / "ipmi"
PASSWORD = "s3cret-bmc-password"
LOCAL = ["dcmi", "power", "reading"]


@dataclass
class Fake:
    """A fake ipmitool at ``path``; ``calls()`` are the argument lists it was run with."""

    path: Path
    record: Path

    def calls(self) -> list[list[str]]:
        if not self.record.exists():
            return []
        return [call.splitlines() for call in self.record.read_text().split("--\n") if call]

    def saw_password(self) -> bool:
        return self.record.with_suffix(".env").exists()


def fake_ipmitool(
    directory: Path, fixture: str, code: int = 0, stream: int = 1, sleep: float = 0
) -> Fake:
    directory.mkdir(parents=True, exist_ok=True)
    path, record = directory / "ipmitool", directory / "calls.txt"
    path.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" >> '{record}'; echo -- >> '{record}'\n"
        f"[ -n \"$IPMI_PASSWORD\" ] && touch '{record.with_suffix('.env')}'\n"
        + (f"exec sleep {sleep}\n" if sleep else "")  # a BMC that never answers
        + f"cat '{FIXTURES / fixture}' >&{stream}\n"
        f"exit {code}\n"
    )
    path.chmod(0o755)
    return Fake(path, record)


@pytest.mark.parametrize(
    ("fixture", "watts"), [("dell_poweredge.txt", 247.0), ("supermicro_x11.txt", 118.0)]
)
def test_reads_the_wall_power_of_the_local_bmc(tmp_path, fixture: str, watts: float) -> None:
    fake = fake_ipmitool(tmp_path, fixture)
    source = IpmiSource(ipmitool=str(fake.path))
    assert isinstance(source, Source) and (source.name, source.kind) == ("ipmi", "system")
    [reading] = source.read()
    assert reading.measurement == "energy"
    assert dict(reading.tags) == energy_tags("ipmi", "wall")
    assert dict(reading.fields) == {"watts": watts} and not reading.counters
    assert fake.calls() == [LOCAL]
    assert source.available() == (True, f"wall power {watts:g} W from the local BMC (DCMI)")


def test_ipmitool_is_found_on_path(tmp_path, monkeypatch) -> None:
    fake = fake_ipmitool(tmp_path / "bin", "dell_poweredge.txt")
    monkeypatch.setenv("PATH", f"{fake.path.parent}:/usr/bin:/bin")
    assert IpmiSource().read()[0].fields == {"watts": 247.0}
    assert fake.calls() == [LOCAL]


def test_lan_passes_the_password_through_the_environment_only(tmp_path, monkeypatch) -> None:
    fake = fake_ipmitool(tmp_path, "dell_poweredge.txt")
    monkeypatch.setenv("IPMI_PASSWORD", PASSWORD)
    source = IpmiSource(host="bmc-7.lab", user="tubai", ipmitool=str(fake.path))
    assert source.read()[0].fields == {"watts": 247.0}
    expected = ["-I", "lanplus", "-H", "bmc-7.lab", "-U", "tubai", "-E", *LOCAL]
    assert fake.calls() == [expected]
    assert fake.saw_password()
    assert PASSWORD not in fake.record.read_text()
    ok, why = source.available()
    assert ok and "BMC at bmc-7.lab (lanplus)" in why and PASSWORD not in why


def test_lan_without_a_password_says_so_and_runs_nothing(tmp_path, monkeypatch) -> None:
    fake = fake_ipmitool(tmp_path, "dell_poweredge.txt")
    monkeypatch.delenv("IPMI_PASSWORD", raising=False)
    monkeypatch.delenv("IPMITOOL_PASSWORD", raising=False)
    source = IpmiSource(host="bmc-7.lab", interface="lan", ipmitool=str(fake.path))
    with pytest.raises(SourceUnavailable, match="IPMI_PASSWORD is not set: export"):
        source.read()
    assert fake.calls() == []


@pytest.mark.parametrize(
    ("fixture", "code", "stream", "error", "words"),
    [
        ("no_dcmi_invalid_command.txt", 1, 2, SourceUnavailable, "Invalid command (c1)"),
        ("no_dcmi_invalid_command.txt", 0, 2, SourceUnavailable, "use a PDU through a custom"),
        ("no_dcmi_not_supported.txt", 1, 2, SourceUnavailable, "no DCMI power reading"),
        ("no_device.txt", 1, 2, SourceUnavailable, "modprobe ipmi_devintf ipmi_si"),
        ("no_device.txt", 1, 2, SourceUnavailable, "or give sources.ipmi.host"),
        ("no_permission.txt", 1, 2, SourceUnavailable, "access to /dev/ipmi0"),
        ("deactivated.txt", 0, 1, SourceUnavailable, "'Power reading state is: deactivated'"),
        ("lan_no_session.txt", 1, 2, SourceUnavailable, "IPMI over LAN is enabled"),
        ("README.md", 0, 1, SourceError, "printed no power reading (exit 0: # `ipmitool"),
    ],
)
def test_failures_are_translated_with_their_fix(
    tmp_path, fixture: str, code: int, stream: int, error: type, words: str
) -> None:
    source = IpmiSource(ipmitool=str(fake_ipmitool(tmp_path, fixture, code, stream).path))
    with pytest.raises(error) as caught:
        source.read()
    assert words in str(caught.value) and "\n" not in str(caught.value)
    ok, why = source.available()
    assert not ok and words in why


def test_missing_ipmitool(tmp_path) -> None:
    source = IpmiSource(ipmitool=str(tmp_path / "ipmitool"))
    with pytest.raises(SourceUnavailable, match="not found: apt-get install ipmitool"):
        source.read()


@pytest.mark.timing
def test_a_bmc_that_times_out_is_left_alone_for_a_while(tmp_path) -> None:
    fake = fake_ipmitool(tmp_path, "dell_poweredge.txt", sleep=5)
    source = IpmiSource(ipmitool=str(fake.path), timeout_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"did not answer within 0\.2 s") as first:
        source.read()
    with pytest.raises(SourceError) as second:
        source.read()  # no second wait: the BMC is not asked again yet
    assert time.monotonic() - t0 < 2
    assert str(second.value) == str(first.value) and len(fake.calls()) == 1


def test_configuration_builds_it_and_never_shows_the_password(
    tmp_path, monkeypatch, caplog
) -> None:
    fake = fake_ipmitool(tmp_path, "no_dcmi_invalid_command.txt", code=1, stream=2)
    monkeypatch.setenv("IPMI_PASSWORD", PASSWORD)
    path = tmp_path / "c.yaml"
    path.write_text(
        "sources:\n"
        "  rapl: {enabled: false}\n  nvml: {enabled: false}\n  system: {enabled: false}\n"
        "  cpu_model: {enabled: false}\n"
        f"  ipmi: {{enabled: true, host: bmc-7.lab, user: tubai, ipmitool: '{fake.path}',"
        " interval_s: 2}\n"
    )
    cfg = load_config(path, env={})
    assert cfg["sources"]["ipmi"] == {
        "enabled": True,
        "host": "bmc-7.lab",
        "user": "tubai",
        "interface": "lanplus",
        "ipmitool": str(fake.path),
        "interval_s": 2,
    }
    with caplog.at_level(logging.DEBUG):
        ready, waiting, notes = build_sources(cfg)
    assert ready == [] and [s.name for s in waiting] == ["ipmi"]
    assert waiting[0].interval_s == 2
    assert notes == [
        "ipmi: not available: ipmi: DCMI request failed (Invalid command (c1)): this BMC has "
        "no DCMI power reading: use a PDU through a custom source (README)"
    ]
    assert PASSWORD not in caplog.text + "".join(notes) + fake.record.read_text()
    assert load_config(env={})["sources"]["ipmi"]["enabled"] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: {ipmi: {interface: open}}", "'sources.ipmi.interface' is 'open': use lanplus"),
        ("sources: {ipmi: {interval_s: 0}}", "'sources.ipmi.interval_s' is 0"),
        ("sources: {ipmi: {host: 5}}", "'sources.ipmi.host' is 5: give a name, or null"),
        ("sources: {ipmi: {ipmitool: ''}}", "'sources.ipmi.ipmitool' is ''"),
        ("sources: {ipmi: {password: x}}", "'sources.ipmi.password' is unknown"),
        ("sources: {ipmi: {enabled: yes please}}", "'sources.ipmi.enabled' is 'yes please'"),
    ],
)
def test_bad_ipmi_config(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path, env={})


def test_the_agent_stores_wall_power_and_windows_integrate_it(tmp_path, store) -> None:
    fake = fake_ipmitool(tmp_path, "dell_poweredge.txt")
    source = IpmiSource(ipmitool=str(fake.path), interval_s=0.05)
    Agent([source], store, "lab1", {"power": 0.1, "system": 1.0}).run(duration_s=0.6)
    points = store.read("energy", 0, 2**62)
    assert len(points) >= 5
    assert {p.fields["watts"] for p in points} == {247.0}
    assert dict(points[0].tags) == {**energy_tags("ipmi", "wall"), "host": "lab1"}
    start, end = points[0].time_ns, points[-1].time_ns
    result = window_energy(store, start, end)
    [wall] = result.domains
    assert (wall.source, wall.domain, wall.method) == ("ipmi", "wall", "power")
    assert wall.joules == pytest.approx(247.0 * (end - start) / 1e9)
    assert wall.coverage == pytest.approx(1.0) and wall.samples == len(points)
    assert not wall.counted and result.total_joules == 0  # shown, not in the total
    counted = window_energy(store, start, end, counted=("wall",))
    assert counted.total_joules == pytest.approx(wall.joules)
