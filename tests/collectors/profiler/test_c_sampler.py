"""Sampling with the real py-spy on real spawned Python processes (part C): modes, threads, the mix, and every
bad target — each with nothing left running."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from collectors.passive.allowed import PassivePolicy
from collectors.profiler.model import ProfileError
from collectors.profiler.sampler import SamplerOptions, check_target, record_command, record_pid
from collectors.profiler.target import (
    EmptyProfile,
    NotAPythonProcess,
    ProfileTargetExited,
    ProfileTargetNotFound,
    ProfileTargetRefused,
)
from tests.collectors.profiler._c_support import pyspy_children, python_proc

pytestmark = pytest.mark.slow  # real py-spy windows of 2-3 s each

BUSY_WITH_SLEEPER = """
    def sleeper():
        while True:
            time.sleep(0.5)
    threading.Thread(target=sleeper, name="sleepy", daemon=True).start()
    print("READY", flush=True)
    busy(time.monotonic() + 50)
"""


def _leaf_shares(profile) -> dict[str, float]:
    counts: dict[str, int] = {}
    for stack, count in profile.stacks():
        counts[stack[-1].function] = counts.get(stack[-1].function, 0) + count
    total = sum(counts.values())
    return {fn: 100.0 * n / total for fn, n in counts.items()}


def _pyspy_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("novatune-pyspy-")}


def test_cpu_mode_recovers_the_mix_with_os_thread_ids_and_fills_the_metadata(tmp_path):
    dirs = _pyspy_dirs()
    with python_proc(tmp_path, BUSY_WITH_SLEEPER) as proc:
        prof = record_pid(proc.pid, 3, SamplerOptions(rate_hz=100))
        tids = set(os.listdir(f"/proc/{proc.pid}/task"))
        assert not pyspy_children(proc.pid)
    shares = _leaf_shares(prof)
    assert shares.get("f70", 0) == pytest.approx(70, abs=12), shares
    assert shares.get("f25", 0) == pytest.approx(25, abs=10), shares
    assert shares.get("f5", 0) == pytest.approx(5, abs=5), shares
    threads = prof.threads()
    assert f"thread ({proc.pid}): MainThread" in threads  # the OS tid of the main thread
    assert all(label.split("(")[1].split(")")[0] in tids for label in threads)
    sleepy = sum(n for label, n in threads.items() if label.endswith("sleepy"))
    assert sleepy < 0.2 * prof.total, "CPU mode leaves the idle thread (mostly) out"
    m = prof.meta
    assert (m.engine, m.mode, m.rate_hz, m.pid) == ("py-spy", "cpu", 100.0, proc.pid)
    assert "target.py" in m.cmdline and m.cgroup.startswith("/") and m.start > time.time() - 60
    assert 2.5 < m.duration_s < 6
    for key in ("pyspy_cpu_pct", "est_slowdown_pct", "budget_pct", "rate_hz", "nonblocking", "gil", "behind"):
        assert key in m.overhead
    assert m.overhead["nonblocking"] == 1.0 and "--nonblocking" in m.labels["flags"]
    assert str(proc.pid) in m.threads and m.threads[str(proc.pid)]["oncpu_ms"] > 500
    assert m.threads["process"]["threads"] == 3  # main, sleepy, the watchdog timer
    assert len(m.memory) >= 2 and m.memory[0]["rss_mb"] > 1
    assert _pyspy_dirs() == dirs, "the private temp directory is removed"


def test_wall_mode_samples_the_idle_thread_too(tmp_path):
    with python_proc(tmp_path, BUSY_WITH_SLEEPER) as proc:
        prof = record_pid(proc.pid, 2, SamplerOptions(mode="wall", rate_hz=50))
    threads = prof.threads()
    sleepy = [n for label, n in threads.items() if label.endswith("sleepy")]
    main = [n for label, n in threads.items() if label.endswith("MainThread")]
    assert sleepy and main and sleepy[0] > 0.5 * main[0], threads
    assert prof.meta.mode == "wall"


def test_an_idle_target_in_cpu_mode_is_an_error_never_an_empty_profile(tmp_path):
    with python_proc(tmp_path, 'print("READY", flush=True)\ntime.sleep(50)\n') as proc:
        with pytest.raises(EmptyProfile, match="mode='wall'"):
            record_pid(proc.pid, 1.5, SamplerOptions(rate_hz=50))
        assert not pyspy_children(proc.pid)


def test_a_non_python_process_is_a_clear_error_naming_perf_and_leaves_no_pyspy():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(NotAPythonProcess) as err:
            record_pid(sleeper.pid, 2)
        msg = str(err.value)
        assert "not a Python process" in msg and "py-spy profiles Python processes only" in msg
        assert ('engine="perf"' in msg) == (subprocess.run(["which", "perf"], capture_output=True).returncode == 0)
        assert err.value.http_status == 422 and err.value.exit_code == 2
        assert not pyspy_children(sleeper.pid)
        assert sleeper.poll() is None, "the target is untouched"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_pid_that_does_not_exist_is_404():
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ProfileTargetNotFound, match=f"no process has pid {gone.pid}") as err:
        check_target(gone.pid)
    assert err.value.http_status == 404
    with pytest.raises(ProfileTargetNotFound):
        record_pid(gone.pid, 1)
    with pytest.raises(ProfileError, match="positive integer"):
        check_target(-3)


def test_the_passive_policy_refuses_a_pid_it_does_not_allow_with_403(tmp_path):
    refuse = PassivePolicy.of(["exe:/usr/sbin/nginx"])
    with python_proc(tmp_path, 'print("READY", flush=True)\nbusy(time.monotonic() + 50)\n') as proc:
        with pytest.raises(ProfileTargetRefused, match="is not an allowed target") as err:
            record_pid(proc.pid, 1, policy=refuse)
        assert err.value.http_status == 403
        assert "allowed_targets" in str(err.value)
        assert not pyspy_children(proc.pid)
        allow = PassivePolicy.of([f"exe:{os.path.realpath(sys.executable)}"])
        assert check_target(proc.pid, policy=allow).python
    with pytest.raises(ProfileTargetRefused, match="init"):
        check_target(1)  # never a target, policy or not


@pytest.mark.parametrize(("rate", "continuous", "allowed"), [
    (0, False, "from 1 to 1000"), (1001, False, "from 1 to 1000"), (4, True, "from 5 to 100"),
    (101, True, "from 5 to 100"), (True, False, "from 1 to 1000"),
])
def test_a_rate_out_of_bounds_is_refused_naming_the_range(rate, continuous, allowed):
    with pytest.raises(ProfileError, match=allowed):
        SamplerOptions(rate_hz=rate).check(continuous=continuous)
    with pytest.raises(ProfileError, match=allowed):
        record_pid(os.getpid(), 1, SamplerOptions(rate_hz=rate), continuous=continuous)


def test_contradictory_options_and_durations_are_refused():
    with pytest.raises(ProfileError, match="native=True needs blocking"):
        SamplerOptions(native=True, nonblocking=True).check()
    with pytest.raises(ProfileError, match="contradicts wall mode"):
        SamplerOptions(mode="wall", gil=True).check()
    with pytest.raises(ProfileError, match="mode 'x' is not one of"):
        SamplerOptions(mode="x").check()
    for bad in (0, -1, 3601, float("nan")):
        with pytest.raises(ProfileError, match="duration_s"):
            record_pid(os.getpid(), bad)


def test_a_pid_exiting_mid_window_is_an_error_or_a_flagged_partial_profile(tmp_path):
    body = 'print("READY", flush=True)\nbusy(time.monotonic() + 1.2)\n'
    with python_proc(tmp_path, body) as proc:
        t0 = time.monotonic()
        with pytest.raises(ProfileTargetExited, match=r"exited .* into the 5 s window \(\d+ samples taken"):
            record_pid(proc.pid, 5, SamplerOptions(rate_hz=50))
        assert time.monotonic() - t0 < 4.5, "the window ends when the target does"
        assert not pyspy_children(proc.pid)
    with python_proc(tmp_path, body) as proc:
        prof = record_pid(proc.pid, 5, SamplerOptions(rate_hz=50), partial_ok=True)
        assert not pyspy_children(proc.pid)
    assert prof.meta.labels["partial"] == "true" and prof.total > 10


def test_record_command_profiles_a_launched_child_and_reaps_it(tmp_path):
    script = tmp_path / "alloc.py"
    script.write_text("import time\n"
                      "blobs = [bytearray(1024) for _ in range(20000)]  # the allocation hot spot\n"
                      "end = time.monotonic() + 30\n"
                      "while time.monotonic() < end:\n"
                      "    sum(range(10000))\n")
    prof = record_command([sys.executable, str(script)], 2, SamplerOptions(rate_hz=50), tracemalloc=True)
    assert prof.total > 20 and "partial" not in prof.meta.labels
    top = prof.meta.allocations[0]
    assert top["file"] == str(script) and top["line"] == 2 and top["size_bytes"] > 20_000_000
    assert top["count"] >= 20000
    assert not pyspy_children(prof.meta.pid) and not Path(f"/proc/{prof.meta.pid}").exists()


def test_record_command_of_a_command_that_fails_at_once_says_so():
    with pytest.raises(ProfileTargetExited, match="exited with code 2 .*: .*can't open file"):
        record_command([sys.executable, "/nonexistent/app.py"], 2)
    with pytest.raises(ProfileTargetExited, match=r"exited with code 3 \d.* into the window: boom"):
        record_command([sys.executable, "-c", "import sys, time\nend = time.monotonic() + 1\n"
                        "while time.monotonic() < end: pass\nsys.stderr.write('boom'); sys.exit(3)"], 5)
    with pytest.raises(ProfileError, match="needs a Python command"):
        record_command(["sleep", "1"], 1, tracemalloc=True)
    with pytest.raises(ProfileError, match="empty"):
        record_command([], 1)


def test_a_short_command_gives_the_profile_of_its_whole_run(tmp_path):
    script = tmp_path / "short.py"
    script.write_text("import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end:\n    pass\n")
    t0 = time.monotonic()
    prof = record_command([sys.executable, str(script)], 10, SamplerOptions(rate_hz=50))
    assert time.monotonic() - t0 < 6
    assert prof.meta.labels["exit_code"] == "0" and "partial" not in prof.meta.labels and prof.total > 20
