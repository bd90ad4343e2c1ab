"""One sampler process (py-spy, perf) run for a window: bounded in time, stoppable, always reaped.

:func:`run_bounded` starts the process in its own session with its output in a file, polls it every 50 ms
(calling ``tick`` about every ``tick_every_s``: memory samples), interrupts it (SIGINT: py-spy and perf both
write what they have and exit) at the window's end or as soon as the ``stop`` event is set, kills it if it is
still there 0.7 s after a stop (10 s after the window's end), and reaps it with ``wait4`` so its CPU time
(user + system, all its threads) is exact. A target left stopped by a killed tracer is continued (SIGCONT).

:class:`HostCpu` is the host's busy CPU between two reads of ``/proc/stat``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finished", "HostCpu", "run_bounded"]

_POLL_S = 0.05
_KILL_AFTER_S = 0.7  # after a stop: the caller asked to stop now
_WRITE_GRACE_S = 10.0  # after the deadline: time to write the window's file


@dataclass(frozen=True)
class Finished:
    """How the sampler process ended: its exit code (negative: the signal), CPU seconds, wall seconds, start
    (epoch), whether it was interrupted because ``stop`` was set, and whether it had to be killed."""

    returncode: int
    cpu_s: float
    wall_s: float
    start: float
    stopped: bool
    overran: bool


def _continue_if_stopped(pid: int | None) -> None:
    if pid is None:
        return
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="latin-1")
    except OSError:
        return
    if stat[stat.rfind(")") + 2:][:1] in ("T", "t"):
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass


def run_bounded(argv: Sequence[str], *, log_path: Path, duration_s: float, stop: threading.Event | None = None,
                tick: Callable[[], None] | None = None, tick_every_s: float = 1.0,
                target_pid: int | None = None) -> Finished:
    """Run ``argv`` for ``duration_s`` (then SIGINT: the sampler writes what it has and exits), its stdout and
    stderr into ``log_path``; it may end earlier by itself (its target exited, it failed).

    Raises:
        OSError: it cannot be started (the caller says which tool).
    """
    start, t0 = time.time(), time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    status, usage, reaped = 0, None, False
    stopped = overran = killed = False
    interrupted_at: float | None = None
    kill_after = _KILL_AFTER_S
    try:
        next_tick = t0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                reaped = True
                break
            now = time.monotonic()
            if tick is not None and now >= next_tick:
                tick()
                next_tick = now + tick_every_s
            if interrupted_at is None:
                stopped = stop is not None and stop.is_set()
                if stopped or now - t0 >= duration_s:
                    proc.send_signal(signal.SIGINT)
                    interrupted_at = now
                    kill_after = _KILL_AFTER_S if stopped else _WRITE_GRACE_S
            elif now - interrupted_at > kill_after and not killed:
                overran = True
                proc.kill()
                killed = True
            time.sleep(_POLL_S)
    finally:
        if not reaped:  # an exception (or KeyboardInterrupt) left it running: kill and reap it
            try:
                proc.kill()
            except OSError:
                pass
            _, status, usage = os.wait4(proc.pid, 0)
            killed = True
        proc.returncode = os.waitstatus_to_exitcode(status)
        if killed:
            _continue_if_stopped(target_pid)
    assert usage is not None
    return Finished(returncode=proc.returncode, cpu_s=usage.ru_utime + usage.ru_stime,
                    wall_s=time.monotonic() - t0, start=start, stopped=stopped, overran=overran)


@dataclass(frozen=True)
class HostCpu:
    """The host's CPU counters (``/proc/stat`` ``cpu`` line, seconds) at one moment."""

    busy_s: float
    total_s: float
    ncpu: int

    @classmethod
    def read(cls) -> HostCpu:
        """Now's counters (zeros when ``/proc/stat`` is unreadable)."""
        tick = os.sysconf("SC_CLK_TCK") or 100
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return cls(0.0, 0.0, os.cpu_count() or 1)
        fields = fields[:8]  # user nice system idle iowait irq softirq steal (guest is inside user)
        total = sum(fields)
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return cls((total - idle) / tick, total / tick, os.cpu_count() or 1)

    def since(self, earlier: HostCpu) -> tuple[float, float]:
        """``(busy share of all CPUs, busy CPU seconds)`` between ``earlier`` and this read."""
        total = self.total_s - earlier.total_s
        busy = self.busy_s - earlier.busy_s
        return (busy / total if total > 0 else 0.0), max(0.0, busy)
