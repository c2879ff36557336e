"""GPU clock-event (throttle) reasons: read through NVML (the fake), stored by the agent, and a
run flagged with the share of its window the GPU spent throttled."""

from __future__ import annotations

import threading
import time

import pytest
from fakes import fake_pynvml as fake
from fakes.fake_pynvml import FakeGPU, FakeNvml

from exporters import clock, schema
from exporters.agent import Agent
from exporters.schema import Point, clock_event_fields, throttle_labels
from exporters.sources.nvml import NvmlSource
from scoring.runs import load_runs

EVENT = "nvmlDeviceGetCurrentClocksEventReasons"
LEGACY = "nvmlDeviceGetCurrentClocksThrottleReasons"


def gpu_fields(nv: FakeNvml) -> dict:
    (reading,) = [r for r in NvmlSource(nvml=nv).read() if r.measurement == "gpu"]
    return dict(reading.fields)


@pytest.mark.parametrize(
    ("reasons", "throttled", "power", "thermal", "labels"),
    [
        (fake.nvmlClocksEventReasonNone, 0.0, 0.0, 0.0, []),
        (fake.nvmlClocksEventReasonGpuIdle, 0.0, 0.0, 0.0, []),
        (fake.nvmlClocksEventReasonApplicationsClocksSetting, 0.0, 0.0, 0.0, []),
        (fake.nvmlClocksEventReasonDisplayClockSetting, 0.0, 0.0, 0.0, []),
        (fake.nvmlClocksEventReasonSyncBoost, 0.0, 0.0, 0.0, []),
        (fake.nvmlClocksEventReasonSwPowerCap, 1.0, 1.0, 0.0, ["power cap"]),
        (fake.nvmlClocksEventReasonHwPowerBrakeSlowdown, 1.0, 1.0, 0.0, ["power brake"]),
        (fake.nvmlClocksEventReasonSwThermalSlowdown, 1.0, 0.0, 1.0, ["thermal"]),
        (fake.nvmlClocksEventReasonHwThermalSlowdown, 1.0, 0.0, 1.0, ["thermal"]),
        (fake.nvmlClocksEventReasonHwSlowdown, 1.0, 0.0, 0.0, ["hardware slowdown"]),
        (fake.nvmlClocksEventReasonSwPowerCap | fake.nvmlClocksEventReasonHwThermalSlowdown
         | fake.nvmlClocksEventReasonApplicationsClocksSetting, 1.0, 1.0, 1.0,
         ["power cap", "thermal"]),
    ],
)  # fmt: skip
def test_reasons_become_float_fields(reasons, throttled, power, thermal, labels) -> None:
    fields = gpu_fields(FakeNvml([FakeGPU(clock_event_reasons=reasons)]))
    assert {k: fields[k] for k in clock_event_fields(0)} == {
        "clock_event_reasons": float(reasons),
        "throttled": throttled,
        "throttle_power": power,
        "throttle_thermal": thermal,
    }
    assert all(type(v) is float for v in fields.values())
    assert throttle_labels(reasons) == labels


def test_bits_are_nvmls() -> None:
    real = pytest.importorskip("pynvml")
    assert schema.SW_POWER_CAP == real.nvmlClocksEventReasonSwPowerCap
    assert schema.HW_SLOWDOWN == real.nvmlClocksEventReasonHwSlowdown
    assert schema.SW_THERMAL == real.nvmlClocksEventReasonSwThermalSlowdown
    assert schema.HW_THERMAL == real.nvmlClocksEventReasonHwThermalSlowdown
    assert schema.HW_POWER_BRAKE == real.nvmlClocksEventReasonHwPowerBrakeSlowdown
    assert schema.GPU_IDLE == real.nvmlClocksThrottleReasonGpuIdle
    benign = (real.nvmlClocksEventReasonGpuIdle | real.nvmlClocksEventReasonSyncBoost
              | real.nvmlClocksEventReasonApplicationsClocksSetting
              | real.nvmlClocksEventReasonDisplayClockSetting)  # fmt: skip
    assert schema.THROTTLED | benign == real.nvmlClocksEventReasonAll
    assert not schema.THROTTLED & benign


