"""NvmlSource against a faithful fake of pynvml, and (marked ``gpu``) against the real NVML."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Iterator

import pytest
from fakes import fake_pynvml as fake
from fakes.fake_pynvml import FakeGPU, FakeNvml

from exporters.config import load_config
from exporters.counters import CounterTotals
from exporters.errors import ConfigError, SourceError, SourceUnavailable
from exporters.schema import Counter
from exporters.sources import all_sources
from exporters.sources.base import Source
from exporters.sources.nvml import NvmlSource

H200 = FakeGPU(name="NVIDIA H200", uuid="GPU-aaaa", power_mw=312_456, energy_mj=5_000_000)
P100 = FakeGPU(name="Tesla P100-PCIE-16GB", uuid="GPU-bbbb", power_mw=40_000, energy_mj=None)


def two_gpus(**second: object) -> FakeNvml:
    return FakeNvml([FakeGPU(**vars(H200)), FakeGPU(**{**vars(P100), **second})])


def by_kind(readings: list) -> tuple[dict, dict]:
    energy = {r.tags["domain"]: r for r in readings if r.measurement == "energy"}
    gpu = {r.tags["gpu"]: r for r in readings if r.measurement == "gpu"}
    return energy, gpu


def test_two_gpus_one_with_energy_counter_units_converted() -> None:
    source = NvmlSource(nvml=two_gpus())
    assert isinstance(source, Source)
    energy, gpu = by_kind(source.read())

    assert dict(energy["gpu0"].tags) == {"source": "nvml", "domain": "gpu0", "estimated": "false"}
    assert energy["gpu0"].fields == {"watts": pytest.approx(312.456)}
    ceiling = 2 * 700_000  # twice the highest power limit it accepts, in mJ/s
    assert energy["gpu0"].counters == {
        "joules_total": Counter(raw=5_000_000, scale=1e-3, max_rate=ceiling)
    }
    assert energy["gpu0"].counters["joules_total"].rate_field is None
    assert energy["gpu1"].fields == {"watts": 40.0}
    assert energy["gpu1"].counters == {}

    assert dict(gpu["0"].tags) == {"gpu": "0", "uuid": "GPU-aaaa", "name": "NVIDIA H200"}
    assert gpu["0"].fields == {
        "util_pct": 40.0,
        "mem_util_pct": 20.0,
        "mem_used_bytes": float(10 * 2**30),
        "mem_total_bytes": float(80 * 2**30),
        "temp_c": 45.0,
        "sm_clock_mhz": 1980.0,
        "mem_clock_mhz": 2619.0,
        "power_limit_w": 700.0,
        "clock_event_reasons": 0.0,
        "throttled": 0.0,
        "throttle_power": 0.0,
        "throttle_thermal": 0.0,
    }
    assert all(
        type(v) is float for r in (*energy.values(), *gpu.values()) for v in r.fields.values()
    )
    assert gpu["1"].tags["name"] == "Tesla P100-PCIE-16GB"


def test_energy_advances_between_reads() -> None:
    nv = two_gpus()
    source = NvmlSource(nvml=nv)
    first = by_kind(source.read())[0]["gpu0"].counters["joules_total"]
    nv.gpus[0].advance(0.5)
    second = by_kind(source.read())[0]["gpu0"].counters["joules_total"]
    assert (second.raw - first.raw) * second.scale == pytest.approx(312.456 * 0.5, rel=1e-3)
    assert nv.calls["nvmlInit"] == 1


def test_not_supported_fields_are_omitted_and_not_asked_again() -> None:
    nv = two_gpus(not_supported={"nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage"})
    source = NvmlSource(nvml=nv)
    energy, gpu = by_kind(source.read())
    assert "temp_c" not in gpu["1"].fields
    assert "temp_c" in gpu["0"].fields
    assert "gpu1" not in energy  # neither power nor counter: no energy reading at all
    source.read()
    assert nv.calls["nvmlDeviceGetTemperature"] == 3  # gpu0 twice, gpu1 once
    assert nv.calls["nvmlDeviceGetTotalEnergyConsumption"] == 3


def test_ceiling_from_the_power_limit_range_asked_once_else_max_watts() -> None:
    nv = FakeNvml([
        FakeGPU(name="NVIDIA B200", power_limit_range_mw=(200_000, 1_000_000)),
        FakeGPU(name="GRID vGPU", not_supported={"nvmlDeviceGetPowerManagementLimitConstraints"}),
        FakeGPU(power_limit_range_mw=(0, 0)),  # says nothing
    ])  # fmt: skip
    source = NvmlSource(nvml=nv, max_watts=1500)
    for _ in range(3):
        energy = by_kind(source.read())[0]
    watts = [energy[f"gpu{i}"].counters["joules_total"].max_rate * 1e-3 for i in range(3)]
    assert watts == [2000.0, 1500.0, 1500.0]
    assert nv.calls["nvmlDeviceGetPowerManagementLimitConstraints"] == 3  # once per GPU
    for lacks in ("module_lacks", "driver_lacks"):  # an older nvidia-ml-py, an older driver
        older = FakeNvml([FakeGPU()], **{lacks: {"nvmlDeviceGetPowerManagementLimitConstraints"}})
        counter = by_kind(NvmlSource(nvml=older).read())[0]["gpu0"].counters["joules_total"]
        assert counter.max_rate * 1e-3 == 2000.0  # the default of sources.nvml.max_watts


def test_a_spike_in_the_energy_counter_is_a_glitch_not_energy() -> None:
    """A counter read as a megajoule more for one read (an 8 GW step) adds nothing."""
    nv = FakeNvml([FakeGPU(power_mw=300_000)])
    source, totals = NvmlSource(nvml=nv), CounterTotals()

    def total_at(t_s: float) -> dict:
        (energy,) = [r for r in source.read() if r.measurement == "energy"]
        return totals.fields(energy, round(t_s * 1e9))

    total_at(0.0)
    nv.gpus[0].advance(0.1)
    true_mj = nv.gpus[0].energy_mj
    nv.gpus[0].energy_mj = true_mj + 10**9
    assert "joules_total" not in total_at(0.1)
    nv.gpus[0].energy_mj = true_mj
    nv.gpus[0].advance(0.1)
    assert total_at(0.2)["joules_total"] == pytest.approx(60.0)  # 300 W for 0.2 s
    assert (totals.glitches, totals.resets) == (1, 0)


def test_max_watts_is_configured_and_checked() -> None:
    cfg = load_config(env={"TUBAI_SOURCES__NVML__MAX_WATTS": "1200"})
    assert cfg["sources"]["nvml"]["max_watts"] == 1200
    assert all_sources(cfg)["nvml"].max_watts == 1200
    with pytest.raises(ConfigError, match=r"'sources\.nvml\.max_watts' is 0: give a number"):
        load_config(env={"TUBAI_SOURCES__NVML__MAX_WATTS": "0"})


def test_one_gpu_lost_mid_run_the_other_is_still_read(caplog: pytest.LogCaptureFixture) -> None:
    nv = two_gpus()
    source = NvmlSource(nvml=nv)
    assert len(source.read()) == 4
    nv.gpus[0].fail_with = fake.NVML_ERROR_GPU_IS_LOST
    for _ in range(3):
        energy, gpu = by_kind(source.read())
    assert set(energy) == {"gpu1"} and set(gpu) == {"1"}
    assert len(source.last_errors) == 1
    assert "gpu0" in source.last_errors[0] and "GPU is lost" in source.last_errors[0]
    assert "dmesg" in source.last_errors[0]
    assert len([r for r in caplog.records if "gpu0" in r.getMessage()]) == 1  # warned once
    ok, reason = source.available()
    assert ok and "gpu1 Tesla P100-PCIE-16GB (power only)" in reason and "gpu0" in reason


def test_all_gpus_lost_raises_source_error() -> None:
    nv = two_gpus()
    source = NvmlSource(nvml=nv)
    nv.gpus[0].fail_with = fake.NVML_ERROR_GPU_IS_LOST
    nv.gpus[1].fail_with = fake.NVML_ERROR_UNKNOWN
    with pytest.raises(SourceError, match=r"gpu0.*GPU is lost.*gpu1.*Unknown Error") as info:
        source.read()
    assert isinstance(info.value.__cause__, SourceError)
    assert isinstance(info.value.__cause__.__cause__, fake.NVMLError_GpuIsLost)
    assert source.available()[0] is False


@pytest.mark.parametrize(
    "code", [fake.NVML_ERROR_LIBRARY_NOT_FOUND, fake.NVML_ERROR_DRIVER_NOT_LOADED]
)
def test_no_driver_is_unavailable_with_the_fix(code: int) -> None:
    source = NvmlSource(nvml=FakeNvml([], init_error=code))
    ok, reason = source.available()
    assert not ok
    assert "install the driver" in reason and "--gpus" in reason and "Container Toolkit" in reason
    with pytest.raises(SourceUnavailable):
        source.read()
    source.close()  # never initialised: nothing to shut down


def test_pynvml_missing_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    ok, reason = NvmlSource().available()
    assert not ok and "pip install nvidia-ml-py" in reason


def test_default_module_is_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = two_gpus()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    source = NvmlSource()
    ok, reason = source.available()
    assert ok, reason
    assert reason == (
        "2 GPUs: gpu0 NVIDIA H200 (energy counter), gpu1 Tesla P100-PCIE-16GB (power only)"
    )
    source.close()
    assert nv.initialised == 0 and nv.calls["nvmlShutdown"] == 1
    source.close()
    assert nv.calls["nvmlShutdown"] == 1


def test_no_gpu_is_unavailable() -> None:
    ok, reason = NvmlSource(nvml=FakeNvml([])).available()
    assert not ok and "nvidia-smi" in reason


def test_names_as_bytes_from_old_nvidia_ml_py() -> None:
    nv = FakeNvml([FakeGPU(name="Tesla V100-SXM2-16GB", uuid="GPU-cccc", name_as_bytes=True)])
    gpu = by_kind(NvmlSource(nvml=nv).read())[1]["0"]
    assert gpu.tags["name"] == "Tesla V100-SXM2-16GB" and gpu.tags["uuid"] == "GPU-cccc"


def test_fake_mirrors_the_real_pynvml() -> None:
    """Same constants, error classes and function signatures as nvidia-ml-py's pynvml."""
    real = pytest.importorskip("pynvml")
    for name in dir(fake):
        if name.startswith(("NVML_", "NVMLError_", "nvmlClocks")):
            assert hasattr(real, name), name
        if name.startswith(("NVML_", "nvmlClocks")):
            assert getattr(fake, name) == getattr(real, name), name
            assert getattr(FakeNvml([]), name) == getattr(real, name), name
    assert issubclass(real.NVMLError_GpuIsLost, real.NVMLError)
    assert real.NVMLError(15).value == fake.NVMLError(15).value == 15
    for name, method in inspect.getmembers(FakeNvml, inspect.isfunction):
        if name.startswith("nvml"):
            want = list(inspect.signature(getattr(real, name)).parameters)
            assert list(inspect.signature(method).parameters)[1:] == want, name


