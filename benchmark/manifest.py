"""The environment of a run: a manifest stored with each pass, and the machine's id.

:func:`build_manifest` describes the machine a pass ran on as a JSON-ready dict, written into
the pass's ``start`` event (``RunStart.manifest``, as compact JSON) with :func:`machine_id`
beside it (``RunStart.machine_id``):

- ``cpu``: ``model`` (``model name`` of ``/proc/cpuinfo``; ``Hardware`` or ``CPU part`` on
  ARM), ``sockets`` (distinct ``physical id``), ``cores`` (distinct ``physical id``/``core id``
  pairs) and ``threads`` (``processor`` entries); ``memory_bytes`` (``MemTotal`` of
  ``/proc/meminfo``);
- ``kernel`` (``/proc/sys/kernel/osrelease``), ``os`` (``PRETTY_NAME`` of ``/etc/os-release``),
  ``python``, ``tubai``, ``backend`` and ``frameworks`` (the installed versions of Keras,
  TensorFlow, JAX, PyTorch, ONNX Runtime: read from their metadata, nothing is imported);
- ``gpus``: per GPU through NVML (:func:`gpu_facts`), its ``name``, ``power_limit_w`` and
  ``power_limit_range_w``, ``sm_clock_mhz``/``mem_clock_mhz`` at the pass's start and their
  maxima; ``driver`` and ``cuda`` (the driver's CUDA version); where NVML cannot be asked,
  ``gpu_note`` says why (the translated NVML error, :mod:`exporters.sources.nvml_errors`);
- ``sources``: each source sampling the host, with its ``cadence_s`` (how often it is read)
  and ``update_s`` (how often its sensor updates: :func:`exporters.sources.update_s`);
- ``task``: what the pass's model does (:func:`model_task`, from its registry family: one of
  :mod:`scoring.rating`'s tasks), which decides the reference models it is rated against.

Every file is read under ``root`` (a parameter, so tests pass fixture trees); what a machine
lacks is left out, never guessed.

The machine id is ``/etc/machine-id`` (else ``/var/lib/dbus/machine-id``), which systemd and
D-Bus keep per installation, hashed with SHA-256 under a tubai prefix and cut to 16 hex
digits: stable per machine, different for two machines of the same host name, and not the raw
id (which machine-id(5) asks applications not to publish). A clone of a VM image that kept its
machine-id shares it; a machine without one has none (``None``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
import re
from pathlib import Path
from typing import Any

from exporters.errors import SourceError
from exporters.sources import all_sources, update_s
from exporters.sources.nvml_errors import NO_MODULE_FIX, is_unsupported, translate
from scoring.rating import DIGITS, IMAGENET

log = logging.getLogger(__name__)

SCHEMA = 1  # the manifest's layout; raised when a key changes meaning
ID_FILES = ("etc/machine-id", "var/lib/dbus/machine-id")
ID_PREFIX = b"tubai machine id\n"
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "onnxruntime")


def _text(root: str | Path, relative: str) -> str | None:
    try:
        return (Path(root) / relative).read_text(errors="replace")
    except OSError:
        return None


def machine_id(root: str | Path = "/") -> str | None:
    """This machine's id: its machine-id hashed (see the module's docstring), or None."""
    for relative in ID_FILES:
        raw = (_text(root, relative) or "").strip()
        if raw:
            return hashlib.sha256(ID_PREFIX + raw.encode()).hexdigest()[:16]
    return None


def cpu_facts(cpuinfo: str) -> dict[str, Any]:
    """CPU ``model``, ``sockets``, ``cores`` and ``threads`` from ``/proc/cpuinfo``'s text
    (keys the file does not give are left out)."""
    blocks = [dict(_pairs(block)) for block in re.split(r"\n\s*\n", cpuinfo) if block.strip()]
    cpus = [b for b in blocks if "processor" in b and b["processor"].isdigit()]
    facts: dict[str, Any] = {}
    every = {k: v for b in blocks for k, v in b.items()}  # ARM: "Hardware" in its own block
    model = next((every[k] for k in ("model name", "Hardware", "CPU part") if every.get(k)), None)
    if model:
        facts["model"] = " ".join(model.split())
    sockets = {b["physical id"] for b in cpus if "physical id" in b}
    if sockets:
        facts["sockets"] = len(sockets)
        facts["cores"] = len({(b.get("physical id"), b.get("core id")) for b in cpus})
    elif cpus:
        facts["sockets"] = 1
    if cpus:
        facts["threads"] = len(cpus)
        facts.setdefault("cores", len(cpus))
    return facts


def _pairs(block: str) -> list[tuple[str, str]]:
    return [
        (key.strip(), value.strip())
        for key, sep, value in (line.partition(":") for line in block.splitlines())
        if sep
    ]


def _memory_bytes(meminfo: str | None) -> int | None:
    found = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo or "", re.M)
    return int(found.group(1)) * 1024 if found else None


def _os_name(os_release: str | None) -> str | None:
    found = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', os_release or "", re.M)
    return found.group(1) if found else None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def frameworks() -> dict[str, str]:
    """Installed versions of the inference frameworks, from their metadata."""
    found = {name: _version(name) for name in FRAMEWORKS}
    return {name: v for name, v in found.items() if v is not None}


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_version(code: int) -> str:
    """NVML's CUDA driver version (1000 * major + 10 * minor) as ``major.minor``."""
    return f"{code // 1000}.{code % 1000 // 10}"


