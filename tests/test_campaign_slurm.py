"""examples/slurm/campaign.sbatch under a real Slurm: a one-node cluster of Debian's slurm-wlm
(slurmctld, slurmd and a munged of its own, on free ports in a temporary directory), an array
of three tasks, one shard each: every point runs once, each run records its task.

Needs root (slurmd runs jobs as their user) and slurm-wlm with munge installed
(``apt-get install slurm-wlm``); skipped with the reason where either is missing, unless
``TUBAI_REQUIRE_SLURM=1`` (``.ci/run`` sets it) makes a missing Slurm a failure. Sharding and
resume are tested without Slurm in tests/test_campaign.py and tests/test_campaign_run.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rapl_writer import ProfileWriter, make_tree

from benchmark.plan import load_plan
from exporters.schema import RUN
from exporters.stores.sqlite import SQLiteStore

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parent.parent
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
MISSING = [d for d in DAEMONS if not os.access(d, os.X_OK)] + (
    [] if shutil.which("sbatch") else ["sbatch"]
)
WHY_MISSING = f"{', '.join(MISSING)} missing: apt-get install slurm-wlm to run the Slurm test"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a private slurmd needs root")
START_S = 60  # the cluster answers within this, or the test fails with its logs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(d: Path, host: str) -> str:
    cpus = os.cpu_count() or 1
    return f"""ClusterName=tubaitest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge/sock
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A one-node Slurm cluster; yields the environment its client commands need. Without
    slurm-wlm the test is skipped, unless ``TUBAI_REQUIRE_SLURM=1`` (CI) makes that a failure."""
    if MISSING:
        if os.environ.get("TUBAI_REQUIRE_SLURM") == "1":
            pytest.fail(f"{WHY_MISSING} (TUBAI_REQUIRE_SLURM=1 requires it)")
        pytest.skip(WHY_MISSING)
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool"):
        (d / sub).mkdir(mode=0o700)
    key = d / "munge" / "key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname()
    (d / "slurm.conf").write_text(_conf(d, host))
    env = {**os.environ, "SLURM_CONF": str(d / "slurm.conf")}
    subprocess.run([DAEMONS[0], "--force", f"--socket={d}/munge/sock", f"--key-file={key}",
                    f"--pid-file={d}/munge/pid", f"--log-file={d}/munge/log",
                    f"--seed-file={d}/munge/seed"], check=True)  # fmt: skip
    daemons = [subprocess.Popen([daemon, "-D", "-f", str(d / "slurm.conf")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for daemon in DAEMONS[1:]]  # fmt: skip
    try:
        deadline = time.monotonic() + START_S
        while "idle" not in _run(["sinfo", "-h", "-o", "%t"], env):
            assert time.monotonic() < deadline, _logs(d)
            time.sleep(0.2)
        yield env
    finally:
        for p in daemons:
            p.send_signal(signal.SIGTERM)
        for p in daemons:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        os.kill(int((d / "munge" / "pid").read_text()), signal.SIGTERM)


def _run(cmd: list[str], env: dict[str, str]) -> str:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False).stdout


def _logs(d: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-1500:] for p in d.glob("*.log"))


def test_an_array_job_runs_one_shard_per_task(tmp_path: Path, slurm: dict[str, str]) -> None:
    zones = make_tree(tmp_path / "sys", {"package-0": 262_143.0})
    writer = ProfileWriter(zones, {"package-0": 262_143.0}, lambda domain, t: 30.0 * t)
    writer.start()
    plan_path, db = tmp_path / "plan.yaml", tmp_path / "c.db"
    plan_path.write_text(yaml.safe_dump({
        "campaign": "slurm", "models": ["digits_cnn"], "batch_sizes": [16, 32, 64],
        "data": "digits", "limit": 64,
    }))  # fmt: skip
    env = {**slurm, "TUBAI_SYSFS_ROOT": str(tmp_path / "sys"), "TUBAI_DIR": str(tmp_path),
           "TUBAI_STORE": f"sqlite:///{db}", "TUBAI_SOURCES__NVML__ENABLED": "false",
           "TUBAI_PYTHON": str(ROOT / ".venv" / "bin" / "python")}  # fmt: skip
    try:
        # --exclusive (the script's): the tasks run one after another on the one node
        done = subprocess.run(
            ["sbatch", "--wait", "--array=0-2", f"--output={tmp_path}/task-%a.out",
             f"--chdir={tmp_path}", str(ROOT / "examples/slurm/campaign.sbatch"), str(plan_path)],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        writer.stop()
    outputs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("task-*.out")))
    assert done.returncode == 0, done.stderr + outputs
    with SQLiteStore(db) as store:
        starts = [e for e in store.read(RUN, 0, 2**62) if e.fields["event"] == "start"]
        ends = [e for e in store.read(RUN, 0, 2**62) if e.fields["event"] == "end"]
    plan = load_plan(str(plan_path))
    assert len(ends) == len(starts) == len(plan.points)  # every point, each once
    assert sorted(e.fields["campaign_point"] for e in starts) == sorted(p.key for p in plan.points)
    assert sorted(e.fields["slurm_array_task_id"] for e in starts) == ["0", "1", "2"]
    assert len({e.fields["slurm_job_id"] for e in starts}) == 3  # each task a job of its own
