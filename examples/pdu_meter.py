"""A custom tubai source: one PDU outlet's power (and energy) from a JSON status document.

Many metered PDUs, and the small pollers people write around SNMP ones, publish each outlet's
power as JSON over HTTP. This source reads such a document from ``url`` (``http://``,
``https://``, or ``file://`` and plain paths for a file a poller writes) and picks the values
at ``watts_key`` and, if the PDU counts energy, ``energy_key`` (dotted paths, list indexes as
numbers: ``outlets.2.watts``). A counter is better than power: tubai turns it into exact window
energy whatever the sampling rate. Nothing here is special to tubai's own sources: it is the
shape of ``exporters/sources/base.py``, loaded by the configuration::

    sources:
      custom:
        - class: pdu_meter:PduMeter          # module:Class, the module on PYTHONPATH
          interval_s: 1.0                    # optional; default: the interval of its kind
          options: {url: "http://pdu-1.lab/outlets.json", domain: pdu-outlet-3,
                    watts_key: outlets.2.watts, energy_key: outlets.2.energy_wh}

and run with ``PYTHONPATH=examples python -m exporters doctor --config that.yaml``. The domain
``pdu-outlet-3`` is shown in every window but not added to the total; name it to match a counted
pattern (or pass ``--count`` to ``python -m scoring energy``) to count it (README, "Custom
sources").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from exporters.schema import ENERGY, Counter, Reading, energy_tags
from exporters.sources.base import SourceError, SourceUnavailable

JOULES_PER = {"J": 1.0, "Wh": 3600.0, "kWh": 3.6e6}


class PduMeter:
    """One outlet of a metered PDU, as the ``energy`` series ``source=name, domain=domain``."""

    kind = "system"  # PDUs refresh their readings about once a second

    def __init__(
        self,
        url: str,
        domain: str = "pdu-outlet",
        name: str = "pdu",
        watts_key: str | None = "watts",
        energy_key: str | None = None,
        energy_unit: str = "Wh",
        timeout_s: float = 2.0,
    ) -> None:
        if not (watts_key or energy_key):
            raise ValueError("give watts_key, energy_key or both")
        if energy_unit not in JOULES_PER:
            raise ValueError(f"energy_unit {energy_unit!r} is not one of {', '.join(JOULES_PER)}")
        self.url, self.domain, self.name = url, domain, name
        self.watts_key, self.energy_key = watts_key, energy_key
        self.scale, self.timeout_s = JOULES_PER[energy_unit], timeout_s

    def _document(self) -> Any:
        scheme = urlsplit(self.url).scheme
        try:
            if scheme in ("http", "https"):
                answer = requests.get(self.url, timeout=self.timeout_s)
                answer.raise_for_status()
                return answer.json()
            path = urlsplit(self.url).path if scheme == "file" else self.url
            return json.loads(Path(path).read_text())
        except (requests.RequestException, OSError) as e:
            raise SourceUnavailable(f"{self.name}: cannot read {self.url}: {e}") from e
        except ValueError as e:
            raise SourceError(f"{self.name}: {self.url} is not JSON ({e})") from e

    def _value(self, document: Any, key: str) -> float:
        node = document
        for part in key.split("."):
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError) as e:
                raise SourceError(f"{self.name}: {self.url} has no {key!r}: fix the key") from e
        if isinstance(node, bool) or not isinstance(node, int | float):
            raise SourceError(f"{self.name}: {key!r} in {self.url} is {node!r}, not a number")
        return float(node)

    def read(self) -> list[Reading]:
        """The outlet's ``watts`` and, where the PDU counts it, its ``joules_total``."""
        document = self._document()
        fields = {"watts": self._value(document, self.watts_key)} if self.watts_key else {}
        counters = {}
        if self.energy_key:
            raw = self._value(document, self.energy_key)
            rate = None if fields else "watts"  # no power reading: derive watts from energy
            counters["joules_total"] = Counter(raw, scale=self.scale, rate_field=rate)
        return [Reading(ENERGY, energy_tags(self.name, self.domain), fields, counters)]

    def available(self) -> tuple[bool, str]:
        try:
            reading = self.read()[0]
        except SourceError as e:
            return False, str(e)
        what = ", ".join([*reading.fields, *reading.counters])
        return True, f"{self.domain} ({what}) from {self.url}"
