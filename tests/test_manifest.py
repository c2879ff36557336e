"""The manifest of a run (benchmark.manifest) on fixture trees, the real machine and a fake NVML,
and what scoring shows of it."""

from __future__ import annotations

import json
import re

import psutil
import pytest
from fakes import fake_pynvml as fake
from fakes.fake_pynvml import FakeGPU, FakeNvml
from run_fixtures import S, add_power

from benchmark.manifest import (
    build_manifest,
    cpu_facts,
    gpu_facts,
    machine_id,
    manifest_json,
    pass_environment,
)
from benchmark.records import RunEnd, RunStart, RunTags, write_event
from benchmark.registry import get_spec
from scoring.__main__ import main
from scoring.rankings import entries, mixed_settings, ranking
from scoring.rating import DIGITS, IMAGENET
from scoring.runs import load_runs

TWO_SOCKETS = "".join(
    f"processor\t: {p}\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
    f"physical id\t: {p // 4}\ncore id\t\t: {p % 4 // 2}\n\n"
    for p in range(8)
)  # two sockets, two cores each, two threads per core
OS_RELEASE = 'NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12"\n'
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nprocessor\t: 1\nCPU part\t: 0xd0c\n"


def test_cpu_facts_count_sockets_cores_and_threads() -> None:
    assert cpu_facts(TWO_SOCKETS) == {"model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                                      "sockets": 2, "cores": 4, "threads": 8}  # fmt: skip
    assert cpu_facts(ARM) == {"model": "0xd0c", "sockets": 1, "cores": 2, "threads": 2}
    assert cpu_facts("") == {}


def test_the_real_machine_as_psutil_sees_it() -> None:
    manifest = build_manifest("tensorflow", [], root="/", gpus=False)
    assert manifest["cpu"]["threads"] == psutil.cpu_count()
    assert manifest["cpu"]["cores"] == psutil.cpu_count(logical=False)
    assert manifest["memory_bytes"] == psutil.virtual_memory().total
    assert manifest["python"] and manifest["tubai"] and "keras" in manifest["frameworks"]


def _tree(tmp_path, name: str, ident: str | None, dbus: str | None = None):
    root = tmp_path / name
    for relative, text in (("etc/machine-id", ident), ("var/lib/dbus/machine-id", dbus),
                           ("proc/cpuinfo", TWO_SOCKETS),
                           ("proc/meminfo", "MemTotal:       16318756 kB\nMemFree: 1 kB\n"),
                           ("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n"),
                           ("etc/os-release", OS_RELEASE)):  # fmt: skip
        if text is not None:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_text(text)
    return root


def test_machine_id_is_hashed_stable_and_tells_machines_apart(tmp_path) -> None:
    one = _tree(tmp_path, "one", "0123456789abcdef0123456789abcdef\n")
    again = _tree(tmp_path, "again", "0123456789abcdef0123456789abcdef")
    other = _tree(tmp_path, "other", "fedcba9876543210fedcba9876543210\n")
    dbus_only = _tree(tmp_path, "dbus", None, dbus="fedcba9876543210fedcba9876543210")
    assert re.fullmatch("[0-9a-f]{16}", machine_id(one))
    assert machine_id(one) == machine_id(again) != machine_id(other)
    assert "0123456789abcdef" not in machine_id(one)  # not the raw id
    assert machine_id(dbus_only) == machine_id(other)  # the D-Bus copy of the same id
    assert machine_id(_tree(tmp_path, "none", None)) is None


def test_manifest_of_a_fixture_tree_with_gpus(tmp_path) -> None:
    no_clocks = FakeGPU(name="NVIDIA H200", not_supported={"nvmlDeviceGetClockInfo"})
    nv = FakeNvml([FakeGPU(name="NVIDIA H200", power_limit_mw=600_000), no_clocks])
    sources = [{"name": "rapl", "cadence_s": 0.1, "update_s": 0.001}]
    m = build_manifest("jax", sources, root=_tree(tmp_path, "lab", "ab" * 16), nvml=nv)
    assert m["cpu"] == {"model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "sockets": 2,
                        "cores": 4, "threads": 8}  # fmt: skip
    assert m["memory_bytes"] == 16318756 * 1024 and m["kernel"] == "6.1.0-18-amd64"
    assert m["os"] == "Debian GNU/Linux 12" and m["backend"] == "jax"
    assert m["driver"] == "550.54.15" and m["cuda"] == "12.4" and m["sources"] == sources
    first, second = m["gpus"]
    assert first == {"index": 0, "name": "NVIDIA H200", "power_limit_w": 600.0,
                     "power_limit_range_w": [200.0, 700.0], "sm_clock_mhz": 1980,
                     "mem_clock_mhz": 2619, "max_sm_clock_mhz": 1980,
                     "max_mem_clock_mhz": 2619}  # fmt: skip
    assert "sm_clock_mhz" not in second and second["power_limit_w"] == 700.0
    assert nv.initialised == 0  # shut down again
    assert json.loads(manifest_json(m)) == m


def test_gpu_facts_where_nvml_cannot_answer() -> None:
    queries = {"nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion",
               "nvmlDeviceGetMaxClockInfo"}  # fmt: skip
    older = FakeNvml([FakeGPU()], module_lacks=queries)  # a module without them: GPUs only
    facts = gpu_facts(older)
    assert "driver" not in facts and "cuda" not in facts
    assert facts["gpus"][0]["name"] == "NVIDIA H200"
    assert "max_sm_clock_mhz" not in facts["gpus"][0] and "sm_clock_mhz" in facts["gpus"][0]
    old_driver = FakeNvml([FakeGPU()], driver_lacks=queries - {"nvmlSystemGetDriverVersion"})
    facts = gpu_facts(old_driver)  # FUNCTION_NOT_FOUND: left out, the rest read
    assert facts["driver"] == "550.54.15" and "cuda" not in facts
    assert "max_mem_clock_mhz" not in facts["gpus"][0] and old_driver.initialised == 0
    bytes_driver = FakeNvml([], driver_version=b"470.82.01", cuda_driver_version=11040)
    assert gpu_facts(bytes_driver) == {"driver": "470.82.01", "cuda": "11.4", "gpus": []}
    no_driver = gpu_facts(FakeNvml([], init_error=fake.NVML_ERROR_DRIVER_NOT_LOADED))
    assert set(no_driver) == {"gpu_note"} and "install the driver" in no_driver["gpu_note"]
    lost = FakeNvml([FakeGPU(fail_with=fake.NVML_ERROR_GPU_IS_LOST)])
    assert "fell off the bus" in gpu_facts(lost)["gpu_note"] and lost.initialised == 0


class _Sampler:
    """What pass_environment reads of a Sampler whose agent stopped: an exporter samples."""

    agent = None

    def __init__(self, config) -> None:
        self.config = config


def test_pass_environment_with_an_exporter_sampling(tmp_path, monkeypatch) -> None:
    from exporters.config import load_config

    monkeypatch.setenv("TUBAI_SOURCES__NVML__ENABLED", "false")
    fields = pass_environment(
        _Sampler(load_config()), "tensorflow", _tree(tmp_path, "x", "cd" * 16)
    )
    manifest = json.loads(fields["manifest"])
    assert fields["machine_id"] == manifest["machine_id"] == machine_id(tmp_path / "x")
    names = {s["name"]: s for s in manifest["sources"]}
    assert "nvml" not in names and names["rapl"]["cadence_s"] == 0.1
    assert names["rapl"]["update_s"] == pytest.approx(0.001)


def test_pass_environment_records_the_models_task_from_its_family(tmp_path) -> None:
    from exporters.config import load_config

    sampler, root = _Sampler(load_config()), _tree(tmp_path, "x", "cd" * 16)
    for model, task in (("digits_cnn", DIGITS), ("resnet50", IMAGENET)):
        fields = pass_environment(sampler, "tensorflow", root, spec=get_spec(model))
        assert json.loads(fields["manifest"])["task"] == task
    assert "task" not in json.loads(pass_environment(sampler, "tensorflow", root)["manifest"])
    broken = pass_environment(_Sampler({}), "jax", root, spec=get_spec("digits_cnn"))
    manifest = json.loads(broken["manifest"])  # a manifest that cannot be built keeps it
    assert manifest["task"] == DIGITS and manifest["error"].startswith("KeyError")


def _run(store, run_id, host, start_s, manifest, machine, backend="tensorflow") -> None:
    add_power(store, host, "rapl", "package-0", [start_s - 2 + k for k in range(15)], [50.0] * 15)
    tags = RunTags(run_id, "m" if "b" not in run_id else "n", backend, "synthetic", host)
    start = RunStart(manifest=manifest_json(manifest), machine_id=machine)
    write_event(store, tags, start, round(start_s * S))
    end = RunEnd(inferences=100, top1=0.7, batch_size=8, duration_s=10.0)
    write_event(store, tags, end, round((start_s + 10) * S))
    store.flush()


@pytest.mark.influxdb
def test_scoring_shows_the_environment_and_mixed_settings(store, capsys) -> None:
    gpu = {"index": 0, "name": "NVIDIA A100", "power_limit_w": 400.0}
    first = {"schema": 1, "cpu": {"model": "EPYC", "sockets": 1, "cores": 2},
             "gpus": [gpu], "driver": "550.54", "python": "3.11"}  # fmt: skip
    second = first | {"driver": "560.35", "gpus": [gpu | {"power_limit_w": 300.0}]}
    _run(store, "a", "lab", 1000, first, "id1")
    _run(store, "b", "lab", 1100, second, "id2", backend="jax")
    runs = load_runs(store)
    assert runs[0].manifest == first and runs[0].machine_id == "id1"
    mixed = mixed_settings(ranking(entries(runs))["lab"])
    assert mixed == ["machine: id1 / id2", "driver: 550.54 / 560.35",
                     "power limit: 300 W / 400 W", "backend: jax / tensorflow"]  # fmt: skip
    assert main(["runs", "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "this ranking mixes settings: machine: id1 / id2; driver: 550.54 / 560.35" in out
    assert "environment of lab (machine id2): EPYC (1 socket(s), 2 cores)" in out
    assert "GPU0 NVIDIA A100 at 300 W, driver 560.35" in out
    assert main(["runs", "--store", store.url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"][0]["manifest"] == first and doc["runs"][1]["machine_id"] == "id2"
    assert doc["mixed_settings"]["lab"] == mixed
    assert {e["machine_id"] for e in doc["environments"]} == {"id1", "id2"}
