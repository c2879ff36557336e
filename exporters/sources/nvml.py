"""NVIDIA GPU power, energy and state through NVML (nvidia-ml-py's ``pynvml`` module).

Per GPU, :meth:`NvmlSource.read` returns an ``energy`` reading (``watts`` from the power sensor
and, on Volta and newer, the ``joules_total`` counter from the total-energy counter in mJ) and a
``gpu`` reading (utilisation, memory, temperature, clocks, power limit, and the clock-event
reasons: see :func:`clock_event_fields`). A field the GPU does not support is omitted, never
zero. One GPU failing (lost, unknown error) does not stop the others; only when every GPU fails
does ``read()`` raise. Every numeric field is a float, so that NVML and DCGM points of the same
measurement have the same field types.

The energy counter's ceiling (``Counter.max_rate``, :mod:`.ceilings`) is :data:`~.ceilings.HEADROOM`
times the highest power limit the GPU accepts (``nvmlDeviceGetPowerManagementLimitConstraints``,
asked once per GPU), or ``sources.nvml.max_watts`` (:data:`GPU_MAX_WATTS`) where it says none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from exporters.errors import SourceError, SourceUnavailable
from exporters.schema import ENERGY, GPU, Counter, Reading, clock_event_fields, energy_tags
from exporters.sources.base import SourceSpec
from exporters.sources.ceilings import HEADROOM, max_rate, validate_max_watts
from exporters.sources.nvml_errors import NO_MODULE_FIX, code_of, is_unsupported, translate

log = logging.getLogger(__name__)

ENERGY_SCALE = 1e-3  # the total-energy counter counts millijoules
# The ceiling of a GPU that states no power-limit range: above the largest boards of today
# (1400 W: B300, MI355X), so that no real draw reaches it; a counter read as garbage still jumps
# by far more. dcgm-exporter's GPUs share it.
GPU_MAX_WATTS = 2000.0


class NvmlSource:
    """Reads every GPU that NVML sees; ``nvml`` is the module to use (default: ``pynvml``)."""

    name = "nvml"
    kind = "power"

    def __init__(self, nvml: Any = None, max_watts: float = GPU_MAX_WATTS) -> None:
        self._nvml = nvml
        self.max_watts = max_watts  # the ceiling of a GPU that states no power-limit range
        self._ceiling: dict[int, float] = {}  # gpu -> its energy counter's ceiling (mJ/s)
        self._initialised = False
        self._unsupported: set[tuple[Any, ...]] = set()  # (gpu, function, args)
        self._identity: dict[int, tuple[str, str]] = {}  # gpu -> (uuid, name)
        self._warned: set[tuple[int, int | None]] = set()
        self.last_errors: list[str] = []  # per-GPU failures of the latest read()

    def _lib(self) -> Any:
        """The initialised NVML module (imports and calls nvmlInit once)."""
        if self._initialised:
            return self._nvml
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as e:
                raise SourceUnavailable(f"nvml: {NO_MODULE_FIX}") from e
            self._nvml = pynvml
        nv = self._nvml
        try:
            nv.nvmlInit()
        except nv.NVMLError as e:
            raise translate(nv, e, "nvmlInit") from e
        self._initialised = True
        return nv

    def _optional(self, index: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None when the GPU does not support it (remembered per GPU)."""
        key = (index, fn.__name__, *args[1:])  # args[0] is the device handle
        if key in self._unsupported:
            return None
        try:
            return fn(*args)
        except self._nvml.NVMLError as e:
            if is_unsupported(self._nvml, e):
                self._unsupported.add(key)
                return None
            raise

    def _read_gpu(self, index: int) -> list[Reading]:
        nv = self._nvml
        h = nv.nvmlDeviceGetHandleByIndex(index)
        if index not in self._identity:
            self._identity[index] = (_text(nv.nvmlDeviceGetUUID(h)), _text(nv.nvmlDeviceGetName(h)))
        uuid, name = self._identity[index]
        readings: list[Reading] = []

        power_mw = self._optional(index, nv.nvmlDeviceGetPowerUsage, h)
        energy_mj = self._optional(index, nv.nvmlDeviceGetTotalEnergyConsumption, h)
        if power_mw is not None or energy_mj is not None:
            fields = {} if power_mw is None else {"watts": power_mw / 1000}
            counters = {}
            if energy_mj is not None:
                ceiling = self._ceiling_of(index, h)
                counters["joules_total"] = Counter(energy_mj, ENERGY_SCALE, max_rate=ceiling)
            tags = energy_tags(self.name, f"gpu{index}")
            readings.append(Reading(ENERGY, tags, fields, counters))

        gpu: dict[str, float] = {}
        util = self._optional(index, nv.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            gpu["util_pct"], gpu["mem_util_pct"] = float(util.gpu), float(util.memory)
        mem = self._optional(index, nv.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            gpu["mem_used_bytes"], gpu["mem_total_bytes"] = float(mem.used), float(mem.total)
        temp_c = self._optional(index, nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        sm_mhz = self._optional(index, nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
        mem_mhz = self._optional(index, nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM)
        limit_mw = self._optional(index, nv.nvmlDeviceGetEnforcedPowerLimit, h)
        for field, value in (
            ("temp_c", temp_c),
            ("sm_clock_mhz", sm_mhz),
            ("mem_clock_mhz", mem_mhz),
            ("power_limit_w", None if limit_mw is None else limit_mw / 1000),
        ):
            if value is not None:
                gpu[field] = float(value)
        reasons = self._clock_event_reasons(index, h)
        if reasons is not None:
            gpu.update(clock_event_fields(reasons))
        if gpu:
            readings.append(Reading(GPU, {"gpu": str(index), "uuid": uuid, "name": name}, gpu))
        return readings

    def _ceiling_of(self, index: int, handle: Any) -> float:
        """The energy counter's ceiling in mJ/s: :data:`HEADROOM` times the highest power limit
        the GPU accepts, asked once; ``max_watts`` where the GPU (or the module) has none."""
        if index not in self._ceiling:
            fn = getattr(self._nvml, "nvmlDeviceGetPowerManagementLimitConstraints", None)
            limits_mw = None if fn is None else self._optional(index, fn, handle)
            top_mw = max(limits_mw or [0])
            self._ceiling[index] = (
                HEADROOM * top_mw if top_mw > 0 else max_rate(self.max_watts, ENERGY_SCALE)
            )
        return self._ceiling[index]

    def _clock_event_reasons(self, index: int, handle: Any) -> int | None:
        """The current clock-event reasons bitmask, or None where neither function works.

        ``nvmlDeviceGetCurrentClocksEventReasons`` first; an older nvidia-ml-py lacks it and an
        older driver answers FUNCTION_NOT_FOUND, so then the deprecated
        ``nvmlDeviceGetCurrentClocksThrottleReasons`` (the same bits). What a GPU does not
        support is asked once only (:meth:`_optional`).
        """
        nv = self._nvml
        for name in ("nvmlDeviceGetCurrentClocksEventReasons",
                     "nvmlDeviceGetCurrentClocksThrottleReasons"):  # fmt: skip
            fn = getattr(nv, name, None)
            if fn is not None and (reasons := self._optional(index, fn, handle)) is not None:
                return int(reasons)
        return None

    def read(self) -> list[Reading]:
        """One ``energy`` and one ``gpu`` reading per GPU that could be read."""
        nv = self._lib()
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as e:
            raise translate(nv, e, "nvmlDeviceGetCount") from e
        if count == 0:
            raise SourceUnavailable("nvml: the driver sees no GPU: check `nvidia-smi -L`")
        readings: list[Reading] = []
        errors: list[SourceError] = []
        for index in range(count):
            try:
                readings.extend(self._read_gpu(index))
            except nv.NVMLError as e:
                error = translate(nv, e, f"gpu{index}")
                error.__cause__ = e
                errors.append(error)
                if (index, code_of(nv, e)) not in self._warned:
                    self._warned.add((index, code_of(nv, e)))
                    log.warning("%s (the other GPUs are still read)", error)
        self.last_errors = [str(e) for e in errors]
        if errors and not readings:
            raise SourceError("; ".join(self.last_errors)) from errors[0]
        return readings

    def available(self) -> tuple[bool, str]:
        """(True, "N GPUs: gpu0 NAME (energy counter), ...") or (False, why and the fix)."""
        try:
            readings = self.read()
        except SourceError as e:
            return False, str(e)
        parts = gpu_inventory(readings) + self.last_errors
        return True, f"{len(parts)} GPU{'s' if len(parts) != 1 else ''}: " + ", ".join(parts)

    def close(self) -> None:
        """Shut NVML down if this source initialised it."""
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as e:
                log.debug("nvmlShutdown: %s", e)


def gpu_inventory(readings: list[Reading]) -> list[str]:
    """ "gpu0 NAME (energy counter)" per GPU in ``readings`` (NVML's or dcgm-exporter's)."""
    energy = {r.tags["domain"]: r for r in readings if r.measurement == ENERGY}
    parts = []
    for r in readings:
        if r.measurement == GPU:
            e = energy.get(f"gpu{r.tags['gpu']}")
            what = "energy counter" if e and e.counters else "power only" if e else "no power"
            parts.append(f"gpu{r.tags['gpu']} {r.tags['name']} ({what})")
    return parts


def _text(value: str | bytes) -> str:
    """NVML strings: str in nvidia-ml-py 12+, bytes in older versions."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


SPEC = SourceSpec(
    key="nvml",
    update_s=0.1,
    defaults={"enabled": True, "max_watts": GPU_MAX_WATTS},
    validate=validate_max_watts,
    build=lambda settings, cfg: NvmlSource(max_watts=settings["max_watts"]),
    rechecked=True,
)
