"""The lab-machine stack: docker-compose.yml, Dockerfile, .env.example, the .env writer and the
InfluxDB init script, checked without a Docker engine.

``docker-compose config`` (Debian's docker-compose 1.29, or the ``docker compose`` plugin)
renders the stack with .env.example's values, and the tests read the result. Where neither is
installed those tests are skipped, unless ``TUBAI_REQUIRE_COMPOSE=1`` makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from exporters.sources.rapl import RaplSource

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MAKE_ENV = ROOT / "scripts" / "make-env.sh"
INIT_SCRIPT = ROOT / "influxdb" / "init" / "10-v1-dbrp.sh"
SECRETS = ("TUBAI_INFLUXDB_TOKEN", "TUBAI_INFLUXDB_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
VOLUMES = {"influxdb-data", "influxdb-config", "grafana-data", "tubai-spool"}
TUBAI_SERVICES = ("exporter", "exporter-gpu", "scoring")
_MISSING = "docker-compose not found: apt-get install docker-compose (Debian) to check the stack"


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would change the rendered stack."""
    keys = set(_env_file(ENV_EXAMPLE)) | {"COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}
    return {k: v for k, v in os.environ.items() if k not in keys and not k.startswith("TUBAI_")}


@pytest.fixture(scope="module")
def compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    if os.environ.get("TUBAI_REQUIRE_COMPOSE") == "1":
        pytest.fail(f"{_MISSING} (TUBAI_REQUIRE_COMPOSE=1 requires it)")
    pytest.skip(_MISSING)


def _config(compose: list[str], env_file: Path, *options: str) -> subprocess.CompletedProcess:
    cmd = [*compose, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT)]
    cmd += ["--env-file", str(env_file), *options, "config"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), timeout=60)


def _rendered(compose: list[str], env_file: Path, *options: str) -> dict:
    done = _config(compose, env_file, *options)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def cpu_stack(compose: list[str]) -> dict:
    return _rendered(compose, ENV_EXAMPLE, "--profile", "cpu")


@pytest.fixture(scope="module")
def gpu_stack(compose: list[str]) -> dict:
    return _rendered(compose, ENV_EXAMPLE, "--profile", "gpu")


# compose 1.29 prints ports and volumes as short strings, compose v2 as mappings: normalise.
def _published(service: dict) -> list[tuple[str, int]]:
    """(host address, host port) of every published port."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"])))
        else:
            parts = str(port).split("/")[0].split(":")
            out.append((parts[0] if len(parts) == 3 else "", int(parts[-2])))
    return out


def _mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """Mount target -> (source, read-only)."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
        else:
            source, target, *mode = str(volume).split(":")
            out[target] = (source, "ro" in "".join(mode).split(","))
    return out