def gpu_facts(nvml: Any = None) -> dict[str, Any]:
    """``gpus``, ``driver`` and ``cuda`` through NVML (``nvml``: the module, default
    ``pynvml``); ``gpu_note`` instead where NVML cannot be asked."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return {"gpu_note": f"nvml: {NO_MODULE_FIX}"}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        return {"gpu_note": str(translate(nvml, e, "nvmlInit"))}
    try:
        facts: dict[str, Any] = {}
        driver = _optional(nvml, "nvmlSystemGetDriverVersion")
        cuda = _optional(nvml, "nvmlSystemGetCudaDriverVersion")
        if driver is not None:
            facts["driver"] = _str(driver)
        if cuda:
            facts["cuda"] = cuda_version(int(cuda))
        facts["gpus"] = [_gpu(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
        return facts
    except (nvml.NVMLError, SourceError) as e:
        return {"gpu_note": str(translate(nvml, e, "reading the GPUs"))}
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as e:
            log.debug("nvmlShutdown: %s", e)


def _optional(nvml: Any, function: str, *args: Any) -> Any:
    """``nvml.function(*args)``, or None where the module, driver or GPU lacks it."""
    fn = getattr(nvml, function, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except nvml.NVMLError as e:
        if is_unsupported(nvml, e):
            return None
        raise


def _gpu(nvml: Any, index: int) -> dict[str, Any]:
    """One GPU's name, power limits and clocks now (what it does not support left out)."""
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    gpu: dict[str, Any] = {"index": index, "name": _str(nvml.nvmlDeviceGetName(h))}
    limit_mw = _optional(nvml, "nvmlDeviceGetEnforcedPowerLimit", h)
    if limit_mw is not None:
        gpu["power_limit_w"] = limit_mw / 1000
    limits_mw = _optional(nvml, "nvmlDeviceGetPowerManagementLimitConstraints", h)
    if limits_mw:
        gpu["power_limit_range_w"] = [v / 1000 for v in limits_mw]
    for key, function, clock in (
        ("sm_clock_mhz", "nvmlDeviceGetClockInfo", "NVML_CLOCK_SM"),
        ("mem_clock_mhz", "nvmlDeviceGetClockInfo", "NVML_CLOCK_MEM"),
        ("max_sm_clock_mhz", "nvmlDeviceGetMaxClockInfo", "NVML_CLOCK_SM"),
        ("max_mem_clock_mhz", "nvmlDeviceGetMaxClockInfo", "NVML_CLOCK_MEM"),
    ):
        value = _optional(nvml, function, h, getattr(nvml, clock))
        if value is not None:
            gpu[key] = int(value)
    return gpu


def source_facts(sampler: Any) -> list[dict[str, Any]]:
    """Each source sampling the host (a :class:`~benchmark.sampling.Sampler`'s own agent's, or,
    where an exporter samples, the enabled ones of this machine's configuration), with its
    cadence and its sensor's update period, in seconds."""
    cfg = sampler.config
    settings = cfg["sources"]
    agent = sampler.agent
    if agent is not None:
        sources = list(agent.sources)
    else:
        sources = [s for key, s in all_sources(cfg).items()
                   if (settings.get(key) or {}).get("enabled", True) is not False]  # fmt: skip
    return [
        {
            "name": s.name,
            "cadence_s": float(
                agent.interval_of(s)
                if agent is not None
                else getattr(s, "interval_s", None) or cfg["interval_s"][s.kind]
            ),
            "update_s": update_s(s.name, settings),
        }
        for s in sources
    ]


def model_task(spec: Any) -> str:
    """The task a registry model (a :class:`~benchmark.spec.ModelSpec`) performs, from its
    family: digits classification for the ``digits`` family, else ImageNet classification."""
    return DIGITS if spec.family == "digits" else IMAGENET


def build_manifest(
    backend: str,
    sources: list[dict[str, Any]],
    root: str | Path = "/",
    nvml: Any = None,
    gpus: bool = True,
    task: str | None = None,
) -> dict[str, Any]:
    """The manifest of a pass run by ``backend`` and sampled by ``sources``
    (:func:`source_facts`) for a model performing ``task`` (:func:`model_task`); files read
    under ``root``; ``nvml`` the NVML module (default ``pynvml``; ``gpus=False`` does not
    ask)."""
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "machine_id": machine_id(root),
        "cpu": cpu_facts(_text(root, "proc/cpuinfo") or ""),
        "memory_bytes": _memory_bytes(_text(root, "proc/meminfo")),
        "kernel": (_text(root, "proc/sys/kernel/osrelease") or "").strip() or None,
        "os": _os_name(_text(root, "etc/os-release")),
        "python": platform.python_version(),
        "tubai": _version("tubai"),
        "backend": backend,
        "frameworks": frameworks(),
        "task": task,
    }
    if gpus:
        manifest.update(gpu_facts(nvml))
    manifest["sources"] = sources
    return {k: v for k, v in manifest.items() if v is not None}


def manifest_json(manifest: dict[str, Any]) -> str:
    """The manifest as the ``start`` event stores it: compact JSON, keys sorted."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"))


def pass_environment(
    sampler: Any, backend: str, root: str | Path = "/", spec: Any = None
) -> dict[str, str | None]:
    """The ``manifest`` (JSON) and ``machine_id`` fields of a pass's ``start`` event, asked
    just before its window opens (clocks at its start); ``spec``: the pass's model
    (:func:`model_task`). A manifest that cannot be built is logged and stored as
    ``{"error": ...}``: it never stops a pass."""
    task = None if spec is None else model_task(spec)
    try:
        manifest = build_manifest(backend, source_facts(sampler), root, task=task)
    except Exception as e:  # the pass matters more than its description
        log.warning("the run's manifest cannot be built: %s: %s", type(e).__name__, e)
        manifest = {"schema": SCHEMA, "error": f"{type(e).__name__}: {e}"}
        if task is not None:
            manifest["task"] = task  # the rating still knows what the model does
    return {"manifest": manifest_json(manifest), "machine_id": machine_id(root)}
