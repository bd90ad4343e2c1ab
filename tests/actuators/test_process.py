"""sched.policy, sched.nice, ioprio.*: on processes the test spawns (threads included)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from actuators import ChangeSession, Journal, OutOfBounds
from actuators.affinity import threads_of
from actuators.process import PROCESS, process_knob

THREADED = ("import threading, time\n"
            "[threading.Thread(target=time.sleep, args=(60,), daemon=True).start() for _ in range(3)]\n"
            "time.sleep(60)\n")


@pytest.fixture
def workload():
    procs = [subprocess.Popen([sys.executable, "-c", THREADED]) for _ in range(2)]
    deadline = time.monotonic() + 10
    while any(len(threads_of(p.pid)) < 4 for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield [p.pid for p in procs]
    for p in procs:
        p.kill()
        p.wait()


def _every_thread(pids, get):
    return {get(tid) for pid in pids for tid in threads_of(pid)}


@pytest.mark.parametrize(
    "name, value, probe, expected",
    [
        ("sched.policy", "batch", os.sched_getscheduler, os.SCHED_BATCH),
        ("sched.policy", "idle", os.sched_getscheduler, os.SCHED_IDLE),
        ("sched.nice", 7, lambda t: os.getpriority(os.PRIO_PROCESS, t), 7),
        ("ioprio.class", "idle", lambda t: int(psutil.Process(t).ionice()[0]), int(psutil.IOPRIO_CLASS_IDLE)),
        ("ioprio.level", 6, lambda t: tuple(map(int, psutil.Process(t).ionice())), (int(psutil.IOPRIO_CLASS_BE), 6)),
    ],
)
def test_apply_reaches_every_thread_and_restore_puts_each_back(tmp_path, workload, name, value, probe, expected):
    before = {(pid, tid): probe(tid) for pid in workload for tid in threads_of(pid)}
    knob = process_knob(name, lambda: workload)
    assert knob.available() is None
    with ChangeSession(Journal(tmp_path / "j.jsonl"), run_id="r", trial=0) as session:
        session.apply(knob, value)
        assert _every_thread(workload, probe) == {expected}
        assert knob.verify(value)
    assert {(pid, tid): probe(tid) for pid in workload for tid in threads_of(pid)} == before


@pytest.mark.parametrize(
    "name, value",
    [("sched.policy", "fifo"), ("sched.policy", "rr"), ("sched.nice", 20), ("sched.nice", -21),
     ("ioprio.class", "rt"), ("ioprio.level", 8), ("ioprio.level", -1), ("sched.nice", "x")],
)
def test_out_of_bounds_is_refused_before_any_change(workload, name, value):
    def state():
        return _every_thread(workload, os.sched_getscheduler), _every_thread(
            workload, lambda t: os.getpriority(os.PRIO_PROCESS, t))

    before = state()
    with pytest.raises(OutOfBounds, match=name.replace(".", r"\.")):
        process_knob(name, lambda: workload).apply(value)
    assert state() == before


def test_unavailable_without_processes():
    for name in PROCESS:
        assert "binds to the processes a run starts" in process_knob(name, None).available()
        assert process_knob(name, lambda: []).available() == "the workload has no running process"