def test_new_function_first_the_deprecated_one_on_old_drivers_and_modules() -> None:
    power_cap = fake.nvmlClocksEventReasonSwPowerCap
    nv = FakeNvml([FakeGPU(clock_event_reasons=power_cap)])
    source = NvmlSource(nvml=nv)
    source.read()
    source.read()
    assert (nv.calls[EVENT], nv.calls[LEGACY]) == (2, 0)

    old_driver = FakeNvml([FakeGPU(clock_event_reasons=power_cap)], driver_lacks={EVENT})
    source = NvmlSource(nvml=old_driver)
    for _ in range(3):
        assert by_gpu(source.read())["throttled"] == 1.0
    assert (old_driver.calls[EVENT], old_driver.calls[LEGACY]) == (1, 3)  # asked once only

    old_module = FakeNvml([FakeGPU(clock_event_reasons=power_cap)], module_lacks={EVENT})
    assert not hasattr(old_module, EVENT)
    assert gpu_fields(old_module)["clock_event_reasons"] == float(power_cap)
    assert old_module.calls[LEGACY] == 1


def by_gpu(readings: list) -> dict:
    (reading,) = [r for r in readings if r.measurement == "gpu"]
    return dict(reading.fields)


def test_unsupported_everywhere_leaves_the_fields_out() -> None:
    nv = FakeNvml([FakeGPU(not_supported={EVENT, LEGACY})])
    source = NvmlSource(nvml=nv)
    for _ in range(2):
        fields = by_gpu(source.read())
        assert "throttled" not in fields and "clock_event_reasons" not in fields
        assert fields["util_pct"] == 40.0
    assert (nv.calls[EVENT], nv.calls[LEGACY]) == (1, 1)


def _event(store, run_id: str, event: str, **fields) -> int:
    stamp = clock.wall_ns()
    tags = {"run_id": run_id, "model": "resnet50", "backend": "tensorflow",
            "dataset": "synthetic", "host": "h"}  # fmt: skip
    store.write([Point("run", tags, {"event": event, **fields}, stamp)])
    store.flush()
    return stamp


@pytest.mark.timing
def test_the_agent_stores_throttling_and_the_run_is_flagged(tmp_path, store) -> None:
    """A GPU held at its power cap for the second half of a run; the other never throttled."""
    nv = FakeNvml([FakeGPU(), FakeGPU(uuid="GPU-1")])
    agent = Agent([NvmlSource(nvml=nv)], store, "h", {"power": 0.02, "system": 0.5})
    sampling = threading.Thread(target=agent.run, kwargs={"duration_s": 1.6})
    sampling.start()
    time.sleep(0.2)
    start = _event(store, "t", "start")
    time.sleep(0.6)
    nv.gpus[0].clock_event_reasons = fake.nvmlClocksEventReasonSwPowerCap
    time.sleep(0.6)
    end = _event(store, "t", "end", inferences=100, top1=0.7, accuracy_source="measured")
    sampling.join()
    stored = store.read("gpu", start, end, tags={"gpu": "0"})
    (run,) = load_runs(store)
    throttled = [p.fields["throttled"] for p in stored]
    assert set(throttled) == {0.0, 1.0} and throttled == sorted(throttled)  # 0 then 1
    assert {p.fields["clock_event_reasons"] for p in stored} == {0.0, 4.0}
    assert all(type(p.fields["throttled"]) is float for p in stored)
    share = sum(throttled) / len(throttled)
    assert run.throttled_share == pytest.approx(share)
    assert 0.3 < share < 0.7
    gpus = {g.gpu: g for g in run.stats.gpus}
    assert gpus["1"].throttled_share == 0.0
    # the fake GPUs spend no energy, which is flagged too; the throttling flag stands beside it
    assert f"GPU 0 throttled {share:.0%} of the window (power cap)" in run.flags
