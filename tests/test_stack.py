"""The lab-machine stack: docker-compose.yml, Dockerfile, requirements.lock, .env.example, the
.env writer, the Makefile's use of .env and the InfluxDB init scripts, checked without a Docker
engine.

``docker-compose config`` (Debian's docker-compose 1.29, or the ``docker compose`` plugin)
renders the stack with .env.example's values, and the tests read the result. Where neither is
installed those tests are skipped, unless ``TUBAI_REQUIRE_COMPOSE=1`` makes that a failure.
The init scripts run for real, against a fake ``influx`` CLI that records what it is asked.
A lab of machines: the TLS overlay (docker-compose.tls.yml), the joining machine's file
(docker-compose.join.yml), scripts/make-certs.sh (checked with openssl), scripts/join.sh, and
scripts/lab-token.sh (``make token``/``make revoke``, against a fake ``influx`` CLI).
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from exporters.sources import dcgm
from exporters.sources.rapl import RaplSource

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MAKE_ENV = ROOT / "scripts" / "make-env.sh"
INIT_SCRIPT = ROOT / "influxdb" / "init" / "10-v1-dbrp.sh"
CREDENTIALS_SCRIPT = ROOT / "influxdb" / "init" / "20-tubai-credentials.sh"
DATASOURCE = ROOT / "grafana" / "provisioning" / "datasources" / "tubai.yml"
DCGM_COUNTERS = ROOT / "dcgm-exporter" / "counters.csv"
LOCK = ROOT / "requirements.lock"
ADMIN_TOKEN = "TUBAI_INFLUXDB_ADMIN_TOKEN"
# The InfluxDB credential of each role: what it may do on the bucket, and who holds it.
ROLES = {
    "EXPORTER": {"write"},
    "BENCH": {"read", "write"},
    "SCORING": {"read", "write"},
    "GRAFANA": {"read"},
}
HOLDER = {"exporter": "EXPORTER", "exporter-gpu": "EXPORTER", "scoring": "SCORING"}
HOLDER["grafana"] = "GRAFANA"
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


# Every secret: the keys whose example value make-env.sh replaces with a fresh random one.
SECRETS = tuple(k for k, v in _env_file(ENV_EXAMPLE).items() if v.startswith("replace-me"))


def _password(role: str) -> str:
    return f"TUBAI_INFLUXDB_{role}_PASSWORD"


def _user(role: str) -> str:
    return f"TUBAI_INFLUXDB_{role}_USER"


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would change the rendered stack."""
    keys = set(_env_file(ENV_EXAMPLE)) | {"COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "MAKEFLAGS"}
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


def test_every_container_is_hardened(cpu_stack: dict, gpu_stack: dict) -> None:
    """No capability, a read-only root filesystem and no-new-privileges, for every service."""
    for stack in (cpu_stack, gpu_stack):
        for name, service in stack["services"].items():
            assert service["cap_drop"] == ["ALL"], name
            assert "cap_add" not in service, f"{name} adds a capability back"
            assert not service.get("privileged"), name
            assert service["read_only"] is True, name
            assert "/tmp" in service["tmpfs"], name
            assert "no-new-privileges:true" in service["security_opt"], name
            assert service["restart"] == "unless-stopped", name
    services = gpu_stack["services"]
    # InfluxDB runs as its image's influxdb user from the start: its entrypoint then needs no
    # capability (no chown of the volumes, no gosu step-down from root).
    assert services["influxdb"]["user"] == "1000:1000"
    assert services["grafana"]["environment"]["GF_LOG_MODE"] == "console"  # no log file
    assert "/var/log" in services["dcgm-exporter"]["tmpfs"]


def _pinned(reference: str) -> bool:
    """An exact version tag (x.y.z somewhere in it), with or without a sha256 digest."""
    m = re.fullmatch(r"([a-z0-9./_-]+):([\w.-]+)(@sha256:[0-9a-f]{64})?", reference)
    return bool(m) and m[2] != "latest" and re.search(r"\d+\.\d+\.\d+", m[2]) is not None


def test_every_image_is_pinned_to_an_exact_version(cpu_stack: dict, gpu_stack: dict) -> None:
    for stack in (cpu_stack, gpu_stack):
        for name, service in stack["services"].items():
            if "build" in service:  # built here, from the Dockerfile's pinned base image
                assert service["image"] == "tubai:local", name
            else:
                assert _pinned(service["image"]), f"{name}: {service['image']} is not pinned"
    influxdb = gpu_stack["services"]["influxdb"]["image"]
    assert influxdb.startswith("influxdb:2.7.") and _pinned(influxdb)
    (base,) = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert _pinned(base) and base.startswith("python:3.11.")
    for bad in (
        "influxdb:2.7",
        "grafana/grafana-oss:latest",
        "python:3.11-slim",
        "x:1.2.3@sha1:ab",
    ):
        assert not _pinned(bad), bad
    assert _pinned("nvcr.io/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-ubuntu22.04")


def _secret_keys_in(service: dict, values: dict[str, str]) -> set[str]:
    """The secrets (by .env key) whose value appears anywhere in a rendered service."""
    text = yaml.safe_dump(service)
    return {key for key in SECRETS if values[key] in text}


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_each_service_gets_only_its_own_credential(
    compose: list[str], tmp_path: Path, profile: str
) -> None:
    """The admin token goes to InfluxDB alone; every other service gets exactly its role's
    username and password, as TUBAI_INFLUXDB_USERNAME/PASSWORD, and no other secret."""
    env_file = tmp_path / ".env"
    assert _make_env(env_file, COMPOSE_PROFILES=profile).returncode == 0
    values = _env_file(env_file)
    services = _rendered(compose, env_file, "--profile", profile)["services"]
    roles = {_password(role) for role in ROLES}
    expected = {
        "influxdb": {ADMIN_TOKEN, "TUBAI_INFLUXDB_ADMIN_PASSWORD", *roles},
        "grafana": {"GRAFANA_ADMIN_PASSWORD", _password("GRAFANA")},
        "exporter": {_password("EXPORTER")},
        "exporter-gpu": {_password("EXPORTER")},
        "scoring": {_password("SCORING")},
        "dcgm-exporter": set(),
    }
    for name, service in services.items():
        assert _secret_keys_in(service, values) == expected[name], name
        env = service.get("environment", {})
        assert "TUBAI_INFLUXDB_TOKEN" not in env, f"{name} gets a token"
        if name in HOLDER:
            role = HOLDER[name]
            credential = {k: v for k, v in env.items() if k.startswith("TUBAI_INFLUXDB_")}
            credential.pop("TUBAI_INFLUXDB_BUCKET", None)
            assert credential == {
                "TUBAI_INFLUXDB_USERNAME": values[_user(role)],
                "TUBAI_INFLUXDB_PASSWORD": values[_password(role)],
            }, name
    # InfluxDB's init script gets every role's username and password, and the admin token.
    env = services["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == values[ADMIN_TOKEN]
    for role in ROLES:
        for key in (_user(role), _password(role)):
            assert env[key] == values[key], key
    # Grafana's datasource reads exactly the variables Grafana is given.
    datasource = yaml.safe_dump(yaml.safe_load(DATASOURCE.read_text()))  # without comments
    used = set(re.findall(r"\$\{(\w+)\}", datasource))
    assert used == {"TUBAI_INFLUXDB_USERNAME", "TUBAI_INFLUXDB_PASSWORD", "TUBAI_INFLUXDB_BUCKET"}
    assert used <= set(services["grafana"]["environment"])


def test_secrets_come_from_the_env_file_only(compose: list[str], cpu_stack: dict, tmp_path):
    example = _env_file(ENV_EXAMPLE)
    assert set(SECRETS) == {
        ADMIN_TOKEN,
        "TUBAI_INFLUXDB_ADMIN_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        *(_password(role) for role in ROLES),
    }
    text = COMPOSE_FILE.read_text()
    for key in SECRETS:
        assert example[key] not in text, f"{key}'s value is written into docker-compose.yml"
    services = cpu_stack["services"]
    influxdb = services["influxdb"]["environment"]
    assert influxdb["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == example[ADMIN_TOKEN]
    assert influxdb["DOCKER_INFLUXDB_INIT_PASSWORD"] == example["TUBAI_INFLUXDB_ADMIN_PASSWORD"]
    grafana_password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert grafana_password == example["GRAFANA_ADMIN_PASSWORD"]

    # Without any one of the secrets or usernames compose refuses, and says how to get it.
    lines = ENV_EXAMPLE.read_text().splitlines()
    for key in (*SECRETS, *(_user(role) for role in ROLES)):
        lacking = tmp_path / f"lacking-{key}.env"
        lacking.write_text("\n".join(x for x in lines if x.split("=")[0] != key) + "\n")
        done = _config(compose, lacking)
        assert done.returncode != 0, f"renders without {key}"
        assert "make up writes .env" in done.stdout + done.stderr, key


def test_the_env_example_documents_every_variable() -> None:
    example = _env_file(ENV_EXAMPLE)
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used - set(example) == set(), "used by docker-compose.yml, missing in .env.example"
    makefile = (ROOT / "Makefile").read_text()
    read_by_make = set(re.findall(r"dotenv,([A-Z_][A-Z0-9_]*)", makefile))
    assert read_by_make == {
        "TUBAI_STORE",
        *(f(r) for r in ("BENCH", "SCORING") for f in (_user, _password)),
    }
    for key in (*read_by_make, ADMIN_TOKEN, "GRAFANA_PORT"):  # read by the Makefile
        assert key in example, key
    assert "TUBAI_INFLUXDB_TOKEN" not in example  # the one all-access token is gone
    for role in ROLES:
        assert example[_user(role)] == f"tubai-{role.lower()}"
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
            digits = 64 if key.endswith("_TOKEN") else 48
            assert re.fullmatch(rf"[0-9a-f]{{{digits}}}", values[key]), key
            assert values[key] not in done.stdout + done.stderr, f"{key} was printed"
        assert len({values[k] for k in SECRETS}) == len(SECRETS)  # one secret per key
        assert values["COMPOSE_PROFILES"] in ("cpu", "gpu")
        others = {k: v for k, v in values.items() if k not in (*SECRETS, "COMPOSE_PROFILES")}
        assert others == {k: v for k, v in example.items() if k in others}
        assert not any(v.startswith("replace-me") for v in values.values())
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
    values = _env_file(out)
    stack = _rendered(compose, out, "--profile", "cpu")
    env = stack["services"]["exporter"]["environment"]
    assert env["TUBAI_INFLUXDB_PASSWORD"] == values[_password("EXPORTER")]


def _make(target: str, cwd: Path, **env: str) -> dict[str, str]:
    """The TUBAI_* environment `make TARGET` gives its command, run where .env is ``cwd``'s."""
    (cwd / "pyproject.toml").touch()
    (cwd / "stamp").touch()  # newer: setup has nothing to do
    show = cwd / "show.sh"
    show.write_text('#!/bin/sh\nenv | grep "^TUBAI_" | sort\n')
    make = ["make", "-s", "-f", str(ROOT / "Makefile"), target]
    done = subprocess.run(
        [*make, "STAMP=stamp", f"PY=sh {show}", "COMPOSE=true"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**_clean_env(), **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_gives_host_side_commands_their_own_credential(tmp_path: Path) -> None:
    assert _make_env(tmp_path / ".env", COMPOSE_PROFILES="cpu").returncode == 0
    values = _env_file(tmp_path / ".env")
    store = {"TUBAI_STORE": values["TUBAI_STORE"]}
    for target, role in (("bench", "BENCH"), ("score", "SCORING"), ("report", "SCORING")):
        assert _make(target, tmp_path) == {
            **store,
            "TUBAI_INFLUXDB_USERNAME": values[_user(role)],
            "TUBAI_INFLUXDB_PASSWORD": values[_password(role)],
        }, target
    # The environment wins: a token or a username of one's own is used as it is.
    mine = {"TUBAI_INFLUXDB_TOKEN": "mine"}
    assert _make("energy", tmp_path, **mine) == {**store, **mine}
    mine = {"TUBAI_INFLUXDB_USERNAME": "me", "TUBAI_INFLUXDB_PASSWORD": "pw"}
    assert _make("bench", tmp_path, **mine) == {**store, **mine}
    assert _make("bench", tmp_path, TUBAI_STORE="sqlite:///x.db")["TUBAI_STORE"] == "sqlite:///x.db"
    # Without .env, nothing of the stack's.
    (tmp_path / ".env").unlink()
    assert _make("bench", tmp_path) == {}


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_up_refuses_an_env_from_before_the_per_role_credentials(tmp_path: Path) -> None:
    def up() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "-s", "-f", str(ROOT / "Makefile"), "up", "COMPOSE=echo compose"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_clean_env(),
            timeout=60,
        )

    (tmp_path / ".env").write_text("TUBAI_INFLUXDB_TOKEN=0123abcd\nGRAFANA_PORT=3000\n")
    done = up()
    assert done.returncode != 0 and "compose" not in done.stdout
    assert "Upgrading an older .env" in done.stderr
    assert "Upgrading an older `.env`" in (ROOT / "README.md").read_text()
    (tmp_path / ".env").unlink()
    assert _make_env(tmp_path / ".env", COMPOSE_PROFILES="cpu").returncode == 0
    done = up()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("compose up -d --build\n")


def test_the_image_installs_the_hashed_lock_then_the_package_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    code = "\n".join(x for x in dockerfile.splitlines() if not x.lstrip().startswith("#"))
    steps = re.sub(r"\\\n", " ", code).splitlines()
    installs = [s for s in steps if "pip install" in s]
    assert len(installs) == 2
    deps, package = (set(s.split()) for s in installs)
    assert {"--require-hashes", "--only-binary=:all:", "-r", "requirements.lock"} <= deps
    assert {"--no-deps", "--no-build-isolation", "."} <= package
    assert steps.index("COPY requirements.lock ./") < steps.index(
        "COPY pyproject.toml README.md ./"
    )
    assert not re.search(r"\[(bench|test)\]|tensorflow|keras", code, re.I)

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
    package_files = {"pyproject.toml", "README.md", "exporters", "benchmark", "scoring"}
    assert copied == allowed == {"requirements.lock", *package_files}
    assert "**/__pycache__" in ignore[ignore.index("!scoring") :]


def _lock() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: canonical name -> (version, hashes); every entry must be name==version
    followed by its hashes."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pin, *options = line.split()
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", pin)
        assert m, f"not pinned with ==: {line}"
        hashes = [o.removeprefix("--hash=sha256:") for o in options]
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), line
        name = canonicalize_name(m[1])
        assert name not in out, f"{name} twice"
        out[name] = (m[2], hashes)
    return out


def _toml_list(text: str, key: str) -> list[str]:
    """The strings of pyproject's top-level-in-its-table list ``key = [...]`` (no tomllib on
    Python 3.10)."""
    m = re.search(rf"^{key} = \[(.*?)\]", text, re.S | re.M)
    assert m, key
    return re.findall(r'"([^"]+)"', m[1])


def test_the_lock_pins_and_hashes_every_runtime_dependency() -> None:
    lines = LOCK.read_text().splitlines()
    header = "\n".join(lines[: next(i for i, x in enumerate(lines) if not x.startswith("#"))])
    assert "autogenerated by pip-compile with Python 3.11" in header  # the image's Python
    assert "--generate-hashes" in header and "pyproject.toml" in header
    lock = _lock()
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = [Requirement(r) for r in _toml_list(pyproject, "dependencies")]
    build = [Requirement(r) for r in _toml_list(pyproject, "requires")]
    assert declared and build
    for requirement in (*declared, *build):  # the runtime ones and what builds the package
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement} is not in requirements.lock"
        assert requirement.specifier.contains(lock[name][0]), f"{requirement}: {lock[name][0]}"
    assert not {"tensorflow", "keras", "scikit-learn", "pytest"} & set(lock)  # extras stay out
    # Closed under dependencies: what each locked release requires is locked too, checked
    # where the test environment has that very release installed (its metadata says; this
    # CPython 3.11 on Linux evaluates the markers as the image's does).
    for name, (version, _) in lock.items():
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            assert canonicalize_name(requirement.name) in lock, f"{name} needs {requirement}"
    # ...and every entry is there for a reason pip-compile wrote down: tubai, or another entry.
    for entry in re.split(r"\n(?=\S)", LOCK.read_text()):
        if entry.startswith("#") or not entry.strip():  # the header, and section notes
            continue
        parents = []  # "# via x (why)", or "# via" and then "#   x" a line
        for line in entry.splitlines()[1:]:
            words = line.strip().split() if line.strip().startswith("#") else []
            words = [w for w in words[1:] if w != "via"][:1]  # after the "#"
            parents += words
        assert parents, entry.split()[0]
        for parent in parents:
            assert parent == "tubai" or canonicalize_name(parent) in lock, (entry, parent)


def test_dcgm_exporter_watches_only_what_tubai_reads_and_no_profiling_field(
    gpu_stack: dict,
) -> None:
    """Profiling (DCGM_FI_PROF_*) fields need CAP_SYS_ADMIN, and one in the list makes DCGM
    refuse them all; the stack's own counters file has none, so no capability is needed."""
    service = gpu_stack["services"]["dcgm-exporter"]
    env = service["environment"]
    assert env["NO_SETCAP"] == "1"
    assert _mounts(service)[env["DCGM_EXPORTER_COLLECTORS"]] == (str(DCGM_COUNTERS), True)
    lines = [x for x in DCGM_COUNTERS.read_text().splitlines() if x and not x.startswith("#")]
    rows = [[cell.strip() for cell in row] for row in csv.reader(lines)]
    assert all(len(row) == 3 for row in rows)  # field, Prometheus type, help
    types = {field: kind for field, kind, _ in rows}
    assert len(types) == len(rows)
    read = {dcgm.POWER, dcgm.ENERGY_MJ, dcgm.FB_USED, dcgm.FB_FREE, dcgm.FB_RESERVED}
    read |= {dcgm.FB_TOTAL, *dcgm.GPU_FIELDS, dcgm.CLOCK_EVENTS[0]}  # DCGM >= 3.3's name
    assert set(types) == read
    assert all(field.startswith("DCGM_FI_DEV_") for field in types)
    assert {f for f, kind in types.items() if kind == "counter"} == {dcgm.ENERGY_MJ}
    assert set(types.values()) == {"gauge", "counter"}


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


# A stand-in for the influx CLI: it records each call (one JSON list of arguments a line) and
# answers `bucket list` with one bucket and `v1 auth list` with the users FAKE_EXISTING names.
FAKE_INFLUX = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_INFLUX_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["bucket", "list"]:
    print("feedfacecafe0001\\ttubai\\t\\tinfinite\\t168h0m0s\\t0123456789abcdef\\timplicit")
elif args[:3] == ["v1", "auth", "list"]:
    user = args[args.index("--username") + 1]
    if user in os.environ.get("FAKE_EXISTING", "").split():
        print("0a0a0a0a0a0a0a0a\\t\\t" + user + "\\tadmin\\t0b0b0b0b0b0b0b0b\\t[read:...]")
"""


def _run_credentials_script(tmp_path: Path, **env: str) -> tuple[int, str, list[list[str]]]:
    """Run 20-tubai-credentials.sh as the image's first start would, against FAKE_INFLUX."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "influx"
    fake.write_text(FAKE_INFLUX.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "influx.log"
    log.unlink(missing_ok=True)
    environ = {**_clean_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    environ["FAKE_INFLUX_LOG"] = str(log)
    done = subprocess.run(
        ["bash", str(CREDENTIALS_SCRIPT)],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls


def _grants(calls: list[list[str]]) -> dict[str, dict]:
    """username -> what each `influx v1 auth create` call grants it, and with what."""
    out = {}
    for call in calls:
        if call[:3] != ["v1", "auth", "create"]:
            continue
        options: dict[str, list[str]] = {}
        for flag, value in zip(call[3::2], call[4::2]):
            options.setdefault(flag, []).append(value)
        assert len(call[3:]) == 2 * sum(map(len, options.values())), call  # flag-value pairs
        (user,) = options.pop("--username")
        out[user] = {
            "org": options.pop("--org"),
            "password": options.pop("--password"),
            "read": options.pop("--read-bucket", []),
            "write": options.pop("--write-bucket", []),
        }
        options.pop("--description")
        assert not options, f"{user}: unexpected {options}"  # no --all-access, no other right
    return out


def test_the_credentials_script_grants_each_role_exactly_its_rights(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(CREDENTIALS_SCRIPT)]).returncode == 0
    assert CREDENTIALS_SCRIPT.stat().st_mode & stat.S_IXUSR
    init = sorted(p.name for p in CREDENTIALS_SCRIPT.parent.iterdir())
    assert init == [INIT_SCRIPT.name, CREDENTIALS_SCRIPT.name]  # run-parts: dbrp first
    assert _make_env(tmp_path / ".env", COMPOSE_PROFILES="cpu").returncode == 0
    values = _env_file(tmp_path / ".env")
    setup = {
        "DOCKER_INFLUXDB_INIT_ORG": "tubai",
        "DOCKER_INFLUXDB_INIT_BUCKET": "tubai",
        "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0a1b2c3d4e5f6789",
    }
    setup |= {k: values[k] for role in ROLES for k in (_user(role), _password(role))}
    rc, output, calls = _run_credentials_script(tmp_path, **setup)
    assert rc == 0, output
    bucket = setup["DOCKER_INFLUXDB_INIT_BUCKET_ID"]
    expected = {
        values[_user(role)]: {
            "org": ["tubai"],
            "password": [values[_password(role)]],
            "read": [bucket] if "read" in rights else [],
            "write": [bucket] if "write" in rights else [],
        }
        for role, rights in ROLES.items()
    }
    assert _grants(calls) == expected
    assert {tuple(c[:3]) for c in calls} == {("v1", "auth", "list"), ("v1", "auth", "create")}
    for role in ROLES:
        assert values[_password(role)] not in output, f"{role}'s password was printed"
        assert values[_user(role)] in output

    # By hand on an older database: the bucket is looked up, and existing users are kept.
    del setup["DOCKER_INFLUXDB_INIT_BUCKET_ID"]
    existing = values[_user("GRAFANA")]
    rc, output, calls = _run_credentials_script(tmp_path, **setup, FAKE_EXISTING=existing)
    assert rc == 0, output
    assert calls[0][:2] == ["bucket", "list"] and "--name" in calls[0]
    grants = _grants(calls)
    assert set(grants) == {values[_user(r)] for r in ROLES} - {existing}
    assert grants[values[_user("EXPORTER")]]["write"] == ["feedfacecafe0001"]
    assert f"{existing} exists" in output

    # Any credential missing: nothing is created at all.
    for key in (_user("SCORING"), _password("BENCH")):
        rc, output, calls = _run_credentials_script(tmp_path, **{**setup, key: ""})
        assert rc != 0 and key in output and calls == [], key


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


# -- TLS on the central machine, and machines that join it (README, "A lab of machines") -------

TLS_FILE = ROOT / "docker-compose.tls.yml"
JOIN_FILE = ROOT / "docker-compose.join.yml"
MAKE_CERTS = ROOT / "scripts" / "make-certs.sh"
JOIN = ROOT / "scripts" / "join.sh"
LAB_TOKEN = ROOT / "scripts" / "lab-token.sh"
TLS_COMPOSE = "docker-compose.yml:docker-compose.tls.yml"


@pytest.fixture(scope="module")
def tls_stacks(compose: list[str]) -> dict[str, dict]:
    """The stack with docker-compose.tls.yml laid over it, per exporter profile."""
    tls = ["-f", str(TLS_FILE)]
    return {p: _rendered(compose, ENV_EXAMPLE, *tls, "--profile", p) for p in ("cpu", "gpu")}


def test_tls_serves_https_and_every_client_verifies_it(tls_stacks: dict[str, dict]) -> None:
    certs = ROOT / "certs"
    for profile, stack in tls_stacks.items():
        services = stack["services"]
        for name, service in services.items():
            if name not in ("influxdb", "dcgm-exporter"):  # those two are hardened apart
                _hardened(service)
            for host, port in _published(service):
                assert host == "127.0.0.1", f"{name} publishes {port} on {host or 'all'}"
            sources = [source for source, _ in _mounts(service).values()]
            assert not any(s.endswith("ca.key") for s in sources), f"{name} gets the CA's key"
        influxdb = services["influxdb"]
        env, mounts = influxdb["environment"], _mounts(influxdb)
        assert env["INFLUXD_TLS_CERT"] == "/etc/tubai/tls/server.pem"
        assert env["INFLUXD_TLS_KEY"] == "/etc/tubai/tls/server.key"
        assert mounts["/etc/tubai/tls/server.pem"] == (str(certs / "server.pem"), True)
        assert mounts["/etc/tubai/tls/server.key"] == (str(certs / "server.key"), True)
        assert "https://127.0.0.1:8086" in influxdb["healthcheck"]["test"]
        assert mounts["/var/lib/influxdb2"] == ("influxdb-data", False)  # the base's mounts stay
        grafana = services["grafana"]
        env, mounts = grafana["environment"], _mounts(grafana)
        assert env["GF_SERVER_PROTOCOL"] == "https" and env["SSL_CERT_DIR"] == "/etc/tubai/ca"
        assert mounts["/etc/tubai/ca/ca.pem"] == (str(certs / "ca.pem"), True)
        tls_datasources = str(ROOT / "grafana" / "provisioning" / "datasources-tls")
        assert mounts["/etc/grafana/provisioning/datasources"] == (tls_datasources, True)
        exporter = services["exporter" if profile == "cpu" else "exporter-gpu"]
        clients = {
            "scoring": "influxdb+https://influxdb:8086/tubai?ca=/etc/tubai/tls/ca.pem",
            "exporter": "influxdb+https://127.0.0.1:8086/tubai?ca=/etc/tubai/tls/ca.pem",
        }
        for service, url in (
            (services["scoring"], clients["scoring"]),
            (exporter, clients["exporter"]),
        ):
            command = service["command"]
            assert command[command.index("--store") + 1] == url
            assert _mounts(service)["/etc/tubai/tls/ca.pem"] == (str(certs / "ca.pem"), True)
        assert "--metrics-port" in exporter["command"] and exporter["network_mode"] == "host"
    # the TLS datasource is the plain one but for its URL
    plain = yaml.safe_load(DATASOURCE.read_text())
    tls = yaml.safe_load((ROOT / "grafana/provisioning/datasources-tls/tubai.yml").read_text())
    assert tls["datasources"][0].pop("url") == "https://influxdb:8086"
    assert plain["datasources"][0].pop("url") == "http://influxdb:8086"
    assert tls == plain


def test_the_env_file_turns_tls_on(compose: list[str], tmp_path: Path) -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    assert f"#COMPOSE_FILE={TLS_COMPOSE}" in lines  # documented, off by default
    env = tmp_path / "tls.env"
    env.write_text("\n".join(x.lstrip("#") if "COMPOSE_FILE=" in x else x for x in lines) + "\n")
    cmd = [*compose, "--project-directory", str(ROOT), "--env-file", str(env), "config"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    influxdb = yaml.safe_load(done.stdout)["services"]["influxdb"]
    assert influxdb["environment"]["INFLUXD_TLS_CERT"] == "/etc/tubai/tls/server.pem"
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", TLS_FILE.read_text()))
    assert used <= set(_env_file(ENV_EXAMPLE)), "used by docker-compose.tls.yml, undocumented"


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")
def test_make_certs_signs_the_names_of_the_env_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    env = {**_clean_env(), "TUBAI_TLS_NAMES": "lab-1.example.org,10.0.0.5"}
    done = subprocess.run(["sh", str(MAKE_CERTS), str(out)], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((out / "ca.key").stat().st_mode) == 0o600
    ca, server = str(out / "ca.pem"), str(out / "server.pem")
    for name in ("lab-1.example.org", "localhost", "influxdb"):
        assert _openssl("verify", "-CAfile", ca, "-verify_hostname", name, server).returncode == 0
    for ip in ("10.0.0.5", "127.0.0.1"):
        assert _openssl("verify", "-CAfile", ca, "-verify_ip", ip, server).returncode == 0
    assert _openssl("verify", "-CAfile", ca, "-verify_hostname", "other.org", server).returncode
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = subprocess.run(["sh", str(MAKE_CERTS), str(out), "x.org"], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 0 and "left as it is" in again.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_up_makes_certificates_only_where_tls_is_asked(tmp_path: Path) -> None:
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    assert _make_env(tmp_path / ".env", COMPOSE_PROFILES="cpu").returncode == 0
    text = (tmp_path / ".env").read_text()

    def up() -> subprocess.CompletedProcess:
        make = ["make", "-s", "-f", str(ROOT / "Makefile"), "up", "COMPOSE=echo compose"]
        return subprocess.run(make, cwd=tmp_path, capture_output=True, text=True,
                              env=_clean_env(), timeout=120)  # fmt: skip

    assert up().returncode == 0 and not (tmp_path / "certs").exists()
    (tmp_path / ".env").write_text(text.replace("#COMPOSE_FILE=", "COMPOSE_FILE="))
    done = up()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "certs" / "server.pem").exists() and "compose up -d --build" in done.stdout
    (tmp_path / ".env").write_text(text.replace("#COMPOSE_FILE=", "COMPOSE_FILE=").replace(
        "TUBAI_TLS_CERT=\n", "TUBAI_TLS_CERT=/etc/mine.pem\n"))  # fmt: skip
    shutil.rmtree(tmp_path / "certs")
    assert up().returncode == 0 and not (tmp_path / "certs").exists()  # the user's own


def _join(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(JOIN), *args], cwd=tmp_path, capture_output=True,
                          text=True, env=_clean_env(), timeout=60)  # fmt: skip


def test_join_writes_the_exporters_env_and_refuses_bad_input_in_one_line(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "c"
    subprocess.run(["sh", str(MAKE_CERTS), str(certs)], check=True, capture_output=True)
    ca = tmp_path / "ca.pem"
    shutil.copy(certs / "ca.pem", ca)
    done = _join(tmp_path, "https://central.lab:8086", "tok_EN-1==", "ca.pem", "lab-2")
    assert done.returncode == 0, done.stderr
    out = tmp_path / ".env.join"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert _env_file(out) == {
        "TUBAI_HOST": "lab-2",
        "TUBAI_STORE": "influxdb+https://central.lab:8086/tubai",
        "TUBAI_INFLUXDB_CA": str(ca),
        "TUBAI_INFLUXDB_TOKEN": "tok_EN-1==",
    }
    assert "tok_EN-1" not in done.stdout  # the token is never printed
    bad = {
        "is not https://host[:port]": ("http://central.lab:8086", "t", "ca.pem"),
        "not https://host[:port]": ("https://central.lab/x;rm", "t", "ca.pem"),
        "not a token": ("https://central.lab", "a b", "ca.pem"),
        "cannot be read": ("https://central.lab", "t", "missing.pem"),
        "not a PEM certificate": ("https://central.lab", "t", ".env.join"),
        "not a host name": ("https://central.lab", "t", "ca.pem", "a;b"),
        "give CENTRAL=": ("https://central.lab",),
    }
    for why, args in bad.items():
        done = _join(tmp_path, *args)
        assert done.returncode == 2 and why in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_joining_machine_runs_the_exporter_alone(compose: list[str], tmp_path: Path) -> None:
    env = tmp_path / ".env.join"
    env.write_text("TUBAI_HOST=lab-2\nTUBAI_STORE=influxdb+https://central.lab:8086/tubai\n"
                   f"TUBAI_INFLUXDB_CA={tmp_path}/ca.pem\nTUBAI_INFLUXDB_TOKEN=t0k\n")  # fmt: skip
    cmd = [*compose, "-f", str(JOIN_FILE), "--project-directory", str(ROOT)]
    done = subprocess.run([*cmd, "--env-file", str(env), "--profile", "join", "config"],
                          capture_output=True, text=True, env=_clean_env(), timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert list(services) == ["exporter"]
    exporter = services["exporter"]
    assert exporter["profiles"] == ["join"] and "ports" not in exporter
    assert exporter["cap_drop"] == ["ALL"] and exporter["read_only"] is True
    assert "no-new-privileges:true" in exporter["security_opt"]
    command = " ".join(exporter["command"])
    assert "--store influxdb+https://central.lab:8086/tubai --host lab-2" in command
    assert exporter["environment"]["TUBAI_INFLUXDB_TOKEN"] == "t0k"
    assert exporter["environment"]["TUBAI_INFLUXDB_CA"] == "/etc/tubai/ca.pem"
    mounts = _mounts(exporter)
    assert mounts["/etc/tubai/ca.pem"] == (f"{tmp_path}/ca.pem", True)
    assert mounts["/var/lib/tubai/spool"] == ("tubai-spool", False)
    env.write_text("TUBAI_HOST=lab-2\n")  # without what make join writes: refused, and why
    done = subprocess.run([*cmd, "--env-file", str(env), "config"], capture_output=True,
                          text=True, env=_clean_env(), timeout=60)  # fmt: skip
    assert done.returncode != 0 and "make join writes .env.join" in done.stdout + done.stderr


# A stand-in for the influx CLI in the InfluxDB container, for scripts/lab-token.sh: it records
# each call and answers `bucket list`, `auth create` (a token) and `auth list` (two hosts).
LAB_INFLUX = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_INFLUX_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["bucket", "list"]:
    print("feedfacecafe0001\\ttubai\\t\\tinfinite\\t168h0m0s\\t0123456789abcdef\\timplicit")
elif args[:2] == ["auth", "create"]:
    print("0c0c\\t" + args[args.index("--description") + 1] + "\\tminted-token==\\tadmin\\t0d\\t[]")
elif args[:2] == ["auth", "list"]:
    for i, d in ((1, "tubai join: lab-2"), (2, "tubai join: lab-22"), (3, "tubai join: lab-2")):
        print(f"{{i:016x}}\\t{{d}}\\ttoken{{i}}\\tadmin\\t0d\\t[]")
"""


def _lab_token(tmp_path: Path, *args: str, env_text: str = "") -> tuple[int, str, list]:
    fake = tmp_path / "influx"
    fake.write_text(LAB_INFLUX.format(python=sys.executable))
    fake.chmod(0o755)
    (tmp_path / ".env").write_text(env_text or ENV_EXAMPLE.read_text())
    log = tmp_path / "influx.log"
    log.unlink(missing_ok=True)
    environ = {**_clean_env(), "INFLUX": str(fake), "FAKE_INFLUX_LOG": str(log)}
    done = subprocess.run(["sh", str(LAB_TOKEN), *args], cwd=tmp_path, capture_output=True,
                          text=True, env=environ, timeout=60)  # fmt: skip
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls


def test_make_token_mints_a_write_only_token_per_host_and_revoke_withdraws_it(
    tmp_path: Path,
) -> None:
    rc, out, calls = _lab_token(tmp_path, "token", "lab-2")
    assert rc == 0, out
    create = next(c for c in calls if c[:2] == ["auth", "create"])
    assert create == ["auth", "create", "--org", "tubai", "--write-bucket", "feedfacecafe0001",
                      "--description", "tubai join: lab-2", "--hide-headers"]  # fmt: skip
    assert "make join CENTRAL=https://" in out and "TOKEN=minted-token== CA=ca.pem" in out
    rc, out, calls = _lab_token(tmp_path, "token", "lab-3", "bench")
    create = next(c for c in calls if c[:2] == ["auth", "create"])
    assert rc == 0 and "--read-bucket" in create and "--write-bucket" in create
    tls = ENV_EXAMPLE.read_text().replace("#COMPOSE_FILE=", "COMPOSE_FILE=")
    rc, out, calls = _lab_token(tmp_path, "revoke", "lab-2", env_text=tls)
    assert rc == 0, out
    deleted = [c[c.index("--id") + 1] for c in calls if c[:2] == ["auth", "delete"]]
    assert deleted == [f"{1:016x}", f"{3:016x}"]  # lab-2's, not lab-22's
    assert all("--skip-verify" in c and "https://127.0.0.1:8086" in c for c in calls)
    for args in (("token", "a;b"), ("token", ""), ("revoke", "-x")):
        rc, out, calls = _lab_token(tmp_path, *args)
        assert rc == 2 and "not a host name" in out and not calls, out
        assert len(out.strip().splitlines()) == 1
