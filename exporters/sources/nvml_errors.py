"""The one place where NVML errors become tubai errors (with the fix in the message).

NVML raises ``pynvml.NVMLError`` subclasses that carry the return code in ``.value``; the codes
are matched through the module in use (the real ``pynvml`` or a test fake), never by class name.
"""

from __future__ import annotations

from typing import Any

from exporters.errors import SourceError, SourceUnavailable

NO_DRIVER_FIX = (
    "no NVIDIA driver: install the driver / run the container with --gpus "
    "(NVIDIA Container Toolkit)"
)
NO_MODULE_FIX = "the Python module pynvml is missing: pip install nvidia-ml-py"


def code_of(nvml: Any, e: BaseException) -> int | None:
    """The NVML return code of ``e``, or None when ``e`` is not an NVML error."""
    if isinstance(e, nvml.NVMLError):
        return getattr(e, "value", None)
    return None


def is_unsupported(nvml: Any, e: BaseException) -> bool:
    """True for "this GPU or driver does not have that function": the field is omitted."""
    code = code_of(nvml, e)
    return code is not None and code in (
        nvml.NVML_ERROR_NOT_SUPPORTED,
        nvml.NVML_ERROR_FUNCTION_NOT_FOUND,  # a driver older than the function
    )


def translate(nvml: Any, e: BaseException, what: str) -> SourceError:
    """A :class:`SourceError` for NVML error ``e`` raised while doing ``what`` (raise it from e)."""
    code = code_of(nvml, e)
    if code in (nvml.NVML_ERROR_LIBRARY_NOT_FOUND, nvml.NVML_ERROR_DRIVER_NOT_LOADED):
        return SourceUnavailable(f"nvml: {what}: {e}: {NO_DRIVER_FIX}")
    if code == nvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return SourceUnavailable(
            f"nvml: {what}: {e}: the loaded kernel module and libnvidia-ml differ: "
            "reboot or reload the nvidia module after the driver upgrade"
        )
    if code == nvml.NVML_ERROR_NO_PERMISSION:
        return SourceUnavailable(
            f"nvml: {what}: {e}: give the agent access to /dev/nvidia* (run the container with "
            "--gpus, or add the user to the video group)"
        )
    if code in (nvml.NVML_ERROR_GPU_IS_LOST, nvml.NVML_ERROR_RESET_REQUIRED):
        return SourceError(
            f"nvml: {what}: {e}: the GPU fell off the bus; check `dmesg` for Xid errors, "
            "then reset the GPU (nvidia-smi -r) or reboot"
        )
    if code is None:
        return SourceError(f"nvml: {what}: {type(e).__name__}: {e}")
    return SourceError(f"nvml: {what}: {e} (NVML error {code}); see `nvidia-smi -q` for the GPU")