def _gpu_reserved(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return any(
        d.get("driver") == "nvidia"
        and d.get("count") in ("all", -1)
        and "gpu" in str(d.get("capabilities"))
        for d in devices.get("devices", [])
    )


def _hardened(service: dict) -> None:
    assert service["cap_drop"] == ["ALL"]
    assert service["read_only"] is True
    assert "no-new-privileges:true" in service["security_opt"]
    assert "/tmp" in service["tmpfs"]
    assert service["restart"] == "unless-stopped"
    assert service["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_every_published_port_is_bound_to_loopback(cpu_stack: dict, gpu_stack: dict) -> None:
    ports = {}
    for stack in (cpu_stack, gpu_stack):
        for name, service in stack["services"].items():
            for host, port in _published(service):
                assert host == "127.0.0.1", f"{name} publishes {port} on {host or 'every address'}"
                ports[name] = port
    assert ports == {"influxdb": 8086, "grafana": 3000, "dcgm-exporter": 9400}


def test_profiles_pick_the_exporter_and_the_rest_always_runs(
    cpu_stack: dict, gpu_stack: dict
) -> None:
    for stack in (cpu_stack, gpu_stack):
        services = stack["services"]
        for name in ("influxdb", "grafana", "scoring"):
            assert not services[name].get("profiles"), f"{name} must run in every profile"
    assert cpu_stack["services"]["exporter"]["profiles"] == ["cpu"]
    gpu = gpu_stack["services"]
    assert gpu["exporter-gpu"]["profiles"] == ["gpu"]
    assert gpu["dcgm-exporter"]["profiles"] == ["gpu"]
    assert _gpu_reserved(gpu["exporter-gpu"]) and _gpu_reserved(gpu["dcgm-exporter"])
    assert not _gpu_reserved(cpu_stack["services"]["exporter"])


def test_the_exporter_sees_the_host_with_no_more_privilege_than_reading_takes(
    cpu_stack: dict, gpu_stack: dict
) -> None:
    for service in (cpu_stack["services"]["exporter"], gpu_stack["services"]["exporter-gpu"]):
        assert service["network_mode"] == "host" and service["pid"] == "host"
        assert "ports" not in service  # the host network: nothing to publish
        _hardened(service)
        assert service["user"] == "root"  # energy_uj is root-only (see docker-compose.yml)
        mounts = _mounts(service)
        assert mounts["/host/proc"] == ("/proc", True)
        assert mounts["/host/sys"] == ("/sys", True)
        assert mounts["/var/lib/tubai/spool"] == ("tubai-spool", False)
        command = " ".join(service["command"])
        assert command.startswith("python -m exporters run ")
        for option in (
            "--store influxdb://127.0.0.1:8086/tubai",
            "--sysfs-root /host/sys",
            "--procfs-root /host/proc",
            "--interval 0.1",
            "--metrics-port 9101",
        ):
            assert option in command
        env = service["environment"]
        assert env["TUBAI_SPOOL_DIR"].startswith("/var/lib/tubai/spool/")
        assert "http://127.0.0.1:9101/metrics" in " ".join(service["healthcheck"]["test"])
    gpu_env = gpu_stack["services"]["exporter-gpu"]["environment"]
    assert gpu_env["TUBAI_SOURCES__DCGM__ENABLED"] == "true"
    assert gpu_env["TUBAI_SOURCES__DCGM__URL"] == "http://127.0.0.1:9400/metrics"


def test_scoring_influxdb_and_grafana(cpu_stack: dict) -> None:
    services = cpu_stack["services"]
    scoring = services["scoring"]
    _hardened(scoring)
    assert scoring.get("user") in (None, "tubai", "10001")  # the image's unprivileged user
    assert "network_mode" not in scoring and "pid" not in scoring
    command = " ".join(scoring["command"])
    assert command == "python -m scoring serve --store influxdb://influxdb:8086/tubai"
    assert scoring["environment"]["TUBAI_SPOOL_DIR"] == "/var/lib/tubai/spool/scoring"
    assert _mounts(scoring)["/var/lib/tubai/spool"] == ("tubai-spool", False)

    influxdb = services["influxdb"]
    assert influxdb["image"].startswith("influxdb:2.")
    assert influxdb["environment"]["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert influxdb["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"] == "tubai"
    mounts = _mounts(influxdb)
    assert mounts["/var/lib/influxdb2"] == ("influxdb-data", False)
    assert mounts["/etc/influxdb2"] == ("influxdb-config", False)
    assert mounts["/docker-entrypoint-initdb.d"] == (str(ROOT / "influxdb" / "init"), True)

    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana-oss:11.")
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["TUBAI_INFLUXDB_BUCKET"] == "tubai"
    mounts = _mounts(grafana)
    provisioning = (str(ROOT / "grafana" / "provisioning"), True)
    assert mounts["/etc/grafana/provisioning"] == provisioning
    assert mounts["/var/lib/grafana/dashboards"] == (str(ROOT / "grafana" / "dashboards"), True)
    assert mounts["/var/lib/grafana"] == ("grafana-data", False)
    assert grafana["depends_on"]["influxdb"]["condition"] == "service_healthy"

    for name in ("influxdb", "grafana"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert VOLUMES <= set(cpu_stack["volumes"])
    for name in VOLUMES:
        assert not (cpu_stack["volumes"][name] or {}).get("external"), name


def test_secrets_come_from_the_env_file_only(compose: list[str], cpu_stack: dict, tmp_path):
    example = _env_file(ENV_EXAMPLE)
    text = COMPOSE_FILE.read_text()
    for key in SECRETS:
        assert example[key] not in text, f"{key}'s value is written into docker-compose.yml"
    services = cpu_stack["services"]
    token = example["TUBAI_INFLUXDB_TOKEN"]
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == token
    for name in ("grafana", "exporter", "scoring"):
        assert services[name]["environment"]["TUBAI_INFLUXDB_TOKEN"] == token, name
    password = services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_PASSWORD"]
    assert password == example["TUBAI_INFLUXDB_ADMIN_PASSWORD"]
    grafana_password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert grafana_password == example["GRAFANA_ADMIN_PASSWORD"]

    # Without the secrets compose refuses, and says how to get them.
    lacking = tmp_path / "lacking.env"
    lines = ENV_EXAMPLE.read_text().splitlines()
    lacking.write_text("\n".join(x for x in lines if x.split("=")[0] not in SECRETS) + "\n")
    done = _config(compose, lacking)
    assert done.returncode != 0
    assert "make up writes .env" in done.stdout + done.stderr


def test_the_env_example_documents_every_variable() -> None:
    example = _env_file(ENV_EXAMPLE)
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used - set(example) == set(), "used by docker-compose.yml, missing in .env.example"
    for key in ("TUBAI_STORE", "TUBAI_INFLUXDB_TOKEN", "GRAFANA_PORT"):  # read by the Makefile
        assert key in example
    assert example["COMPOSE_PROFILES"] in ("cpu", "gpu")
    assert example["TUBAI_BIND"] == "127.0.0.1"
    port, bucket = example["INFLUXDB_PORT"], example["TUBAI_INFLUXDB_BUCKET"]
    assert example["TUBAI_STORE"] == f"influxdb://127.0.0.1:{port}/{bucket}"
    for block in ENV_EXAMPLE.read_text().split("\n\n"):  # every setting comes with a comment
        lines = block.strip().splitlines()
        if any(not x.startswith("#") for x in lines):
            assert any(x.startswith("#") for x in lines), block
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def _make_env(out: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**_clean_env(), **env}
    return subprocess.run(
        ["sh", str(MAKE_ENV), str(out), str(ENV_EXAMPLE)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_make_env_writes_fresh_secrets_and_never_overwrites(tmp_path: Path) -> None:
    example = _env_file(ENV_EXAMPLE)
    written = []
    for run in ("a", "b"):
        out = tmp_path / run / ".env"
        out.parent.mkdir()
        done = _make_env(out)
        assert done.returncode == 0, done.stderr
        values = _env_file(out)
        assert list(values) == list(example)  # same keys, same order, comments kept
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        for key in SECRETS:
            assert re.fullmatch(r"[0-9a-f]{48,}", values[key]), key
            assert values[key] not in done.stdout + done.stderr, f"{key} was printed"
        assert len(values["TUBAI_INFLUXDB_TOKEN"]) == 64
        assert len({values[k] for k in SECRETS}) == len(SECRETS)
        assert values["COMPOSE_PROFILES"] in ("cpu", "gpu")
        others = {k: v for k, v in values.items() if k not in (*SECRETS, "COMPOSE_PROFILES")}
        assert others == {k: v for k, v in example.items() if k in others}
        written.append(values)
    for key in SECRETS:
        assert written[0][key] != written[1][key], f"{key} is the same twice"

    existing = tmp_path / "a" / ".env"
    before = existing.read_bytes()
    done = _make_env(existing, COMPOSE_PROFILES="gpu")
    assert done.returncode == 0 and "exists" in done.stdout
    assert existing.read_bytes() == before
    assert sorted(p.name for p in existing.parent.iterdir()) == [".env"]  # no temporary left

    chosen = tmp_path / "gpu.env"
    assert _make_env(chosen, COMPOSE_PROFILES="gpu").returncode == 0
    assert _env_file(chosen)["COMPOSE_PROFILES"] == "gpu"


def test_a_written_env_renders_the_stack(compose: list[str], tmp_path: Path) -> None:
    out = tmp_path / ".env"
    assert _make_env(out, COMPOSE_PROFILES="cpu").returncode == 0
    token = _env_file(out)["TUBAI_INFLUXDB_TOKEN"]
    stack = _rendered(compose, out, "--profile", "cpu")
    assert stack["services"]["exporter"]["environment"]["TUBAI_INFLUXDB_TOKEN"] == token


def test_the_image_installs_the_package_and_its_declared_dependencies_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    code = "\n".join(x for x in dockerfile.splitlines() if not x.lstrip().startswith("#"))
    steps = re.sub(r"\\\n", " ", code).splitlines()
    assert "FROM python:3.11-slim" in steps
    installs = [s for s in steps if "pip install" in s]
    assert len(installs) == 1 and re.search(r"pip install (--\S+ )*\.( |$)", installs[0])
    assert "requirements" not in dockerfile.lower() and not list(ROOT.glob("requirements*"))
    assert not re.search(r"\[(bench|test)\]|tensorflow|keras", code, re.I)
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.S | re.M)
    assert deps and "influxdb-client" in deps[1] and not re.search("tensorflow|keras", deps[1])

    copied = set()
    for step in steps:
        if step.startswith("COPY "):
            copied |= set(step.split()[1:-1])
    ignore = [
        x.strip()
        for x in (ROOT / ".dockerignore").read_text().splitlines()
        if x.strip() and not x.startswith("#")
    ]
    assert ignore[0] == "*"  # an allow-list: .env, .venv, data, .git, tests, report stay out
    allowed = {x[1:] for x in ignore if x.startswith("!")}
    assert copied == allowed == {"pyproject.toml", "README.md", "exporters", "benchmark", "scoring"}
    assert "**/__pycache__" in ignore[ignore.index("!scoring") :]


def test_the_influxdb_init_script_maps_the_v1_database(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(INIT_SCRIPT)]).returncode == 0
    assert INIT_SCRIPT.stat().st_mode & stat.S_IXUSR  # the image's run-parts skips others
    assert INIT_SCRIPT.name.endswith("sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "influx"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {calls}\n')
    fake.chmod(0o755)
    env = {**_clean_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    setup = {
        "DOCKER_INFLUXDB_INIT_ORG": "tubai",
        "DOCKER_INFLUXDB_INIT_BUCKET": "tubai",
        "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0a1b2c3d4e5f6789",
    }
    done = subprocess.run(["bash", str(INIT_SCRIPT)], env={**env, **setup}, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().split() == [
        *("v1", "dbrp", "create", "--org", "tubai", "--db", "tubai", "--rp", "autogen"),
        *("--bucket-id", "0a1b2c3d4e5f6789", "--default"),
    ]
    calls.unlink()
    del setup["DOCKER_INFLUXDB_INIT_BUCKET_ID"]
    done = subprocess.run(["bash", str(INIT_SCRIPT)], env={**env, **setup}, capture_output=True)
    assert done.returncode != 0 and b"DOCKER_INFLUXDB_INIT_BUCKET_ID" in done.stderr
    assert not calls.exists()


def _host_sysfs(root: Path) -> None:
    """A host's powercap tree as Linux lays it out: /sys/class/powercap holds relative symlinks
    into /sys/devices/virtual/powercap."""
    devices = root / "devices" / "virtual" / "powercap" / "intel-rapl"
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0/intel-rapl:0:0", "core")):
        (devices / zone).mkdir(parents=True)
        (devices / zone / "name").write_text(f"{name}\n")
        (devices / zone / "energy_uj").write_text("123456789\n")
        (devices / zone / "max_energy_range_uj").write_text("262143328850\n")
    links = root / "class" / "powercap"
    links.mkdir(parents=True)
    target = "../../devices/virtual/powercap/intel-rapl"
    (links / "intel-rapl").symlink_to(target)
    (links / "intel-rapl:0").symlink_to(f"{target}/intel-rapl:0")
    (links / "intel-rapl:0:0").symlink_to(f"{target}/intel-rapl:0/intel-rapl:0:0")


@pytest.mark.parametrize("mounted", ["all", "class only"])
def test_rapl_reads_the_host_through_the_exporters_mounts(tmp_path: Path, mounted: str) -> None:
    host, container = tmp_path / "host", tmp_path / "container"
    _host_sysfs(host / "sys")
    exporter = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["exporter"]
    binds = [str(v).split(":") for v in exporter["volumes"] if str(v).startswith("/sys")]
    if mounted == "class only":  # what mounting the class folder alone would give: dangling links
        binds = [["/sys/class/powercap", "/host/sys/class/powercap", "ro"]]
    for source, target, mode in binds:  # a bind mount shows the links as they are
        assert mode == "ro"
        shutil.copytree(host / source.lstrip("/"), container / target.lstrip("/"), symlinks=True)
    sysfs_root = container / "host" / "sys"
    assert exporter["command"][exporter["command"].index("--sysfs-root") + 1] == "/host/sys"
    rapl = RaplSource(sysfs_root)
    ok, why = rapl.available()
    if mounted == "all":
        assert ok, why
        assert rapl.domains() == [("package-0", None), ("core-0", "package-0")]
        assert [r.counters["joules_total"].raw for r in rapl.read()] == [123456789] * 2
    else:  # the class links alone dangle: why the whole /sys is mounted
        assert not ok
