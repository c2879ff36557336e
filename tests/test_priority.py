"""The agent thread's scheduling: its priority and CPUs, read back from the kernel."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest
from test_agent import Ticker

from benchmark.__main__ import main as benchmark_main
from exporters.agent import Agent
from exporters.config import load_config
from exporters.errors import ConfigError
from exporters.priority import cpu_problem, lower_this_thread, pin_this_thread
from exporters.stores.sqlite import SQLiteStore

linux = pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling")


@pytest.fixture
def in_thread() -> Iterator[Callable[[Callable[[], object]], tuple[int, object]]]:
    """Runs work in a new thread, kept alive (waiting) until the test ends so that its
    scheduling can be read back: (its native id, what the work returned)."""
    release = threading.Event()

    def run(work: Callable[[], object]) -> tuple[int, object]:
        result: list[object] = []
        done = threading.Event()

        def body() -> None:
            result.append(work())
            done.set()
            release.wait(30)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        assert done.wait(10)
        return thread.native_id, result[0]

    yield run
    release.set()


@linux
def test_idle_puts_only_the_calling_thread_under_sched_idle(in_thread) -> None:
    before = os.sched_getscheduler(threading.get_native_id())
    tid, why = in_thread(lambda: lower_this_thread("idle"))
    assert why is None
    assert os.sched_getscheduler(tid) == os.SCHED_IDLE
    assert os.sched_getscheduler(threading.get_native_id()) == before


@linux
def test_low_sets_nice_19_on_the_calling_thread_only(in_thread) -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    tid, why = in_thread(lambda: lower_this_thread("low"))
    assert why is None
    assert os.getpriority(os.PRIO_PROCESS, tid) == 19
    assert os.sched_getscheduler(tid) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_normal_changes_nothing_and_unknown_priorities_are_refused(in_thread) -> None:
    tid, why = in_thread(lambda: lower_this_thread("normal"))
    assert why is None
    if hasattr(os, "sched_getscheduler"):
        assert os.sched_getscheduler(tid) == os.sched_getscheduler(threading.get_native_id())
    with pytest.raises(ValueError, match="realtime"):
        lower_this_thread("realtime")


@linux
def test_pin_keeps_the_calling_thread_on_its_cpu_only(in_thread) -> None:
    before = os.sched_getaffinity(0)
    cpu = max(before)
    tid, why = in_thread(lambda: pin_this_thread({cpu}))
    assert why is None
    assert os.sched_getaffinity(tid) == {cpu}
    assert os.sched_getaffinity(0) == before


@linux
def test_a_refused_pin_is_told_not_raised(in_thread) -> None:
    _, why = in_thread(lambda: pin_this_thread({10**6}))
    assert why and "refused" in why


@linux
def test_agent_thread_and_its_writer_run_at_its_priority_on_its_cpu(tmp_path) -> None:
    cpu = max(os.sched_getaffinity(0))
    with SQLiteStore(tmp_path / "a.db") as store:
        agent = Agent([Ticker("t", "power")], store, "h", priority="idle", cpus={cpu})
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        try:
            assert agent.first_round.wait(10)
            for tid in (thread.native_id, agent.writer._thread.native_id):
                assert os.sched_getscheduler(tid) == os.SCHED_IDLE
                assert os.sched_getaffinity(tid) == {cpu}
            assert os.sched_getscheduler(threading.get_native_id()) != os.SCHED_IDLE
        finally:
            agent.stop()
            thread.join(10)


def test_sampler_priority_must_be_one_the_agent_knows() -> None:
    assert load_config(env={})["sampler_priority"] == "idle"
    assert load_config(env={"TUBAI_SAMPLER_PRIORITY": "normal"})["sampler_priority"] == "normal"
    with pytest.raises(ConfigError, match=r"sampler_priority.*normal, low, idle"):
        load_config(env={"TUBAI_SAMPLER_PRIORITY": "lowest"})


@linux
def test_agent_cpu_that_does_not_exist_is_one_line_exit_2(capsys) -> None:
    missing = os.cpu_count()
    assert cpu_problem(missing) and cpu_problem(missing - 1) is None
    with pytest.raises(SystemExit) as exit_:
        benchmark_main(["run", "--model", "mobilenetv3_small", "--agent-cpu", str(missing)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no CPU {missing}" in err and "Traceback" not in err


@linux
def test_a_thread_that_ran_the_agent_goes_on_at_the_priority_it_had(tmp_path, in_thread) -> None:
    """``Agent.run`` in a caller's own thread (``python -m exporters run``, tests) puts it back
    as it found it: a later test or command is never left at SCHED_IDLE."""

    def run_agent() -> int:
        with SQLiteStore(tmp_path / "a.db") as store:
            Agent([Ticker("t", "power")], store, "h", priority="idle").run(0.3)
        return os.sched_getscheduler(threading.get_native_id())

    tid, policy = in_thread(run_agent)
    assert policy == os.SCHED_OTHER == os.sched_getscheduler(tid)
