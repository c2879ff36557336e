"""DcgmSource against recorded dcgm-exporter output served by a real local HTTP server.

``h100x2.txt``: dcgm-exporter 3.x/4.x with the default counters plus DCGM_FI_DEV_FB_RESERVED and
DCGM_FI_DEV_POWER_MGMT_LIMIT enabled. ``p100x2_no_energy.txt``: an older exporter (labels with
spaces, pod labels) on Pascal GPUs, which have no total-energy counter; its memory temperature
is DCGM's blank sentinel.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporters.config import load_config
from exporters.errors import ConfigError, SourceError
from exporters.schema import Counter
from exporters.sources import all_sources
from exporters.sources.base import Source
from exporters.sources.dcgm import DcgmSource

FIXTURES = Path(__file__).parent / "fixtures" / "dcgm"
MIB = 2**20


class Exporter(ThreadingHTTPServer):
    """Answers GET /metrics with ``status`` and ``body``, like dcgm-exporter."""

    status = 200
    body = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/metrics"


class Handler(BaseHTTPRequestHandler):
    server: Exporter

    def do_GET(self) -> None:
        data = self.server.body.encode()
        self.send_response(self.server.status if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    server = Exporter(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def serve(exporter: Exporter, fixture: str, status: int = 200) -> DcgmSource:
    exporter.body = (FIXTURES / fixture).read_text()
    exporter.status = status
    return DcgmSource(exporter.url, timeout_s=1.0)


def by_kind(readings: list) -> tuple[dict, dict]:
    energy = {r.tags["domain"]: r for r in readings if r.measurement == "energy"}
    gpu = {r.tags["gpu"]: r for r in readings if r.measurement == "gpu"}
    return energy, gpu


def test_h100_mapping_and_units(exporter: Exporter) -> None:
    source = serve(exporter, "h100x2.txt")
    assert isinstance(source, Source)
    energy, gpu = by_kind(source.read())
    assert sorted(energy) == ["gpu0", "gpu1"] and sorted(gpu) == ["0", "1"]
    assert dict(energy["gpu0"].tags) == {"source": "dcgm", "domain": "gpu0", "estimated": "false"}
    assert energy["gpu0"].fields == {"watts": 312.456}
    ceiling = 2 * 700_000  # twice its power limit (700 W), in mJ/s
    assert energy["gpu0"].counters == {
        "joules_total": Counter(raw=4823511892, scale=1e-3, max_rate=ceiling)
    }
    assert energy["gpu1"].counters["joules_total"].raw * 1e-3 == pytest.approx(3911202.557)
    assert dict(gpu["0"].tags) == {
        "gpu": "0",
        "uuid": "GPU-4f1c0a5e-3b8d-2c7e-9a61-5d0e7b3f2a18",
        "name": "NVIDIA H100 80GB HBM3",
    }
    assert gpu["0"].fields == {
        "util_pct": 87.0,
        "mem_util_pct": 41.0,
        "temp_c": 52.0,
        "sm_clock_mhz": 1980.0,
        "mem_clock_mhz": 2619.0,
        "power_limit_w": 700.0,
        "mem_used_bytes": 19871 * MIB,
        "mem_total_bytes": 81559 * MIB,  # used + free + reserved
    }
    assert gpu["1"].fields["util_pct"] == 0.0
    ok, reason = source.available()
    assert ok and reason.endswith(
        "2 GPUs: gpu0 NVIDIA H100 80GB HBM3 (energy counter), "
        "gpu1 NVIDIA H100 80GB HBM3 (energy counter)"
    )


def test_without_energy_counter_and_blank_values(exporter: Exporter) -> None:
    source = serve(exporter, "p100x2_no_energy.txt")
    energy, gpu = by_kind(source.read())
    assert energy["gpu0"].fields == {"watts": 187.914} and energy["gpu0"].counters == {}
    assert gpu["1"].tags["name"] == "Tesla P100-PCIE-16GB"
    assert gpu["0"].fields["mem_total_bytes"] == 16280 * MIB  # used + free, no reserved
    assert "power_limit_w" not in gpu["0"].fields
    assert all(v < 2**40 for r in gpu.values() for v in r.fields.values())  # no blank sentinel
    assert "gpu0 Tesla P100-PCIE-16GB (power only)" in source.available()[1]


def test_ceiling_from_the_highest_power_limit_scraped_else_max_watts(exporter: Exporter) -> None:
    labels = '{gpu="0",UUID="GPU-a",modelName="NVIDIA B200"}'
    energy = f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{labels} 123456\n"
    limits = {
        "": None,
        f"DCGM_FI_DEV_POWER_MGMT_LIMIT{labels} 600\n": 1200.0,
        f"DCGM_FI_DEV_POWER_MGMT_LIMIT{labels} 600\nDCGM_FI_DEV_POWER_MGMT_LIMIT_MAX{labels} "
        "1000\n": 2000.0,
    }
    for text, watts in limits.items():
        exporter.body = energy + text
        counter = by_kind(DcgmSource(exporter.url, max_watts=1500).read())[0]["gpu0"]
        assert counter.counters["joules_total"].max_rate * 1e-3 == (watts or 1500.0)
    cfg = load_config(env={"TUBAI_SOURCES__DCGM__MAX_WATTS": "900"})
    assert all_sources(cfg)["dcgm"].max_watts == 900
    with pytest.raises(ConfigError, match=r"'sources\.dcgm\.max_watts' is -1: give a number"):
        load_config(env={"TUBAI_SOURCES__DCGM__MAX_WATTS": "-1"})


def test_url_without_path_gets_metrics(exporter: Exporter) -> None:
    exporter.body = (FIXTURES / "h100x2.txt").read_text()
    source = DcgmSource(exporter.url.removesuffix("/metrics"), timeout_s=1.0)
    assert source.url == exporter.url
    assert len(source.read()) == 4


def test_unreachable_is_unavailable_with_the_fix() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    ok, reason = DcgmSource(f"http://127.0.0.1:{port}/metrics", timeout_s=0.5).available()
    assert not ok
    assert f"cannot reach dcgm-exporter at http://127.0.0.1:{port}/metrics" in reason
    assert "docker compose --profile gpu up" in reason and "sources.dcgm.url" in reason


def test_http_500_is_a_source_error(exporter: Exporter) -> None:
    source = serve(exporter, "h100x2.txt", status=500)
    with pytest.raises(SourceError, match="HTTP 500"):
        source.read()


@pytest.mark.parametrize(
    "body", ["<html><body>Grafana</body></html>\n", "DCGM_FI_DEV_GPU_UTIL{gpu=0} ?!\n"]
)
def test_garbage_is_a_source_error(exporter: Exporter, body: str) -> None:
    exporter.body = body
    with pytest.raises(SourceError, match="did not answer Prometheus text"):
        DcgmSource(exporter.url).read()


def test_no_dcgm_metrics_says_so(exporter: Exporter) -> None:
    exporter.body = "# TYPE up gauge\nup 1\nnode_load1 0.5\n"
    ok, reason = DcgmSource(exporter.url).available()
    assert not ok and "no DCGM_FI_* metrics" in reason


def test_mig_instances_are_skipped(exporter: Exporter) -> None:
    exporter.body = (
        'DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-a",modelName="NVIDIA A100-SXM4-40GB"} 90.5\n'
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",GPU_I_ID="1",GPU_I_PROFILE="1g.5gb"} 10\n'
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a",GPU_I_ID=""} 40\n'
    )
    energy, gpu = by_kind(DcgmSource(exporter.url).read())
    assert energy["gpu0"].fields == {"watts": 90.5}
    assert gpu["0"].fields == {"temp_c": 40.0}


def test_clock_event_reasons_under_either_name(exporter: Exporter) -> None:
    """DCGM 3.3+ names the bitmask ..._CLOCKS_EVENT_REASONS, older ones ..._CLOCK_THROTTLE_..."""
    exporter.body = (
        "# TYPE DCGM_FI_DEV_CLOCKS_EVENT_REASONS gauge\n"
        'DCGM_FI_DEV_CLOCKS_EVENT_REASONS{gpu="0",UUID="GPU-a",modelName="NVIDIA H100"} 4\n'
        "# TYPE DCGM_FI_DEV_CLOCK_THROTTLE_REASONS gauge\n"
        'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu="1",UUID="GPU-b",modelName="NVIDIA A100"} 1\n'
        'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu="2",UUID="GPU-c",modelName="NVIDIA A100"} 96\n'
        'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu="3",UUID="GPU-d",modelName="NVIDIA A100"} '
        "9223372036854775794\n"  # DCGM_INT64_BLANK: no value
        'DCGM_FI_DEV_GPU_TEMP{gpu="3",UUID="GPU-d",modelName="NVIDIA A100"} 40\n'
    )
    _, gpu = by_kind(DcgmSource(exporter.url).read())
    assert gpu["0"].fields == {"clock_event_reasons": 4.0, "throttled": 1.0,
                               "throttle_power": 1.0, "throttle_thermal": 0.0}  # fmt: skip
    assert gpu["1"].fields == {"clock_event_reasons": 1.0, "throttled": 0.0,  # idle
                               "throttle_power": 0.0, "throttle_thermal": 0.0}  # fmt: skip
    assert gpu["2"].fields["throttled"] == gpu["2"].fields["throttle_thermal"] == 1.0  # SW+HW
    assert gpu["3"].fields == {"temp_c": 40.0}
