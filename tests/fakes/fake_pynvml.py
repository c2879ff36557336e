"""A fake ``pynvml`` (nvidia-ml-py) for tests: the part of its API that tubai uses, faithfully.

Same function names and signatures, same return types (ints, str, ctypes-like structs with
``.gpu/.memory`` and ``.total/.free/.used``), same constants and the same ``NVMLError`` hierarchy
(``NVMLError(code)`` returns the subclass for that code, e.g. ``NVMLError_NotSupported``, and
``NVMLError_GpuIsLost()`` carries its code in ``.value``), as in nvidia-ml-py 13.

A :class:`FakeNvml` instance is the module-like object::

    nv = FakeNvml([FakeGPU(name="NVIDIA H200"), FakeGPU(energy_mj=None)])
    source = NvmlSource(nvml=nv)
    nv.gpus[0].advance(0.5)                          # 0.5 s at its power: energy goes up
    nv.gpus[1].fail_with = NVML_ERROR_GPU_IS_LOST    # every call on it fails from now on
    nv.gpus[0].clock_event_reasons = nvmlClocksEventReasonSwPowerCap  # held at its power cap

``FakeNvml(gpus, driver_lacks={...})`` answers FUNCTION_NOT_FOUND for those functions, as the
real module does on a driver older than the function; ``module_lacks={...}`` hides them, as an
older nvidia-ml-py that does not define them. ``FakeNvml(gpus, driver_version=...,
cuda_driver_version=...)`` sets what the system queries answer (a ``bytes`` driver version
is what nvidia-ml-py < 12 returned).

It can also stand in for the real module: ``monkeypatch.setitem(sys.modules, "pynvml", nv)``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3

# Clock-event reasons (nvmlDeviceGetCurrentClocksEventReasons), as in nvidia-ml-py 13.
nvmlClocksEventReasonGpuIdle = 0x0000000000000001
nvmlClocksEventReasonApplicationsClocksSetting = 0x0000000000000002
nvmlClocksEventReasonUserDefinedClocks = nvmlClocksEventReasonApplicationsClocksSetting
nvmlClocksEventReasonSwPowerCap = 0x0000000000000004
nvmlClocksEventReasonHwSlowdown = 0x0000000000000008
nvmlClocksEventReasonSyncBoost = 0x0000000000000010
nvmlClocksEventReasonSwThermalSlowdown = 0x0000000000000020
nvmlClocksEventReasonHwThermalSlowdown = 0x0000000000000040
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x0000000000000080
nvmlClocksEventReasonDisplayClockSetting = 0x0000000000000100
nvmlClocksEventReasonNone = 0x0000000000000000
nvmlClocksEventReasonAll = 0x00000000000001FF

# Their deprecated names (nvmlDeviceGetCurrentClocksThrottleReasons), with two more bits.
nvmlClocksThrottleReasonGpuIdle = 0x0000000000000001
nvmlClocksThrottleReasonApplicationsClocksSetting = 0x0000000000000002
nvmlClocksThrottleReasonUserDefinedClocks = nvmlClocksThrottleReasonApplicationsClocksSetting
nvmlClocksThrottleReasonSwPowerCap = 0x0000000000000004
nvmlClocksThrottleReasonHwSlowdown = 0x0000000000000008
nvmlClocksThrottleReasonSyncBoost = 0x0000000000000010
nvmlClocksThrottleReasonSwThermalSlowdown = 0x0000000000000020
nvmlClocksThrottleReasonHwThermalSlowdown = 0x0000000000000040
nvmlClocksThrottleReasonHwPowerBrakeSlowdown = 0x0000000000000080
nvmlClocksThrottleReasonDisplayClockSetting = 0x0000000000000100
nvmlClocksThrottleReasonBoardLimit = 0x0000000000000200
nvmlClocksThrottleReasonReliability = 0x0000000000000400
nvmlClocksThrottleReasonNone = 0x0000000000000000
nvmlClocksThrottleReasonAll = 0x00000000000007FF

# The return codes, as in nvidia-ml-py 13 (pynvml.py).
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """``NVMLError(code)`` is an instance of the subclass registered for ``code``, like pynvml."""

    _valClassMapping: dict[int, type[NVMLError]] = {}  # noqa: RUF012 (pynvml's own name)

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return self.value == other.value  # type: ignore[attr-defined]  # and unhashable, as pynvml


def _extract_errors_as_classes() -> dict[str, type[NVMLError]]:
    """One subclass per NVML_ERROR_* constant, named and built the way pynvml does it.

    NVML_ERROR_GPU_IS_LOST becomes NVMLError_GpuIsLost, whose ``__new__`` fixes the code, and
    ``NVMLError(15)`` maps to it through ``NVMLError._valClassMapping``.
    """
    classes = {}
    for err_name in [n for n in globals() if n.startswith("NVML_ERROR_")]:
        words = err_name.removeprefix("NVML_ERROR_").split("_")
        class_name = "NVMLError_" + "".join(w.capitalize() for w in words)
        code = globals()[err_name]

        def new(cls: type[NVMLError], *args: Any, _code: int = code) -> NVMLError:
            return NVMLError.__new__(cls, _code)

        cls = type(class_name, (NVMLError,), {"__new__": new, "__module__": __name__})
        NVMLError._valClassMapping[code] = cls
        classes[class_name] = cls
    return classes


ERROR_CLASSES = _extract_errors_as_classes()
globals().update(ERROR_CLASSES)


class c_nvmlUtilization_t:  # pynvml's struct names
    def __init__(self, gpu: int, memory: int) -> None:
        self.gpu, self.memory = gpu, memory


class c_nvmlMemory_t:
    def __init__(self, total: int, free: int, used: int) -> None:
        self.total, self.free, self.used = total, free, used


@dataclass
class FakeGPU:
    """One simulated GPU; ``energy_mj=None`` is a pre-Volta GPU without the energy counter."""

    name: str = "NVIDIA H200"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    power_mw: int = 150_000
    energy_mj: int | None = 1_000_000
    util_gpu_pct: int = 40
    util_mem_pct: int = 20
    mem_total_bytes: int = 80 * 2**30
    mem_used_bytes: int = 10 * 2**30
    temp_c: int = 45
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    max_sm_clock_mhz: int = 1980  # nvmlDeviceGetMaxClockInfo
    max_mem_clock_mhz: int = 2619
    power_limit_mw: int = 700_000
    power_limit_range_mw: tuple[int, int] = (200_000, 700_000)  # the limit's (min, max)
    clock_event_reasons: int = nvmlClocksEventReasonNone  # bitmask of nvmlClocksEventReason*
    fail_with: int | None = None  # an NVML_ERROR_* code: every call on this GPU raises it
    not_supported: set[str] = field(default_factory=set)  # nvml function names that fail so
    name_as_bytes: bool = False  # nvidia-ml-py < 12 returned bytes

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass at the current power."""
        if self.energy_mj is not None:
            self.energy_mj += round(self.power_mw * seconds)


