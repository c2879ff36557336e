"""How the agent's sampling thread is scheduled: its priority, and the CPUs it may run on.

The periodic sampler only needs to be about on time: a window's edges are read exactly, at
the edge, by the window's own thread (:meth:`~exporters.agent.Agent.sample_now`), so a periodic
sample taken a little late costs no accuracy. It may then yield to the work being measured:

- ``normal``: the process's own priority (nothing is changed).
- ``low``: nice 19, for this thread only (Linux's ``setpriority`` takes a thread id): it still
  runs, at about 1/70 of a nice-0 thread's share when they compete for a CPU.
- ``idle``: Linux's ``SCHED_IDLE``: it runs where a CPU has nothing else to do (and a sliver,
  weight 3 against a nice-0 thread's 1024, where it has), and never preempts a normal thread
  when it wakes.

The configuration's ``sampler_priority`` chooses, ``idle`` by default: on the development VM
it took the agent's cost to MobileNetV3 Small at batch 1 from about 1% to nothing measurable,
and its price, on a machine other processes saturate, is that the window's thread may wait
for a starved sampler holding the GIL or the agent's lock (README, Performance, has both).

A thread inherits its creator's policy, nice value and CPUs: the agent's writer thread, which
the sampling thread starts, is scheduled like it. Lowering one's own priority needs no
privilege; where the platform has no such call, or refuses, the reason is returned (the agent
logs it once and samples at normal priority).

:func:`pin_this_thread` keeps the calling thread on the given CPUs (``--agent-cpu``), off the
cores a user keeps for inference.
"""

from __future__ import annotations

import os
import threading

PRIORITIES = ("normal", "low", "idle")
LOW_NICE = 19


def lower_this_thread(priority: str) -> str | None:
    """Schedule the calling thread at ``priority`` (one of :data:`PRIORITIES`); None once
    done, else why it could not be, in words."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
    if priority == "normal":
        return None
    tid = threading.get_native_id()
    try:
        if priority == "idle":
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.setpriority(os.PRIO_PROCESS, tid, LOW_NICE)
    except AttributeError:
        return f"this platform cannot schedule a thread at {priority} priority"
    except OSError as e:
        return f"{priority} priority was refused: {e.strerror or e}"
    return None


def pin_this_thread(cpus: set[int]) -> str | None:
    """Keep the calling thread on ``cpus``; None once done, else why not, in words."""
    try:
        os.sched_setaffinity(0, cpus)
    except AttributeError:
        return "this platform cannot keep a thread on given CPUs"
    except OSError as e:
        return f"CPUs {sorted(cpus)} were refused: {e.strerror or e}"
    return None


def cpu_problem(cpu: int) -> str | None:
    """Why there is no CPU ``cpu`` on this machine to keep a thread on; None where there is.
    Any CPU of the machine will do, not only those this process runs on: the point is to keep
    the agent off the inference's (``taskset -c 1-7 python -m benchmark run --agent-cpu 0``)."""
    count = os.cpu_count() or 1
    if 0 <= cpu < count:
        return None
    return f"no CPU {cpu} here: this machine has CPUs 0 to {count - 1}"


def this_thread() -> tuple:
    """The calling thread's scheduling (policy, nice value, CPUs), for
    :func:`restore_this_thread`; None for what this platform cannot tell."""
    tid = threading.get_native_id()

    def ask(call, *args):
        try:
            return call(*args)
        except (AttributeError, OSError):
            return None

    return (
        ask(lambda: os.sched_getscheduler(tid)),
        ask(lambda: os.getpriority(os.PRIO_PROCESS, tid)),
        ask(lambda: os.sched_getaffinity(0)),
    )


def restore_this_thread(saved: tuple) -> None:
    """Put the calling thread back as :func:`this_thread` found it, as far as permitted: a
    thread that ran the agent (``Agent.run`` in a caller's own thread, as the tests and
    ``python -m exporters run`` do) goes on at the priority it had."""
    policy, nice, cpus = saved
    tid = threading.get_native_id()
    for call in (
        lambda: policy is not None and os.sched_setscheduler(tid, policy, os.sched_param(0)),
        lambda: nice is not None and os.setpriority(os.PRIO_PROCESS, tid, nice),
        lambda: cpus is not None and os.sched_setaffinity(0, cpus),
    ):
        try:
            call()
        except (AttributeError, OSError):
            pass  # not permitted (raising a priority may need privileges): left as it is
