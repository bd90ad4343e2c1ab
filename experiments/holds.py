"""Machine-wide holds on host knobs: one process tunes a host knob at a time.

The study registry and the journal belong to one data directory; two novatune
processes with different ``NOVATUNE_HOME`` on the same machine do not see each
other there. Had both tuned ``vm.swappiness``, each would restore the value it
read at its start, and the later restore would leave the other's trial value
behind. A hold is an exclusive ``flock`` on ``<lock dir>/<knob>.lock``, taken by
the process that tunes the knob (a study's runner for the whole study; an apply
or rollback for its writes) before it reads the baseline, and released by the
kernel when that process ends, however it ends (``kill -9`` included).

The lock directory is ``$NOVATUNE_LOCK_DIR``, else ``/run/lock/novatune``
(tmpfs: nothing survives a reboot), else a per-user directory under the temp
dir when ``/run/lock`` is not writable (then only that user's processes are
coordinated; without root they cannot change host knobs anyway).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from collectors.errors import NovatuneError

__all__ = ["KnobHeld", "KnobHolds", "lock_dir"]


class KnobHeld(NovatuneError):
    """Another process holds one of the knobs (it is tuning or applying it now): exit 2, HTTP 409.

    Its callers translate it (a study: :class:`~experiments.study.manager.StudyConflict`; an apply or a
    rollback: :class:`~experiments.deploy.applications.ApplyConflict`), so it reaches a face only through them.
    """

    exit_code = 2
    http_status = 409


def lock_dir() -> Path:
    env = os.environ.get("NOVATUNE_LOCK_DIR")
    if env:
        return Path(env)
    run = Path("/run/lock")
    if run.is_dir() and os.access(run, os.W_OK):
        return run / "novatune"
    return Path(tempfile.gettempdir()) / f"novatune-locks-{os.getuid()}"


class KnobHolds:
    """Exclusive holds on ``knobs`` for this process, described by ``owner`` (shown to the others).

    Use as a context manager or call :meth:`acquire` / :meth:`release`. :meth:`acquire` takes all or
    none: when one knob is held elsewhere, it releases what it took and raises :class:`KnobHeld` naming
    the knob and its holder.
    """

    def __init__(self, knobs: list[str], owner: str) -> None:
        self.knobs = sorted(set(knobs))  # one order for everyone: no lock-order deadlock
        self.owner = owner
        self._fds: list[int] = []

    def acquire(self) -> KnobHolds:
        if self._fds:
            return self
        d = lock_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            for knob in self.knobs:
                fd = os.open(d / f"{knob}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise KnobHeld(f"{knob} is held by {holder}; one process tunes a host knob at a time") from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{self.owner} (pid {os.getpid()})\n".encode(), 0)
                self._fds.append(fd)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the last descriptor drops the flock
        self._fds = []

    def __enter__(self) -> KnobHolds:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
