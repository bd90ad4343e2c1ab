"""Continuous profiling: a sequence of windows of one pid, or of every Python process of a cgroup.

py-spy cannot hand over samples while it records, so continuous profiling is windows (10..60 s, default 30),
each handed to ``on_window`` as it completes (the store puts it). Between windows the rate of each pid
follows the overhead budget (:func:`collectors.profiler.budget.next_window`: the measured cost of the last
window; flags left None are chosen again by thread count at the new rate). Every window's ``meta.overhead``
holds its rate and measured overhead, plus ``next_rate_hz``; its ``meta.labels["memory_trend"]`` is the trend
of the pid's memory over the whole watch, not just the window.

**A cgroup** (v1 or v2 directory): its ``cgroup.procs`` (and those below it) are read before each window,
its Python processes (:func:`collectors.profiler.target.is_python`) sampled side by side (at most
``max_pids``), each checked against the policy as it is profiled; a process that leaves or exits drops out,
new ones join, and an empty cgroup is polled until it has one again or is removed.

**Stopping**: set the ``stop`` event; the running py-spy processes are interrupted at once (killed 0.7 s
later if need be) and reaped, so :meth:`Watcher.run` returns within about a second. A watched pid that exits
ends the watch (its last, partial window is handed over, flagged ``partial``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from collectors.passive.allowed import PassivePolicy, read_proc
from collectors.profiler import budget
from collectors.profiler.memory import leak_trend
from collectors.profiler.model import Profile, ProfileError
from collectors.profiler.sampler import SamplerOptions, record_pid
from collectors.profiler.target import (
    EmptyProfile,
    ProfileTargetExited,
    ProfileTargetNotFound,
    cgroup_pids,
    check_target,
    is_python,
)

__all__ = ["WINDOW_BOUNDS", "Watcher"]

log = logging.getLogger(__name__)

#: a window's bounds (seconds)
WINDOW_BOUNDS = (10.0, 60.0)
_MEMORY_KEEP = 4 * 3600  # memory samples kept per pid for the trend (one an s, ~4 h)


@dataclass
class _PidState:
    rate_hz: int
    windows: int = 0
    last: dict[str, float] = field(default_factory=dict)
    memory: list[dict[str, float]] = field(default_factory=list)
    gone: bool = False


class Watcher:
    """Windows of ``pid`` or of the Python processes of ``cgroup``, each handed to ``on_window``.

    Args:
        on_window: called (in :meth:`run`'s thread) with each completed window.
        pid / cgroup: the target (exactly one).
        window_s: each window's length, 10..60 s.
        options: how to sample; ``rate_hz`` is the starting rate (5..100 Hz).
        config: the overhead budget.
        policy: the allowed-target rule (see :func:`collectors.profiler.target.check_target`).
        labels: added to every window's labels (``target``, ``window`` and ``cgroup`` are set here).
        on_error: called with ``(pid, error)`` for a window that gave no profile (an idle target in CPU mode, a
            pid refused); the watch goes on.
        max_windows: end after this many windows (None: until stopped).
        max_pids: at most this many processes of a cgroup are sampled at once.

    Raises:
        ProfileError: both or neither target, a window or rate out of bounds.
        ProfileTargetNotFound / ProfileTargetRefused / NotAPythonProcess: the target, checked at once.
    """

    def __init__(self, *, on_window: Callable[[Profile], None], pid: int | None = None,
                 cgroup: str | Path | None = None, window_s: float = 30.0, options: SamplerOptions | None = None,
                 config: budget.BudgetConfig | None = None, policy: PassivePolicy | None = None,
                 labels: Mapping[str, str] | None = None,
                 on_error: Callable[[int, ProfileError], None] | None = None,
                 max_windows: int | None = None, max_pids: int = 16) -> None:
        if (pid is None) == (cgroup is None):
            raise ProfileError("watch one target: a pid or a cgroup path (not both, not neither)")
        lo, hi = WINDOW_BOUNDS
        if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not lo <= window_s <= hi:
            raise ProfileError(f"window_s {window_s!r} is out of bounds: a window lasts {lo:g} to {hi:g} s")
        self.options = (options or SamplerOptions()).check(continuous=True)
        self.config = config if config is not None else budget.BudgetConfig(max_hz=self.options.rate_hz)
        self.on_window, self.on_error = on_window, on_error
        self.pid, self.cgroup = pid, Path(cgroup) if cgroup is not None else None
        self.window_s, self.policy = float(window_s), policy
        self.max_windows, self.max_pids = max_windows, max_pids
        self.labels = dict(labels or {})
        self.windows = 0
        self.ended = ""
        self.running = False
        self._state: dict[int, _PidState] = {}
        self._lock = threading.Lock()
        if pid is not None:
            check_target(pid, policy=policy, python=self.options.engine == "py-spy")
        else:
            assert self.cgroup is not None
            cgroup_pids(self.cgroup, policy=policy)

    # ------------------------------------------------------------------ targets
    def _targets(self) -> list[int] | None:
        """This window's pids; None when the watch is over (the pid exited, the cgroup was removed)."""
        if self.pid is not None:
            return None if read_proc(Path("/proc"), self.pid) is None else [self.pid]
        assert self.cgroup is not None
        try:
            pids = cgroup_pids(self.cgroup, policy=self.policy)
        except ProfileTargetNotFound:
            return None
        return [p for p in pids if is_python(p)][: self.max_pids]

    def _target_label(self) -> str:
        return f"pid:{self.pid}" if self.pid is not None else f"cgroup:{self.cgroup}"

    # ------------------------------------------------------------------ one window of one pid
    def _window(self, pid: int, stop: threading.Event) -> Profile | ProfileError | None:
        with self._lock:
            st = self._state.setdefault(pid, _PidState(rate_hz=self.options.rate_hz))
        opts = replace(self.options, rate_hz=st.rate_hz)
        labels = {**self.labels, "target": self._target_label(), "window": str(self.windows + 1)}
        try:
            return record_pid(pid, self.window_s, opts, policy=self.policy, partial_ok=True, continuous=True,
                              stop=stop, labels=labels)
        except (ProfileTargetExited, ProfileTargetNotFound):
            st.gone = True
            return None
        except ProfileError as err:
            return err

    def _adapt(self, pid: int, prof: Profile, t_offset: float) -> None:
        """The next rate of ``pid`` from this window's overhead; the memory trend over the whole watch."""
        st = self._state[pid]
        fig = budget.WindowFigures.from_overhead(prof.meta.overhead)
        decision = budget.next_window(fig, self.config, mode=self.options.mode, native=self.options.native,
                                      nonblocking=self.options.nonblocking, gil=self.options.gil)
        prof.meta.overhead["next_rate_hz"] = float(decision.rate_hz)
        prof.meta.labels["budget"] = decision.reason
        st.rate_hz, st.windows, st.last = decision.rate_hz, st.windows + 1, dict(prof.meta.overhead)
        st.memory.extend({**row, "t": round(row["t"] + t_offset, 3)} for row in prof.meta.memory)
        del st.memory[:-_MEMORY_KEEP]
        if st.memory:
            prof.meta.labels["memory_trend"] = leak_trend(st.memory).verdict

    # ------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event) -> str:
        """Windows until ``stop`` is set, the target is gone or ``max_windows`` are done; returns why it ended
        ("stopped", "target exited", "cgroup removed", "max windows")."""
        self.running = True
        t0 = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=self.max_pids, thread_name_prefix="novatune-watch") as pool:
                while not stop.is_set():
                    pids = self._targets()
                    if pids is None:
                        self.ended = "target exited" if self.pid is not None else "cgroup removed"
                        return self.ended
                    if not pids:
                        stop.wait(min(self.window_s, 5.0))
                        continue
                    start = time.monotonic() - t0
                    results = list(zip(pids, pool.map(lambda p: self._window(p, stop), pids)))
                    self._hand_over(results, start)
                    if self.pid is not None and self._state[self.pid].gone:
                        self.ended = "target exited"
                        return self.ended
                    if self.max_windows is not None and self.windows >= self.max_windows:
                        self.ended = "max windows"
                        return self.ended
            self.ended = "stopped"
            return self.ended
        finally:
            self.running = False
            if not self.ended:
                self.ended = "failed"

    def _hand_over(self, results: list[tuple[int, Profile | ProfileError | None]], start: float) -> None:
        handed = False
        for pid, got in results:
            if isinstance(got, Profile):
                self._adapt(pid, got, start)
                self.on_window(got)
                handed = True
                if got.meta.labels.get("partial") == "true" and self.pid is None:
                    self._state[pid].gone = read_proc(Path("/proc"), pid) is None
            elif isinstance(got, ProfileError):
                if isinstance(got, EmptyProfile):
                    log.info("profile watch: %s", got)
                if self.on_error is not None:
                    self.on_error(pid, got)
        if handed:
            self.windows += 1
        with self._lock:
            for pid in [p for p, st in self._state.items() if st.gone and p != self.pid]:
                del self._state[pid]

    def start(self, stop: threading.Event) -> threading.Thread:
        """:meth:`run` in a daemon thread (started); join it after setting ``stop``."""
        thread = threading.Thread(target=self.run, args=(stop,), name="novatune-profile-watch", daemon=True)
        thread.start()
        return thread

    def status(self) -> dict[str, Any]:
        """What the watch is doing: target, window, windows done, and per pid its rate, windows and the last
        window's overhead figures (``GET /profiling/status`` and ``/profiling/overhead`` show it)."""
        with self._lock:
            pids = {str(pid): {"rate_hz": st.rate_hz, "windows": st.windows, "overhead": dict(st.last)}
                    for pid, st in self._state.items()}
        return {"target": self._target_label(), "window_s": self.window_s, "windows": self.windows,
                "running": self.running, "ended": self.ended, "budget_pct": self.config.budget_pct,
                "mode": self.options.mode, "pids": pids}
