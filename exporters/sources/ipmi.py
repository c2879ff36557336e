"""Whole-system (wall) power from the BMC: ``ipmitool dcmi power reading``.

MLPerf Power measures the whole system at the wall; on a server the BMC's DCMI power reading is
the nearest thing without a meter. Each read runs ``ipmitool`` once (an argument list, no shell)
and returns one ``energy`` reading, domain ``wall``, with ``watts`` only: DCMI has no energy
counter, so a window's energy integrates power (method "power"). The BMC refreshes its reading
about once a second, hence kind "system". Locally ipmitool talks to ``/dev/ipmi0``; with ``host``
it uses ``-I lanplus -H host -U user -E``, and ``-E`` makes ipmitool read the password from the
``IPMI_PASSWORD`` environment variable: it is never on a command line, in the config or in a log.
After a timeout the BMC is left alone for ``RETRY_S`` seconds, so an unreachable BMC does not
stall the agent's loop on every tick.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from exporters.config_checks import nonblank, require
from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import ENERGY, Reading, energy_tags
from exporters.sources.base import Settings, SourceSpec

TIMEOUT_S = 5.0
RETRY_S = 60.0
PASSWORD_VARS = ("IPMI_PASSWORD", "IPMITOOL_PASSWORD")  # what ipmitool -E reads
_WATTS = re.compile(r"^\s*Instantaneous power reading\s*:\s*(\d+(?:\.\d+)?)\s*Watts", re.M)
_STATE = re.compile(r"^\s*Power reading state is\s*:\s*(\w+)", re.M)
_DCMI_FAILED = re.compile(r"DCMI request failed because:\s*(.+)")
NO_DCMI = "this BMC has no DCMI power reading: use a PDU through a custom source (README)"
INTERFACES = ("lanplus", "lan")


class IpmiSource:
    """The BMC's instantaneous power, locally or over LAN (``host``), as domain ``wall``."""

    name = "ipmi"
    kind = "system"

    def __init__(
        self,
        host: str | None = None,
        user: str | None = None,
        interface: str = "lanplus",
        ipmitool: str = "ipmitool",
        interval_s: float | None = 1.0,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.host, self.user, self.interface = host, user, interface
        self.ipmitool, self.interval_s, self.timeout_s = ipmitool, interval_s, timeout_s
        self._quiet_until = 0.0  # monotonic: no call before this, after a timeout
        self._timeout_error = ""

    @property
    def where(self) -> str:
        return f"BMC at {self.host} ({self.interface})" if self.host else "local BMC"

    def command(self) -> list[str]:
        """ipmitool's argument list; over LAN the password comes from the environment (-E)."""
        args = [self.ipmitool]
        if self.host:
            user = ["-U", self.user] if self.user else []
            args += ["-I", self.interface, "-H", self.host, *user, "-E"]
        return [*args, "dcmi", "power", "reading"]

    def _run(self) -> float:
        if self.host and not any(os.environ.get(v) for v in PASSWORD_VARS):
            raise SourceUnavailable(
                f"ipmi: IPMI_PASSWORD is not set: export the {self.where}'s password as "
                "IPMI_PASSWORD in the exporter's environment (ipmitool -E reads it; it never goes "
                "in the config)"
            )
        if time.monotonic() < self._quiet_until:
            raise SourceError(self._timeout_error)
        try:
            done = subprocess.run(
                self.command(),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError as e:
            raise SourceUnavailable(
                f"ipmi: {self.ipmitool} not found: apt-get install ipmitool (or set "
                "sources.ipmi.ipmitool to its path)"
            ) from e
        except PermissionError as e:
            raise SourceUnavailable(f"ipmi: cannot run {self.ipmitool}: {e.strerror}") from e
        except subprocess.TimeoutExpired as e:
            self._quiet_until = time.monotonic() + RETRY_S
            self._timeout_error = (
                f"ipmi: the {self.where} did not answer within {self.timeout_s:g} s: check that "
                f"it is reachable (ipmitool ... mc info); trying again every {RETRY_S:g} s"
            )
            raise SourceError(self._timeout_error) from e
        return _watts(done.stdout + done.stderr, done.returncode, self.where)

    def read(self) -> list[Reading]:
        """One ``energy`` reading, domain ``wall``, field ``watts``."""
        return [Reading(ENERGY, energy_tags(self.name, "wall"), {"watts": self._run()})]

    def available(self) -> tuple[bool, str]:
        try:
            watts = self.read()[0].fields["watts"]
        except SourceError as e:
            return False, str(e)
        return True, f"wall power {watts:g} W from the {self.where} (DCMI)"


def _watts(text: str, returncode: int, where: str) -> float:
    """The instantaneous power in ``text``; else the error, translated with its fix."""
    failed = _DCMI_FAILED.search(text)
    state = _STATE.search(text)
    if "Could not open device" in text:
        fix = (
            "run the exporter as root or give its user access to /dev/ipmi0 (udev rule)"
            if "Permission denied" in text
            else "load the ipmi_devintf and ipmi_si modules (modprobe ipmi_devintf ipmi_si) or "
            "give sources.ipmi.host for LAN access"
        )
        raise SourceUnavailable(f"ipmi: no BMC device ({_first_line(text)}): {fix}")
    if failed:
        raise SourceUnavailable(f"ipmi: DCMI request failed ({failed.group(1).strip()}): {NO_DCMI}")
    if state and state.group(1) != "activated":
        raise SourceUnavailable(
            f"ipmi: the {where} says 'Power reading state is: {state.group(1)}': its power "
            "measurement is not active and its numbers are not valid: use a PDU through a "
            "custom source (README)"
        )
    watts = _WATTS.search(text)
    if watts:
        return float(watts.group(1))
    if "Unable to establish" in text or "Unable to read password" in text:
        raise SourceUnavailable(
            f"ipmi: no LAN session with the {where} ({_first_line(text)}): check "
            "sources.ipmi.host and user, IPMI_PASSWORD, and that IPMI over LAN is enabled"
        )
    raise SourceError(
        f"ipmi: ipmitool printed no power reading (exit {returncode}: {_first_line(text)}): "
        "run `ipmitool dcmi power reading` by hand to see why"
    )


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")


def _validate(settings: Settings, where: str) -> None:
    for key, fix in (
        ("host", "give a name, or null for the local BMC"),
        ("user", "give a name, or null"),
    ):
        nonblank(f"{where}.{key}", settings[key], fix, optional=True)
    require(
        settings["interface"] in INTERFACES,
        f"{where}.interface",
        settings["interface"],
        "use lanplus (IPMI 2.0) or lan (IPMI 1.5)",
    )
    nonblank(f"{where}.ipmitool", settings["ipmitool"], "give the ipmitool command or its path")


SPEC = SourceSpec(
    key="ipmi",
    update_s=1.0,
    # host: null = the local /dev/ipmi0, else LAN with the password in IPMI_PASSWORD (never here)
    defaults={
        "enabled": False,
        "host": None,
        "user": None,
        "interface": "lanplus",
        "ipmitool": "ipmitool",
        "interval_s": 1.0,
    },
    validate=_validate,
    build=lambda settings, cfg: IpmiSource(
        host=settings["host"],
        user=settings["user"],
        interface=settings["interface"],
        ipmitool=settings["ipmitool"],
        interval_s=settings["interval_s"],
    ),
    rechecked=True,
)
