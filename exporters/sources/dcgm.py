"""NVIDIA GPU power, energy and state scraped from dcgm-exporter's Prometheus ``/metrics``.

The readings have the same shape as :mod:`.nvml`'s (``energy`` with ``source=dcgm``, ``gpu`` with
``gpu``/``uuid``/``name``), so dashboards and window code treat both alike. Units are converted
here: ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ) becomes the ``joules_total`` counter,
``DCGM_FI_DEV_FB_*`` (MiB) become bytes, and the clock-event reasons bitmask
(``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``, before DCGM 3.3 ``DCGM_FI_DEV_CLOCK_THROTTLE_REASONS``;
exported where dcgm-exporter's counters CSV lists it) becomes the same ``clock_event_reasons``
and ``throttled`` fields as NVML's (:func:`~exporters.schema.clock_event_fields`). Values DCGM
reports as "blank" (its sentinels for "no data" or "not supported", e.g. 9223372036854775794)
are omitted, like NVML's NOT_SUPPORTED.
Series of MIG instances (a non-empty ``GPU_I_ID`` label) are skipped: readings are per GPU.

The energy counter's ceiling (``Counter.max_rate``, :mod:`.ceilings`) is
:data:`~.ceilings.HEADROOM` times the highest power limit the same scrape reports
(:data:`POWER_LIMITS`, where dcgm-exporter exports one), else ``sources.dcgm.max_watts``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporters.config_checks import http_url
from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import ENERGY, GPU, Counter, Reading, clock_event_fields, energy_tags
from exporters.sources.base import Settings, SourceSpec
from exporters.sources.ceilings import HEADROOM, max_rate, validate_max_watts
from exporters.sources.nvml import ENERGY_SCALE, GPU_MAX_WATTS, gpu_inventory

MIB = 2**20
POWER, ENERGY_MJ = "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
FB_USED, FB_FREE = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"
FB_RESERVED, FB_TOTAL = "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_TOTAL"
GPU_FIELDS = {  # DCGM family -> field of the gpu measurement (same unit)
    "DCGM_FI_DEV_GPU_UTIL": "util_pct",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "mem_util_pct",
    "DCGM_FI_DEV_GPU_TEMP": "temp_c",
    "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz",
    "DCGM_FI_DEV_MEM_CLOCK": "mem_clock_mhz",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": "power_limit_w",
}
POWER_LIMITS = ("DCGM_FI_DEV_POWER_MGMT_LIMIT_MAX", "DCGM_FI_DEV_POWER_MGMT_LIMIT")  # watts
CLOCK_EVENTS = ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")
FP64_BLANK, INT64_BLANK = 2.0**47, 2.0**63 - 16  # DCGM_FP64_BLANK, DCGM_INT64_BLANK and above
Values = dict[str, tuple[dict[str, str], float]]  # DCGM family -> (labels, value), for one GPU


class DcgmSource:
    """Scrapes ``url`` (dcgm-exporter, e.g. ``http://localhost:9400/metrics``) on every read."""

    name = "dcgm"
    kind = "power"

    def __init__(
        self,
        url: str,
        timeout_s: float = 2.0,
        session: Any = None,
        interval_s: float | None = None,
        max_watts: float = GPU_MAX_WATTS,
    ) -> None:
        self.url = url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + "/metrics"
        self.timeout_s = timeout_s
        self.interval_s = interval_s  # None: the interval of its kind
        self.max_watts = max_watts  # the ceiling of a GPU whose scrape has no power limit
        self._own_session = session is None
        self._session = requests.Session() if session is None else session

    def _scrape(self) -> dict[str, Values]:
        """gpu index -> DCGM family -> (labels, value); every vendor error is translated here."""
        try:
            answer = self._session.get(self.url, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise SourceUnavailable(
                f"dcgm: cannot reach dcgm-exporter at {self.url} ({type(e).__name__}): start it "
                "(docker compose --profile gpu up) or fix sources.dcgm.url"
            ) from e
        if answer.status_code != 200:
            raise SourceError(
                f"dcgm: {self.url} answered HTTP {answer.status_code}: check that it is "
                "dcgm-exporter's /metrics and read its log (docker compose logs dcgm-exporter)"
            )
        gpus: dict[str, Values] = {}
        try:
            for family in text_string_to_metric_families(answer.text):
                if not family.name.startswith("DCGM_FI_"):  # family names: counters' samples
                    continue  # are renamed *_total by the parser
                for sample in family.samples:
                    labels = sample.labels
                    if "gpu" in labels and not labels.get("GPU_I_ID"):
                        gpus.setdefault(labels["gpu"], {}).setdefault(
                            family.name, (labels, float(sample.value))
                        )
        except (ValueError, TypeError, IndexError, KeyError) as e:
            raise SourceError(
                f"dcgm: {self.url} did not answer Prometheus text ({e}): is it dcgm-exporter's "
                "/metrics?"
            ) from e
        if not gpus:
            raise SourceUnavailable(
                f"dcgm: {self.url} answers but has no DCGM_FI_* metrics with a gpu label: is it "
                "dcgm-exporter, and does it see the GPUs (its log says)?"
            )
        return gpus

    def read(self) -> list[Reading]:
        """One ``energy`` and one ``gpu`` reading per GPU that dcgm-exporter reports."""
        readings: list[Reading] = []
        for index, values in sorted(self._scrape().items(), key=lambda kv: _order(kv[0])):
            value = partial(_value, values)
            watts, energy_mj = value(POWER), value(ENERGY_MJ)
            if watts is not None or energy_mj is not None:
                fields = {} if watts is None else {"watts": watts}
                counters = {}
                if energy_mj is not None:
                    ceiling = self._ceiling(value)
                    counters["joules_total"] = Counter(energy_mj, ENERGY_SCALE, max_rate=ceiling)
                tags = energy_tags(self.name, f"gpu{index}")
                readings.append(Reading(ENERGY, tags, fields, counters))

            gpu = {f: v for fam, f in GPU_FIELDS.items() if (v := value(fam)) is not None}
            used, free, total = value(FB_USED), value(FB_FREE), value(FB_TOTAL)
            if used is not None:
                gpu["mem_used_bytes"] = used * MIB
                if total is None and free is not None:
                    total = used + free + (value(FB_RESERVED) or 0.0)
            if total is not None:
                gpu["mem_total_bytes"] = total * MIB
            reasons = next((v for fam in CLOCK_EVENTS if (v := value(fam)) is not None), None)
            if reasons is not None:
                gpu.update(clock_event_fields(int(reasons)))
            labels = next(iter(values.values()))[0]
            tags = {
                "gpu": index,
                "uuid": labels.get("UUID") or "unknown",
                "name": labels.get("modelName") or "unknown",
            }
            if gpu:
                readings.append(Reading(GPU, tags, gpu))
        return readings

    def _ceiling(self, value: Callable[[str], float | None]) -> float:
        """The energy counter's ceiling in mJ/s, from one GPU's scraped power limits."""
        limits_w = [w for fam in POWER_LIMITS if (w := value(fam)) is not None and w > 0]
        return max_rate(HEADROOM * max(limits_w) if limits_w else self.max_watts, ENERGY_SCALE)

    def available(self) -> tuple[bool, str]:
        """(True, "dcgm-exporter at URL: N GPUs: ...") or (False, why and the fix)."""
        try:
            readings = self.read()
        except SourceError as e:
            return False, str(e)
        parts = gpu_inventory(readings)
        plural = "s" if len(parts) != 1 else ""
        return True, f"dcgm-exporter at {self.url}: {len(parts)} GPU{plural}: " + ", ".join(parts)

    def close(self) -> None:
        """Close the HTTP session if this source made it."""
        if self._own_session:
            self._session.close()


def _value(values: Values, family: str) -> float | None:
    """The value of ``family``, or None when absent or one of DCGM's blank sentinels."""
    if family not in values:
        return None
    v = values[family][1]
    return (
        v if math.isfinite(v) and v < (INT64_BLANK if family == ENERGY_MJ else FP64_BLANK) else None
    )


def _order(index: str) -> tuple[int, str]:
    return (int(index), "") if index.isdigit() else (1 << 30, index)


def _validate(settings: Settings, where: str) -> None:
    http_url(f"{where}.url", settings["url"], "give dcgm-exporter's URL, http://HOST:9400/metrics")
    validate_max_watts(settings, where)


SPEC = SourceSpec(
    key="dcgm",
    defaults={
        "enabled": False,
        "url": "http://localhost:9400/metrics",
        "interval_s": 1.0,
        "max_watts": GPU_MAX_WATTS,
    },
    validate=_validate,
    build=lambda settings, cfg: DcgmSource(
        settings["url"], interval_s=settings["interval_s"], max_watts=settings["max_watts"]
    ),
    rechecked=True,
)
