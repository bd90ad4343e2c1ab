"""Sampling windows with py-spy: a running pid (:func:`record_pid`) or a command novatune launches
(:func:`record_command`), each window one :class:`~collectors.profiler.model.Profile`.

A window runs ``py-spy record -p PID -r RATE -f raw -t --full-filenames [-i] [--native] [--nonblocking]
[--gil] [-s] -o <private temp file>`` (``-i`` in wall mode) and stops it with SIGINT at the window's end
(py-spy then writes the file; no ``-d``: it counts samples, not seconds, and runs long when it falls behind).
The file is parsed by :func:`collectors.profiler.formats.collapsed.loads`; the metadata says what was
sampled and how (mode, engine, rate, start, duration, pid, cmdline, cgroup, py-spy's errors), what it cost
(``meta.overhead``: :func:`collectors.profiler.budget.measure`), the threads' accounting (``meta.threads``:
:mod:`collectors.profiler.offcpu`) and memory over the window (``meta.memory``: :mod:`.memory`).

**Flags**: ``nonblocking``/``gil`` left None are chosen by the target's thread count and the rate
(:func:`collectors.profiler.budget.choose_flags`); the choice is in ``meta.overhead`` (``nonblocking``,
``gil``) and its reason in ``meta.labels["flags"]``.

**Rates**: 1..1000 Hz for a one-off record, 5..100 Hz for continuous (adaptive) windows
(:meth:`SamplerOptions.check`).

**A target that exits mid-window**: by default a :class:`ProfileTargetExited` error (nothing is returned
half-done); with ``partial_ok=True`` (the watcher keeps a target's last window) the samples taken come back
with ``meta.labels["partial"] = "true"`` — and a window with no sample is never returned: it is an
:class:`EmptyProfile` (or :class:`ProfileTargetExited`) error. py-spy is always reaped and the temp
directory removed, whatever happens.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from collectors.passive.allowed import PassivePolicy, read_proc
from collectors.profiler import budget
from collectors.profiler.formats import collapsed
from collectors.profiler.memory import MemorySampler, leak_trend
from collectors.profiler.model import Profile, ProfileError, ProfileMeta
from collectors.profiler.offcpu import snapshot, thread_deltas
from collectors.profiler.runner import HostCpu, run_bounded
from collectors.profiler.target import (
    EmptyProfile,
    NotAPythonProcess,
    ProfilerUnavailable,
    ProfileTargetExited,
    TargetInfo,
    check_target,
)

__all__ = [
    "CONTINUOUS_RATE",
    "MAX_DURATION_S",
    "ONE_OFF_RATE",
    "SamplerOptions",
    "check_target",
    "find_pyspy",
    "record_command",
    "record_pid",
]

#: rate bounds (Hz) of a one-off record and of continuous (adaptive) windows
ONE_OFF_RATE = (1, 1000)
CONTINUOUS_RATE = (5, 100)
#: the longest window
MAX_DURATION_S = 3600.0

_SAMPLES = re.compile(r"Samples: (\d+) Errors: (\d+)")
_BEHIND = re.compile(r"([\d.]+)s behind in sampling")


@dataclass(frozen=True, kw_only=True)
class SamplerOptions:
    """How to sample: ``mode`` "cpu" (on-CPU samples) or "wall" (idle threads too: py-spy ``--idle``),
    ``rate_hz``, ``native`` frames, ``nonblocking`` / ``gil`` (None: chosen by thread count),
    ``subprocesses`` (py-spy ``-s``), ``engine`` "py-spy" or "perf" (native + kernel stacks of any process,
    CPU mode only), ``accounting`` (per-thread ``/proc`` figures and memory samples into the metadata)."""

    mode: str = "cpu"
    rate_hz: int = 100
    native: bool = False
    nonblocking: bool | None = None
    gil: bool | None = None
    subprocesses: bool = False
    engine: str = "py-spy"
    accounting: bool = True

    def check(self, *, continuous: bool = False) -> SamplerOptions:
        """These options, checked; ``continuous``: the bounds of adaptive windows.

        Raises:
            ProfileError: a value out of its bounds or a contradiction, naming what is allowed.
        """
        if self.mode not in ("cpu", "wall"):
            raise ProfileError(f"mode {self.mode!r} is not one of: cpu, wall")
        if self.engine not in ("py-spy", "perf"):
            raise ProfileError(f"engine {self.engine!r} is not one of: py-spy, perf")
        lo, hi = CONTINUOUS_RATE if continuous else ONE_OFF_RATE
        what = "continuous (adaptive) sampling" if continuous else "a one-off record"
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, int) or not lo <= self.rate_hz <= hi:
            raise ProfileError(f"rate_hz {self.rate_hz!r} is out of bounds: {what} allows whole numbers "
                               f"from {lo} to {hi} Hz")
        if self.native and self.nonblocking:
            raise ProfileError("native=True needs blocking sampling (py-spy pauses the target to unwind native "
                               "stacks); leave nonblocking unset or False")
        if self.gil and self.mode == "wall":
            raise ProfileError("gil=True keeps only the thread holding the GIL, which contradicts wall mode (its "
                               "point is the idle threads); use mode='cpu' or leave gil unset")
        if self.engine == "perf" and self.mode != "cpu":
            raise ProfileError("engine 'perf' samples on-CPU stacks only: use mode='cpu'")
        return self


def find_pyspy() -> str:
    """py-spy next to this interpreter (the venv's), else on PATH.

    Raises:
        ProfilerUnavailable: neither.
    """
    here = Path(sys.executable).parent / "py-spy"
    if here.is_file():
        return str(here)
    found = shutil.which("py-spy")
    if found is None:
        raise ProfilerUnavailable("py-spy is not installed (next to the Python running novatune, nor on PATH); "
                                  "it comes with novatune's dependencies: pip install py-spy")
    return found


def _check_duration(duration_s: float) -> float:
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s) \
            or not 0 < duration_s <= MAX_DURATION_S:
        raise ProfileError(f"duration_s {duration_s!r} is out of bounds: more than 0 and at most "
                           f"{MAX_DURATION_S:g} s")
    return float(duration_s)


@dataclass(frozen=True)
class _Log:
    samples: int
    errors: int
    behind_s: float
    exited: bool
    text: str


def _read_log(path: Path) -> _Log:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[-65536:]
    except OSError:
        text = ""
    m = _SAMPLES.search(text)
    behind = [float(x) for x in _BEHIND.findall(text)]
    return _Log(int(m[1]) if m else 0, int(m[2]) if m else 0, max(behind, default=0.0),
                "process exited" in text, text)


def _failure(info: TargetInfo, log: _Log, returncode: int) -> ProfileError:
    """The error of a window that produced no file."""
    alive = read_proc(Path("/proc"), info.pid) is not None
    tail = " | ".join(line.strip() for line in log.text.splitlines()
                      if line.strip() and not line.startswith(("Stack backtrace", "   "))
                      and not re.match(r"\s*\d+:", line))[-400:]
    if not alive:
        return ProfileTargetExited(f"pid {info.pid} ({info.comm}) exited before py-spy could sample it")
    if "python version" in log.text or "No python processes" in log.text:
        return NotAPythonProcess(f"pid {info.pid} ({info.comm}) is not a Python process py-spy can read: {tail}")
    if "ermission denied" in log.text or "not permitted" in log.text:
        return ProfilerUnavailable(f"py-spy may not attach to pid {info.pid}: {tail} (it needs root or "
                                   "CAP_SYS_PTRACE, and kernel.yama.ptrace_scope <= 1 for a non-child)")
    return ProfilerUnavailable(f"py-spy failed on pid {info.pid} (exit {returncode}): {tail or 'no output'}")


def _pyspy_argv(pid: int, rate: int, opts: SamplerOptions, nonblocking: bool, gil: bool, out: Path) -> list[str]:
    argv = [find_pyspy(), "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-t", "--full-filenames",
            "-o", str(out)]
    if opts.mode == "wall":
        argv.append("--idle")
    if opts.native:
        argv.append("--native")
    if nonblocking:
        argv.append("--nonblocking")
    if gil:
        argv.append("--gil")
    if opts.subprocesses:
        argv.append("--subprocesses")
    return argv


def record_pid(pid: int, duration_s: float, options: SamplerOptions | None = None, *,
               policy: PassivePolicy | None = None, partial_ok: bool = False, continuous: bool = False,
               stop: threading.Event | None = None, labels: Mapping[str, str] | None = None) -> Profile:
    """Profile the running process ``pid`` for ``duration_s`` seconds (one window).

    Args:
        options: how (default: CPU mode, 100 Hz, flags by thread count).
        policy: the allowed-target rule (see :func:`collectors.profiler.target.check_target`).
        partial_ok: return the samples of a target that exits mid-window, flagged ``partial``.
        continuous: check the rate against the continuous bounds (the watcher).
        stop: set it to end the window now (py-spy is interrupted; its samples so far are kept, flagged
            ``partial`` and ``stopped``).
        labels: added to ``meta.labels``.

    Raises:
        ProfileError: options or duration out of bounds.
        ProfileTargetNotFound / ProfileTargetRefused / NotAPythonProcess: see ``check_target``.
        ProfileTargetExited: the target exited before or during the window (unless ``partial_ok`` and samples).
        EmptyProfile: the window holds no sample.
        ProfilerUnavailable: py-spy (or perf) is missing or failed.
    """
    opts = (options or SamplerOptions()).check(continuous=continuous)
    duration = _check_duration(duration_s)
    info = check_target(pid, policy=policy, python=opts.engine == "py-spy")
    if opts.engine == "perf":
        from collectors.profiler import perf

        return perf.record(info, duration, rate_hz=opts.rate_hz, stop=stop, labels=labels)
    nonblocking, gil, why = budget.choose_flags(threads=info.threads, mode=opts.mode, native=opts.native,
                                                rate_hz=opts.rate_hz, nonblocking=opts.nonblocking, gil=opts.gil)
    tmp = Path(tempfile.mkdtemp(prefix="novatune-pyspy-"))
    try:
        out, log_path = tmp / "window.txt", tmp / "py-spy.log"
        mem = MemorySampler(pid) if opts.accounting else None
        before = snapshot(pid) if opts.accounting else None
        host0 = HostCpu.read()
        try:
            done = run_bounded(_pyspy_argv(pid, opts.rate_hz, opts, nonblocking, gil, out), log_path=log_path,
                               duration_s=duration, stop=stop, tick=mem.sample if mem else None, target_pid=pid)
        except OSError as err:
            raise ProfilerUnavailable(f"py-spy could not be started: {err}") from err
        busy_frac, busy_s = HostCpu.read().since(host0)
        after = snapshot(pid) if opts.accounting else None
        log = _read_log(log_path)
        text = out.read_text(encoding="utf-8", errors="replace") if out.is_file() else ""
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    exited = log.exited or read_proc(Path("/proc"), pid) is None
    if not text.strip():
        if log.samples == 0 and not exited and done.returncode == 0:
            raise EmptyProfile(f"pid {pid} ({info.comm}): no sample in {done.wall_s:.1f} s of {opts.mode} mode; "
                               "an idle process has no CPU samples: use mode='wall' to see where it waits")
        if exited:
            raise ProfileTargetExited(f"pid {pid} ({info.comm}) exited {done.wall_s:.1f} s into the "
                                      f"{duration:g} s window, before any sample")
        raise _failure(info, log, done.returncode)
    meta = ProfileMeta(mode=opts.mode, engine="py-spy", rate_hz=float(opts.rate_hz), start=done.start,
                       duration_s=round(done.wall_s, 3), pid=pid, cmdline=info.cmdline, cgroup=info.cgroup,
                       labels={**dict(labels or {}), "flags": why}, errors=log.errors, native=opts.native)
    profile = collapsed.loads(text, meta=meta)
    if exited and not done.stopped:
        if not partial_ok:
            raise ProfileTargetExited(f"pid {pid} ({info.comm}) exited {done.wall_s:.1f} s into the {duration:g} s "
                                      f"window ({profile.total} samples taken, not kept); profile a process that "
                                      "outlives the window, or launch it with `-- CMD`")
        meta.labels["partial"] = "true"
    if done.stopped:
        meta.labels.update(partial="true", stopped="true")
    figures = budget.WindowFigures(rate_hz=opts.rate_hz, window_s=done.wall_s, pyspy_cpu_s=done.cpu_s,
                                   samples=log.samples or profile.total, errors=log.errors, behind_s=log.behind_s,
                                   nonblocking=nonblocking, gil=gil, threads=info.threads,
                                   host_busy_frac=busy_frac, host_busy_cpu_s=busy_s)
    meta.overhead = budget.measure(figures)
    if before is not None and after is not None and after.tasks:  # (a reaped target has no figures left)
        meta.threads = thread_deltas(before, after)
    if mem is not None:
        meta.memory = mem.samples
        trend = leak_trend(mem.samples)
        meta.labels["memory_trend"] = trend.verdict
    return profile


def record_command(argv: list[str], duration_s: float, options: SamplerOptions | None = None, *,
                   tracemalloc: bool = False, stop: threading.Event | None = None,
                   labels: Mapping[str, str] | None = None) -> Profile:
    """Launch ``argv`` (a child novatune owns), profile it for ``duration_s`` or until it exits, then end it
    (SIGTERM to its process group, SIGKILL 5 s later) and reap it.

    A command that exits (with code 0) before the window ends gives the profile of its whole run
    (``meta.labels["exit_code"]``); one that exits with another code is an error carrying its stderr's tail.
    With ``tracemalloc`` the command runs under :mod:`collectors.profiler.tracewrap` and its top allocation
    sites come back in ``meta.allocations``.

    Raises:
        ProfileError: an empty command, options or duration out of bounds, ``tracemalloc`` for a command that
            is not ``python ...``.
        ProfileTargetExited / EmptyProfile / NotAPythonProcess / ProfilerUnavailable: as :func:`record_pid`.
    """
    from collectors.profiler import launch

    if not argv or not all(isinstance(a, str) and a for a in argv):
        raise ProfileError("the command to profile is empty (give it after `--`: -- python app.py)")
    opts = (options or SamplerOptions()).check()
    duration = _check_duration(duration_s)
    return launch.profile_child(list(argv), duration, opts, tracemalloc=tracemalloc, stop=stop, labels=labels,
                                record=record_pid)
