"""Profiling sessions: a one-off recording (``novatune profile record``), a continuous watch (``novatune
profile watch``) and the service's background sessions (``/profiling/sessions``), each window stored in
the profile store as it completes.

Who may be profiled is one rule, :func:`collectors.profiler.target.check_target` with the settings'
``allowed_targets`` (:func:`policy`): a pid or cgroup novatune did not start must be an allowed target;
pid 1, kernel threads and novatune itself never are. A command novatune starts (``-- CMD``) is its own.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from collectors.passive.allowed import PassivePolicy
from collectors.profiler.model import Profile, ProfileError
from collectors.profiler.sampler import SamplerOptions, record_command, record_pid
from collectors.profiler.store import ProfileStore
from experiments.settings import Settings

__all__ = ["ProfilingSessions", "SessionConflict", "UnknownSession", "policy", "record_once", "watch"]

log = logging.getLogger(__name__)

#: a one-off recording or a background session lasts at most this long
MAX_DURATION_S = 24 * 3600.0


class UnknownSession(NovatuneError, LookupError):
    """No profiling session has that id (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class SessionConflict(NovatuneError):
    """A profiling session cannot start now: too many running, or that process is already profiled
    (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


def policy(settings: Settings) -> PassivePolicy:
    """The allowed-target rule of ``settings`` (the same one passive studies use)."""
    return PassivePolicy.of(settings.allowed_targets, settings.allowed_probe_hosts)


def _rate(rate_hz: float) -> int:
    if isinstance(rate_hz, bool) or not float(rate_hz).is_integer():
        raise ProfileError(f"rate {rate_hz!r} Hz is not a whole number of samples per second")
    return int(rate_hz)


def _duration(duration_s: float, *, low: float = 1.0, high: float = MAX_DURATION_S) -> float:
    if not low <= duration_s <= high:
        raise ProfileError(f"duration {duration_s:g} s is out of bounds; allowed: {low:g} to {high:g} s")
    return float(duration_s)


def record_once(*, pid: int | None, command: list[str], duration_s: float, rate_hz: float, mode: str,
                native: bool, settings: Settings, store: ProfileStore | None, engine: str = "py-spy",
                labels: dict[str, str] | None = None,
                stop: threading.Event | None = None) -> tuple[Profile, str | None]:
    """One window of ``pid`` (an allowed target) or of ``command`` (started, profiled, stopped, reaped), at
    most one sampler window (1..3600 s); stored when ``store`` is given. Returns the profile and its stored
    id. ``engine``: "py-spy" (Python processes) or "perf" (any process; native and kernel stacks). Setting
    ``stop`` ends the window early: the samples so far are kept (labelled ``partial``, ``stopped``).

    Raises:
        ProfileError (and its subclasses): a bound, the target (missing, refused, not Python, exited), py-spy.
    """
    from collectors.profiler.sampler import MAX_DURATION_S as WINDOW_MAX_S

    opts = SamplerOptions(mode=mode, rate_hz=_rate(rate_hz), native=native, engine=engine).check()
    dur = _duration(duration_s, high=WINDOW_MAX_S)
    tags = {"source": "record", **(labels or {})}
    if pid is not None:
        prof = record_pid(pid, dur, opts, policy=policy(settings), labels=tags, stop=stop)
    else:
        prof = record_command(command, dur, opts, labels=tags, stop=stop)
    return prof, store.put(prof) if store is not None else None


def _budget(settings: Settings, rate_hz: int) -> Any:
    from collectors.profiler.budget import BudgetConfig

    return BudgetConfig(budget_pct=settings.profiling_budget_pct, max_hz=rate_hz)


def _housekeeping(store: ProfileStore) -> None:
    """Old windows merged hourly, then retention (age, size); a failure is logged, never raised."""
    try:
        store.aggregate()
        store.prune()
    except (NovatuneError, OSError) as err:
        log.warning("profile store housekeeping failed: %s", err)


def watch(*, pid: int | None, cgroup: str | None, window_s: float, rate_hz: float, mode: str, settings: Settings,
          store: ProfileStore, max_windows: int | None = None,
          on_window: Callable[[str, Profile], None] | None = None,
          on_error: Callable[[int, ProfileError], None] | None = None, stop: threading.Event | None = None) -> int:
    """Continuous profiling of ``pid`` or of ``cgroup``'s Python processes until Ctrl-C, ``stop`` or
    ``max_windows``; each window stored as it completes (and handed to ``on_window`` with its id; a window that
    gave no profile, e.g. an idle target in CPU mode, to ``on_error`` with its pid). Returns the number of
    windows stored. Ctrl-C is the normal way out: py-spy is stopped and reaped, the window so far stored.

    Raises:
        ProfileError (and its subclasses): a bound, the target (missing, refused, not Python).
    """
    from collectors.profiler.watch import Watcher

    if max_windows is not None and not 1 <= max_windows <= 100_000:
        raise ProfileError(f"--windows {max_windows}: allowed 1 to 100000")
    stored = 0

    def put(prof: Profile) -> None:
        nonlocal stored
        sid = store.put(prof)
        stored += 1
        if stored % 20 == 0:
            _housekeeping(store)
        if on_window is not None:
            on_window(sid, prof)

    rate = _rate(rate_hz)
    watcher = Watcher(on_window=put, pid=pid, cgroup=cgroup, window_s=window_s,
                      options=SamplerOptions(mode=mode, rate_hz=rate), config=_budget(settings, rate),
                      policy=policy(settings), labels={"source": "watch"}, max_windows=max_windows,
                      on_error=on_error)
    stop = stop or threading.Event()
    done = threading.Event()

    def run() -> None:
        try:
            watcher.run(stop)
        finally:
            done.set()

    # waited on through an Event: a KeyboardInterrupt inside Thread.join() marks the thread as ended on
    # CPython < 3.12, so a join after Ctrl-C would return at once and lose the window being stopped
    threading.Thread(target=run, name="novatune-profile-watch", daemon=True).start()
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        stop.set()
        done.wait(15)
    _housekeeping(store)
    return stored


@dataclass
class Session:
    """One background profiling session of the service."""

    id: str
    pid: int
    mode: str
    rate_hz: int
    duration_s: float
    window_s: float
    native: bool
    started: float = field(default_factory=time.time)
    state: str = "running"  # running | completed | stopped | failed
    ended: str = ""
    profiles: list[str] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)  # per window: id and overhead figures
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)
    watcher: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        last = self.windows[-1] if self.windows else {}
        return {"id": self.id, "pid": self.pid, "mode": self.mode, "state": self.state, "ended": self.ended,
                "rate_hz": last.get("next_rate_hz", last.get("rate_hz", self.rate_hz)),
                "requested_rate_hz": self.rate_hz, "duration_s": self.duration_s, "window_s": self.window_s,
                "native": self.native, "started": self.started, "windows": len(self.windows),
                "profiles": list(self.profiles), "errors": self.errors[-5:]}


#: finished sessions kept for status and overhead reads
_KEEP_FINISHED = 50


class ProfilingSessions:
    """The service's background profiling sessions (``/profiling/sessions``): each runs in a thread of its
    own, its windows stored as they complete; at most ``settings.profiling_max_sessions`` at once, one per
    pid. :meth:`shutdown` stops them all (py-spy processes stopped and reaped)."""

    def __init__(self, store_dir: Path, settings: Settings) -> None:
        self.settings = settings
        self.store = ProfileStore(store_dir, retention_days=settings.profiling_retention_days,
                                  max_bytes=settings.profiling_max_bytes)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _running(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.state == "running"]

    def start(self, *, pid: int, duration_s: float, rate_hz: float, mode: str = "cpu",
              native: bool = False) -> Session:
        """A new session of ``pid`` (an allowed target) for ``duration_s``: windows of
        ``profiling_window_s`` (one window when shorter), the rate adapted to the budget.

        Raises:
            SessionConflict: too many sessions running, or ``pid`` is profiled already.
            ProfileError (and its subclasses): a bound; the pid missing, refused or not Python.
        """
        from collectors.profiler.target import check_target
        from collectors.profiler.watch import WINDOW_BOUNDS

        rate = _rate(rate_hz)
        dur = _duration(duration_s)
        opts = SamplerOptions(mode=mode, rate_hz=rate, native=native).check(continuous=True)
        with self._lock:
            running = self._running()
            if len(running) >= self.settings.profiling_max_sessions:
                raise SessionConflict(f"{len(running)} profiling sessions are running, the most allowed "
                                      f"(profiling_max_sessions); stop one first (DELETE /profiling/sessions/ID)")
            if any(s.pid == pid for s in running):
                raise SessionConflict(f"pid {pid} is profiled already by session "
                                      f"{next(s.id for s in running if s.pid == pid)}")
            rule = policy(self.settings)
            n = max(1, round(dur / self.settings.profiling_window_s))
            window = dur / n
            session = Session(id=secrets.token_hex(6), pid=pid, mode=mode, rate_hz=rate, duration_s=dur,
                              window_s=round(window, 3), native=native)
            if window >= WINDOW_BOUNDS[0]:
                from collectors.profiler.watch import Watcher

                session.watcher = Watcher(on_window=lambda p: self._put(session, p), pid=pid,
                                          window_s=min(window, WINDOW_BOUNDS[1]), options=opts,
                                          config=_budget(self.settings, rate), policy=rule,
                                          labels={"source": "api", "session": session.id}, max_windows=n,
                                          on_error=lambda _pid, e: session.errors.append(str(e)))  # checks pid
            else:
                check_target(pid, policy=rule)
            session.thread = threading.Thread(target=self._run, args=(session, opts, rule), daemon=True,
                                              name=f"novatune-profile-{session.id}")
            self._sessions[session.id] = session
            self._forget_old()
            session.thread.start()
            return session

    def _put(self, session: Session, prof: Profile) -> None:
        pid = self.store.put(prof)
        session.profiles.append(pid)
        session.windows.append({"profile_id": pid, "start": prof.meta.start, "duration_s": prof.meta.duration_s,
                                "samples": prof.total, **prof.meta.overhead})

    def _run(self, session: Session, opts: SamplerOptions, rule: PassivePolicy) -> None:
        try:
            if session.watcher is not None:
                session.ended = session.watcher.run(session.stop)
            else:  # shorter than a window: one window of the whole duration
                prof = record_pid(session.pid, session.duration_s, opts, policy=rule,
                                  partial_ok=True, stop=session.stop,
                                  labels={"source": "api", "session": session.id})
                self._put(session, prof)
                exited = prof.meta.labels.get("partial") == "true" and not session.stop.is_set()
                session.ended = "stopped" if session.stop.is_set() else "target exited" if exited else "completed"
            session.state = "stopped" if session.stop.is_set() else "completed"
        except NovatuneError as err:
            session.errors.append(str(err))
            session.state, session.ended = "failed", str(err)
        except Exception as err:
            log.exception("profiling session %s failed", session.id)
            session.state, session.ended = "failed", f"{type(err).__name__}: {err}"
        finally:
            _housekeeping(self.store)

    def _forget_old(self) -> None:
        done = [s for s in self._sessions.values() if s.state != "running"]
        for s in sorted(done, key=lambda s: s.started)[:-_KEEP_FINISHED or None]:
            del self._sessions[s.id]

    def get(self, session_id: str) -> Session:
        """Raises: UnknownSession: no session has that id."""
        found = self._sessions.get(session_id)
        if found is None:
            raise UnknownSession(f"no profiling session {session_id!r}; GET /profiling/status lists them")
        return found

    def stop(self, session_id: str, *, timeout_s: float = 15.0) -> Session:
        """Stops a session (py-spy stopped and reaped, the window so far stored); a finished one is left as is.

        Raises:
            UnknownSession: no session has that id.
        """
        session = self.get(session_id)
        session.stop.set()
        if session.thread is not None:
            session.thread.join(timeout_s)
        return session

    def status(self) -> dict[str, Any]:
        s = self.settings
        with self._lock:
            sessions = [x.to_dict() for x in self._sessions.values()]
        return {"running": sum(x["state"] == "running" for x in sessions), "sessions": sessions,
                "budget_pct": s.profiling_budget_pct, "window_s": s.profiling_window_s,
                "max_sessions": s.profiling_max_sessions, "store": self.store.stats()}

    def overhead(self) -> list[dict[str, Any]]:
        with self._lock:
            found = list(self._sessions.values())
        return [{"id": x.id, "pid": x.pid, "state": x.state, "budget_pct": self.settings.profiling_budget_pct,
                 "windows": list(x.windows)} for x in found]

    def shutdown(self) -> None:
        """Stops every running session."""
        for session in list(self._running()):
            self.stop(session.id, timeout_s=5.0)
