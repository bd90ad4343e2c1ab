"""perf for targets py-spy cannot read (``engine="perf"``): native and kernel stacks of any process.

A window runs ``perf record -e cpu-clock -F RATE -g -p PID -o <private temp dir>/perf.data`` (the software
clock: hardware events are not there in most VMs) until the window's end (SIGINT: perf writes its file),
then ``perf script -F comm,tid,ip,sym,dso`` folds every sample into the profile: a ``thread (TID): comm``
root frame, then the frames root first, ``kind="kernel"`` for ``[kernel.kallsyms]`` frames and
``kind="native"`` for the rest (``function`` the symbol, ``file`` the binary or library). CPU mode only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from collectors.passive.allowed import read_proc
from collectors.profiler.model import Frame, FrameKind, Profile, ProfileMeta
from collectors.profiler.runner import run_bounded
from collectors.profiler.target import EmptyProfile, ProfilerUnavailable, ProfileTargetExited, TargetInfo

__all__ = ["find_perf", "fold_script", "record"]

_SCRIPT_TIMEOUT_S = 300.0


def find_perf() -> str:
    """perf on PATH. Raises: ProfilerUnavailable: it is not installed."""
    found = shutil.which("perf")
    if found is None:
        raise ProfilerUnavailable("perf is not installed (Debian: apt-get install linux-perf); engine='perf' needs it")
    return found


def _frame(line: str) -> Frame | None:
    """``ip sym (dso)`` as a frame; None for a line that is not one."""
    parts = line.strip().split(None, 1)
    if len(parts) < 2:
        return None
    rest = parts[1]
    dso = ""
    if rest.endswith(")") and " (" in rest:
        rest, _, dso = rest.rpartition(" (")
        dso = dso[:-1]
    sym = rest.strip() or "[unknown]"
    kind: FrameKind = "kernel" if "kernel.kallsyms" in dso or dso.startswith("[kernel") else "native"
    return Frame(function=sym, file=dso, kind=kind)


def fold_script(text: str, meta: ProfileMeta | None = None) -> Profile:
    """The profile ``perf script -F comm,tid,ip,sym,dso`` output holds (blocks: a ``comm tid`` line, then the
    frames leaf first, then a blank line). Never raises; a block without frames counts as its thread alone."""
    prof = Profile(meta)
    header: str | None = None
    frames: list[Frame] = []

    def flush() -> None:
        if header is None:
            return
        comm, _, tid = header.strip().rpartition(" ")
        root = Frame(function=f"thread ({tid}): {comm.strip()}" if tid.isdigit() else header.strip(), kind="thread")
        prof.add([root, *reversed(frames)], 1)

    for line in text.splitlines():
        if not line.strip():
            flush()
            header, frames = None, []
        elif line[:1].isspace():
            frame = _frame(line)
            if frame is not None and header is not None:
                frames.append(frame)
        else:
            flush()
            header, frames = line, []
    flush()
    return prof


def record(info: TargetInfo, duration_s: float, *, rate_hz: int, stop: threading.Event | None = None,
           labels: Mapping[str, str] | None = None) -> Profile:
    """One perf window of ``info.pid`` (already checked by the caller).

    Raises:
        ProfilerUnavailable: perf is missing, cannot start, or fails.
        ProfileTargetExited: the target exited before any sample.
        EmptyProfile: no sample (an idle process).
    """
    perf = find_perf()
    tmp = Path(tempfile.mkdtemp(prefix="novatune-perf-"))
    try:
        data = tmp / "perf.data"
        argv = [perf, "record", "-e", "cpu-clock", "-F", str(rate_hz), "-g", "-p", str(info.pid), "-o", str(data)]
        try:
            done = run_bounded(argv, log_path=tmp / "perf.log", duration_s=duration_s, stop=stop)
        except OSError as err:
            raise ProfilerUnavailable(f"perf could not be started: {err}") from err
        log = (tmp / "perf.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        if not data.is_file():
            if read_proc(Path("/proc"), info.pid) is None:
                raise ProfileTargetExited(f"pid {info.pid} ({info.comm}) exited before perf could sample it")
            raise ProfilerUnavailable(f"perf record failed on pid {info.pid} (exit {done.returncode}): "
                                      f"{log.strip()[-400:] or 'no output'}")
        try:
            script = subprocess.run([perf, "script", "-i", str(data), "-F", "comm,tid,ip,sym,dso"],
                                    stdin=subprocess.DEVNULL, capture_output=True, timeout=_SCRIPT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ProfilerUnavailable(f"perf script failed: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = ProfileMeta(mode="cpu", engine="perf", rate_hz=float(rate_hz), start=done.start,
                       duration_s=round(done.wall_s, 3), pid=info.pid, cmdline=info.cmdline, cgroup=info.cgroup,
                       labels=dict(labels or {}), native=True,
                       overhead={"rate_hz": float(rate_hz),
                                 "perf_cpu_pct": round(100.0 * done.cpu_s / max(done.wall_s, 1e-3), 4)})
    profile = fold_script(script.stdout.decode("utf-8", "replace"), meta)
    if not profile.samples:
        if read_proc(Path("/proc"), info.pid) is None:
            raise ProfileTargetExited(f"pid {info.pid} ({info.comm}) exited before perf took a sample")
        raise EmptyProfile(f"pid {info.pid} ({info.comm}): perf took no on-CPU sample in {done.wall_s:.1f} s "
                           "(an idle process has none)")
    if done.stopped:
        meta.labels.update(partial="true", stopped="true")
    return profile
