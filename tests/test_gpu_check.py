"""``scripts/gpu_check.py`` (``make gpu-check``) as far as a machine without a GPU allows: the
fake NVML (``tests/fakes``) in place of ``pynvml``, its energy counter running with the clock,
in step with its power or 20% ahead of it (which the check must flag)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import time
from pathlib import Path

import pytest
from fakes.fake_pynvml import FakeGPU, FakeNvml
from rapl_writer import host_machine

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[1]
GPU_WATTS = 200.0


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load_script()


class ClockedNvml(FakeNvml):
    """One GPU drawing a constant 200 W whose energy counter runs with the clock at ``ratio``
    times that power (1.0: a counter that agrees with the power sensor)."""

    def __init__(self, ratio: float) -> None:
        super().__init__([FakeGPU(power_mw=round(GPU_WATTS * 1000))])
        self.ratio, self.t0 = ratio, time.monotonic()

    def nvmlDeviceGetTotalEnergyConsumption(self, handle) -> int:
        g = self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption")
        return g.energy_mj + round(g.power_mw * (time.monotonic() - self.t0) * self.ratio)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A RAPL tree drawing 30 W beside the fake GPU; NVML enabled, as on a GPU machine."""
    with host_machine(tmp_path, monkeypatch, nvml=True):
        yield monkeypatch


@pytest.mark.timing
@pytest.mark.parametrize("ratio, flagged", [(1.0, False), (1.2, True)])
def test_a_counter_that_disagrees_with_power_by_over_5_percent_is_flagged(
    tmp_path, machine, ratio, flagged
) -> None:
    machine.setitem(sys.modules, "pynvml", ClockedNvml(ratio))
    step = gpu_check.Step("nvml check", 60)
    url = f"sqlite:///{tmp_path / 'g.db'}"
    gpu_check.nvml_check(step, url, "mobilenetv3_small", 1.0, 16, "tensorflow")
    (gpu,) = step.detail["gpus"]
    assert (gpu["source"], gpu["domain"]) == ("nvml", "gpu0")
    assert gpu["counter_joules"] == pytest.approx(GPU_WATTS * ratio * step.detail["seconds"],
                                                  rel=0.01)  # fmt: skip
    if not _power_gap(url, step.detail["run_id"]):
        assert gpu["flagged"] is flagged and step.status == ("failed" if flagged else "passed")
        assert gpu["difference"] == pytest.approx(1 / ratio - 1, abs=0.01)
    else:  # the sampler stalled (a loaded machine): power misses that stretch, never adds
        assert gpu["power_joules"] < gpu["counter_joules"] / ratio
        assert gpu["flagged"] or not flagged


def _power_gap(url: str, run_id: str) -> bool:
    """Whether the run's stored GPU power has a gap that the window's power integral skips
    (longer than :func:`exporters.window.gap_threshold_ns`)."""
    from exporters.stores import open_store
    from exporters.window import gap_threshold_ns
    from scoring.runs import load_runs

    with open_store(url) as store:
        (run,) = [r for r in load_runs(store) if r.run_id == run_id]
        times = [p.time_ns for p in store.read("energy", 0, 2**62, tags={"domain": "gpu0"})]
    inside = [t for t in times if run.start_ns <= t <= run.end_ns]
    return any(b - a > gap_threshold_ns(times) for a, b in itertools.pairwise(inside))


@pytest.mark.timing
def test_the_check_runs_every_step_within_its_budget_and_writes_its_figures(
    tmp_path, machine, capsys
) -> None:
    machine.setitem(sys.modules, "pynvml", ClockedNvml(1.0))  # this process's NVML pass
    machine.setenv("KERAS_BACKEND", "tensorflow")  # main() sets it: restored afterwards
    out = tmp_path / "out"
    argv = ["--out", str(out), "--backend", "tensorflow", "--models", "mobilenetv3_small",
            "--limit", "8", "--pass-seconds", "1", "--nvml-model", "mobilenetv3_small",
            "--nvml-seconds", "1", "--tests", str(ROOT / "tests" / "test_nvml.py"),
            "--budget-s", "240"]  # fmt: skip
    assert gpu_check.main(argv) == 0
    doc = json.loads((out / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == ["gpu tests", "nvml check", "models"]
    assert steps["gpu tests"]["status"] in ("passed", "skipped")  # skipped: no GPU here
    assert steps["nvml check"]["status"] == "passed"
    assert steps["models"]["detail"]["models"] == {"mobilenetv3_small": "passed"}
    assert all(s["seconds"] <= s["budget_s"] for s in doc["steps"])
    assert doc["seconds"] <= 240
    assert sorted(r["batch_size"] for r in doc["table"]) == [1, 32]
    for r in doc["table"]:
        assert r["uwh_per_inference"] > 0 and r["wh_per_50k"] > 0, r["flags"]
    printed = capsys.readouterr().out
    assert "GPU W" in printed and "Wh/50k" in printed and "nvml gpu0: counter" in printed


def test_the_default_models_are_the_papers_eight_registry_models() -> None:
    from benchmark.registry import get_spec

    names = gpu_check.paper_models()
    assert len(set(names)) == 8 and [get_spec(n).name for n in names] == names
