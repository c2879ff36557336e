"""Meters with the shape of a source, and classes that get the shape wrong."""

from __future__ import annotations

import time

from exporters.schema import ENERGY, Counter, Reading, energy_tags


class SteadyMeter:
    """A meter with an energy counter at a steady ``watts`` (like a GPU riser power meter)."""

    kind = "power"

    def __init__(self, domain: str, watts: float = 100.0, name: str = "riser") -> None:
        self.name, self.domain, self.watts = name, domain, watts
        self.t0 = time.monotonic()

    def available(self) -> tuple[bool, str]:
        return True, f"{self.domain} at {self.watts:g} W"

    def read(self) -> list[Reading]:
        joules = self.watts * (time.monotonic() - self.t0)
        counter = Counter(raw=joules, rate_field="watts")
        return [
            Reading(ENERGY, energy_tags(self.name, self.domain), counters={"joules_total": counter})
        ]


class WallMeter:
    """A power-only meter (like a PDU outlet): ``watts``, no counter."""

    name = "pdu"
    kind = "system"

    def __init__(self, domain: str = "pdu-wall", watts: float = 300.0) -> None:
        self.domain, self.watts = domain, watts

    def available(self) -> tuple[bool, str]:
        return True, f"{self.domain} at {self.watts:g} W"

    def read(self) -> list[Reading]:
        return [Reading(ENERGY, energy_tags(self.name, self.domain), {"watts": self.watts})]


class Exploding:
    """A constructor that fails."""

    def __init__(self) -> None:
        raise RuntimeError("cannot reach the meter at 10.0.0.9")


class NoRead:
    name, kind = "noread", "power"

    def available(self) -> tuple[bool, str]:
        return True, ""


class BadKind(WallMeter):
    kind = "fast"


class NotNamed(WallMeter):
    name = None  # type: ignore[assignment]


class Flaky(WallMeter):
    """``available()`` that raises, and one that answers with the wrong shape."""

    name = "flaky"

    def __init__(self, answer: object = None) -> None:
        super().__init__()
        self.answer = answer

    def available(self):  # type: ignore[override]
        if self.answer is None:
            raise OSError("meter unplugged")
        return self.answer