class _Handle:
    def __init__(self, index: int) -> None:
        self.index = index


class FakeNvml:
    """The module-like fake; ``calls`` counts the calls of each function."""

    def __init__(
        self,
        gpus: list[FakeGPU],
        init_error: int | None = None,
        driver_lacks: set[str] | frozenset[str] = frozenset(),
        module_lacks: set[str] | frozenset[str] = frozenset(),
        driver_version: str | bytes = "550.54.15",
        cuda_driver_version: int = 12040,  # 1000 * major + 10 * minor: CUDA 12.4
    ) -> None:
        self.gpus = gpus
        self.driver_version, self.cuda_driver_version = driver_version, cuda_driver_version
        self.init_error = init_error
        self.driver_lacks = set(driver_lacks)  # functions answering FUNCTION_NOT_FOUND
        self.module_lacks = set(module_lacks)  # functions this "module version" does not define
        self.initialised = 0  # nvmlInit minus nvmlShutdown, like NVML's reference count
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "module_lacks"):
            raise AttributeError(f"module 'pynvml' has no attribute '{name}'")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:  # constants and error classes, like the module
        if name.startswith(("NVML_", "NVMLError", "c_nvml", "nvmlClocks")) and name in globals():
            return globals()[name]
        raise AttributeError(name)

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1
        self._check()
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._system("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._system("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._system("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        handle = _Handle(index)
        self._gpu(handle, "nvmlDeviceGetHandleByIndex")
        return handle

    def nvmlDeviceGetName(self, handle: _Handle) -> str | bytes:
        g = self._gpu(handle, "nvmlDeviceGetName")
        return g.name.encode() if g.name_as_bytes else g.name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str | bytes:
        g = self._gpu(handle, "nvmlDeviceGetUUID")
        return g.uuid.encode() if g.name_as_bytes else g.uuid

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        g = self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption")
        if g.energy_mj is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return g.energy_mj

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> c_nvmlUtilization_t:
        g = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return c_nvmlUtilization_t(g.util_gpu_pct, g.util_mem_pct)

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: int | None = None) -> Any:
        g = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        free = g.mem_total_bytes - g.mem_used_bytes
        return c_nvmlMemory_t(g.mem_total_bytes, free, g.mem_used_bytes)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        g = self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return g.temp_c

    def nvmlDeviceGetClockInfo(self, handle: _Handle, type: int) -> int:
        g = self._gpu(handle, "nvmlDeviceGetClockInfo")
        clocks = {NVML_CLOCK_SM: g.sm_clock_mhz, NVML_CLOCK_MEM: g.mem_clock_mhz}
        if type not in clocks:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return clocks[type]

    def nvmlDeviceGetMaxClockInfo(self, handle: _Handle, type: int) -> int:
        g = self._gpu(handle, "nvmlDeviceGetMaxClockInfo")
        clocks = {NVML_CLOCK_SM: g.max_sm_clock_mhz, NVML_CLOCK_MEM: g.max_mem_clock_mhz}
        if type not in clocks:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return clocks[type]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: _Handle) -> list[int]:
        g = self._gpu(handle, "nvmlDeviceGetPowerManagementLimitConstraints")
        return list(g.power_limit_range_mw)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").clock_event_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: _Handle) -> int:
        g = self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons")
        return g.clock_event_reasons

    def _check(self) -> None:
        if self.initialised <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _system(self, function: str) -> None:
        """A query of the driver, not of a GPU."""
        self._check()
        self.calls[function] += 1
        if function in self.driver_lacks:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)

    def _gpu(self, handle: _Handle, function: str) -> FakeGPU:
        self._check()
        self.calls[function] += 1
        if function in self.driver_lacks:  # pynvml's _nvmlGetFunctionPointer raises this
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        g = self.gpus[handle.index]
        if g.fail_with is not None:
            raise NVMLError(g.fail_with)
        if function in g.not_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return g
