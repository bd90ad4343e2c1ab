"""Continuous profiling (part C): windows handed over as they complete, the rate adapted between them, a
prompt stop, a target that exits, a cgroup's Python processes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from collectors.profiler.model import Profile, ProfileError
from collectors.profiler.sampler import SamplerOptions
from collectors.profiler.target import ProfileTargetNotFound
from collectors.profiler.watch import Watcher
from tests.collectors.profiler._c_support import pyspy_children, python_proc

pytestmark = pytest.mark.slow  # windows are 10 s at least

BUSY = 'print("READY", flush=True)\nbusy(time.monotonic() + 55)\n'


def test_windows_are_handed_over_with_their_overhead_and_the_event_stops_the_watch_within_a_second(tmp_path):
    got: list[Profile] = []
    with python_proc(tmp_path, BUSY) as proc:
        watcher = Watcher(pid=proc.pid, window_s=10, on_window=got.append, options=SamplerOptions(rate_hz=100),
                          labels={"study": "s1"})
        stop = threading.Event()
        thread = watcher.start(stop)
        deadline = time.monotonic() + 25
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
        assert got, "the first window is handed over when it completes"
        time.sleep(1.5)  # into the second window
        assert pyspy_children(proc.pid), "the second window is sampling"
        t_set = time.monotonic()
        stop.set()
        thread.join(timeout=5)
        stopped_in = time.monotonic() - t_set
        assert not thread.is_alive() and stopped_in < 1.5, stopped_in
        assert not pyspy_children(proc.pid), "py-spy is killed and reaped"
        assert proc.poll() is None, "the target runs on"
    first = got[0]
    assert 9.5 < first.meta.duration_s < 12 and "partial" not in first.meta.labels
    assert first.meta.labels["study"] == "s1" and first.meta.labels["target"] == f"pid:{proc.pid}"
    assert first.meta.labels["window"] == "1"
    o = first.meta.overhead
    assert o["rate_hz"] == 100 and 5 <= o["next_rate_hz"] <= 100 and "est_slowdown_pct" in o
    assert "pyspy_cpu_pct" in o and o["budget_pct"] == 1.0 and "next" in first.meta.labels["budget"]
    assert len(got) == 2 and got[1].meta.labels["stopped"] == "true", "the stopped window comes flagged"
    assert got[1].meta.rate_hz == o["next_rate_hz"], "the second window ran at the adapted rate"
    status = watcher.status()
    assert status["ended"] == "stopped" and status["windows"] == 2 and not status["running"]
    assert status["pids"][str(proc.pid)]["windows"] == 2


def test_a_watched_pid_that_exits_ends_the_watch_with_its_partial_last_window(tmp_path):
    got: list[Profile] = []
    with python_proc(tmp_path, 'print("READY", flush=True)\nbusy(time.monotonic() + 2)\n') as proc:
        watcher = Watcher(pid=proc.pid, window_s=10, on_window=got.append, options=SamplerOptions(rate_hz=50))
        t0 = time.monotonic()
        assert watcher.run(threading.Event()) == "target exited"
        assert time.monotonic() - t0 < 6
    assert len(got) == 1 and got[0].meta.labels["partial"] == "true" and got[0].total > 20


def test_bounds_and_targets_are_checked_at_once():
    for window in (9.9, 61, True):
        with pytest.raises(ProfileError, match="window_s .* a window lasts 10 to 60 s"):
            Watcher(pid=os.getpid(), window_s=window, on_window=print)
    for rate in (4, 101):
        with pytest.raises(ProfileError, match="from 5 to 100 Hz"):
            Watcher(pid=os.getpid(), options=SamplerOptions(rate_hz=rate), on_window=print)
    with pytest.raises(ProfileError, match="a pid or a cgroup"):
        Watcher(pid=os.getpid(), cgroup="/sys/fs/cgroup", on_window=print)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ProfileTargetNotFound):
        Watcher(pid=gone.pid, on_window=print)
    with pytest.raises(ProfileTargetNotFound, match="not a cgroup directory"):
        Watcher(cgroup="/tmp", on_window=print)


def _v1_pids_root() -> Path | None:
    root = Path("/sys/fs/cgroup/pids")
    if os.geteuid() != 0 or not (root / "cgroup.procs").is_file():
        return None
    return root


def test_a_cgroups_python_processes_are_watched_and_others_skipped(tmp_path):
    root = _v1_pids_root()
    if root is None:
        pytest.skip("needs root and the cgroup v1 pids hierarchy at /sys/fs/cgroup/pids")
    group = root / f"novatune-test-watch-{os.getpid()}"
    group.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with python_proc(tmp_path, BUSY) as proc:
            for pid in (proc.pid, sleeper.pid):
                (group / "cgroup.procs").write_text(str(pid))
            got: list[Profile] = []
            watcher = Watcher(cgroup=group, window_s=10, on_window=got.append, max_windows=1,
                              options=SamplerOptions(rate_hz=50))
            assert watcher.run(threading.Event()) == "max windows"
        assert [p.meta.pid for p in got] == [proc.pid], "sleep is not Python: skipped"
        assert got[0].meta.labels["target"] == f"cgroup:{group}" and got[0].meta.cgroup
    finally:
        sleeper.kill()
        sleeper.wait()
        for _ in range(50):  # the killed processes leave the cgroup as they are reaped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