@pytest.fixture
def real_source() -> Iterator[NvmlSource]:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    source = NvmlSource(nvml=pynvml)
    ok, reason = source.available()
    if not ok:
        pytest.skip(f"no usable NVIDIA GPU here: {reason}")
    yield source
    source.close()


@pytest.mark.gpu
def test_real_nvml_reads_every_gpu(real_source: NvmlSource) -> None:
    import pynvml

    count = pynvml.nvmlDeviceGetCount()
    first = real_source.read()
    energy, gpu = by_kind(first)
    assert sorted(gpu) == [str(i) for i in range(count)]
    for i, reading in gpu.items():
        assert isinstance(reading.tags["name"], str) and reading.tags["name"]
        assert isinstance(reading.tags["uuid"], str) and reading.tags["uuid"].startswith(
            ("GPU-", "MIG-")
        )
        assert energy[f"gpu{i}"].fields["watts"] > 0
        reasons = reading.fields["clock_event_reasons"]  # every GPU since Kepler reports them
        assert reasons == int(reasons) >= 0 and reading.fields["throttled"] in (0.0, 1.0)
    time.sleep(0.5)
    later = by_kind(real_source.read())[0]
    for domain, reading in energy.items():
        if "joules_total" in reading.counters:
            assert later[domain].counters["joules_total"].raw > reading.counters["joules_total"].raw
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(domain.removeprefix("gpu")))
            top_mw = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)[1]
            assert 0 < top_mw < 2_000_000  # a real limit range, in mW, below the default
            assert reading.counters["joules_total"].max_rate == 2 * top_mw
