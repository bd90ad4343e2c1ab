"""Machine-wide holds on host knobs: one process tunes a host knob at a time.

The study registry and the journal belong to one data directory; two novatune
processes with different ``NOVATUNE_HOME`` on the same machine do not see each
other there. Had both tuned ``vm.swappiness``, each would restore the value it
read at its start, and the later restore would leave the other's trial value
behind. A hold is an exclusive ``flock`` on ``<lock dir>/<knob>.lock``, taken by
the process that tunes the knob (a study's runner for the whole study; an apply
or rollback for its writes) before it reads the baseline, and released by the
kernel when that process ends, however it ends (``kill -9`` included).

The lock directory is ``$NOVATUNE_LOCK_DIR``, else, for root,
``/run/novatune/locks`` (tmpfs: nothing survives a reboot; ``/run`` is root's
and not writable by others, unlike ``/run/lock``), else a per-user directory
``novatune-locks-<uid>`` under the temp dir (then only that user's processes
are coordinated; without root they cannot change host knobs anyway). Whichever
it is, it must pass :func:`experiments.safefs.private_dir` (created 0700, owned
by this user, not writable by others, nor any directory on the way): a lock
directory another user could write in would let them plant links or hold every
knob. A lock file is opened with ``O_NOFOLLOW`` and created 0600, and written
only after ``fstat`` shows a regular file of this user with one link.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path

from collectors.errors import NovatuneError
from experiments.safefs import UnsafeLocation, describe_owner, private_dir

__all__ = ["ROOT_LOCK_DIR", "KnobHeld", "KnobHolds", "lock_dir", "open_lock_file"]


class KnobHeld(NovatuneError):
    """Another process holds one of the knobs (it is tuning or applying it now): exit 2, HTTP 409.

    Its callers translate it (a study: :class:`~experiments.study.manager.StudyConflict`; an apply or a
    rollback: :class:`~experiments.deploy.applications.ApplyConflict`), so it reaches a face only through them.
    """

    exit_code = 2
    http_status = 409


#: root's lock directory (``/run`` is root's, 0755, tmpfs)
ROOT_LOCK_DIR = Path("/run/novatune/locks")


def lock_dir() -> Path:
    """The lock directory (module docstring), created 0700 when missing and checked.

    Raises:
        UnsafeLocation: it, or a directory on the way, is another user's or writable by others.
        OSError: it cannot be created.
    """
    env = os.environ.get("NOVATUNE_LOCK_DIR")
    if env:
        return private_dir(env, what="the lock directory ($NOVATUNE_LOCK_DIR)", create=True,
                           hint="or point NOVATUNE_LOCK_DIR at a directory of your own")
    if os.geteuid() == 0 and ROOT_LOCK_DIR.parent.parent.is_dir():
        return private_dir(ROOT_LOCK_DIR, what="the lock directory", create=True,
                           hint="or set NOVATUNE_LOCK_DIR to a directory of root's")
    return private_dir(Path(tempfile.gettempdir()) / f"novatune-locks-{os.getuid()}", what="the lock directory",
                       create=True, hint="or set NOVATUNE_LOCK_DIR to a directory of your own")


def open_lock_file(directory: Path, knob: str) -> int:
    """A descriptor on ``<directory>/<knob>.lock``, created 0600: opened with ``O_NOFOLLOW`` (a planted
    link is refused, never followed) and checked on the descriptor before anything is written to it.

    Raises:
        UnsafeLocation: the knob name is not one path component, or the lock file is a symbolic link, not
            a regular file, another user's, or has another hard link.
        OSError: it cannot be opened or created.
    """
    if not knob or "/" in knob or "\0" in knob or knob.startswith("."):
        raise UnsafeLocation(f"{knob!r} cannot name a lock file: a knob name is one path component")
    path = directory / f"{knob}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafeLocation(f"the lock file {path} is a symbolic link; a lock file is a regular file of "
                                 "novatune's own: remove the link") from None
        raise
    st = os.fstat(fd)
    problem = ("not a regular file" if not stat.S_ISREG(st.st_mode) else
               "not novatune's user's" if st.st_uid != os.geteuid() else
               f"linked {st.st_nlink} times (a hard link to another file)" if st.st_nlink != 1 else None)
    if problem:
        os.close(fd)
        raise UnsafeLocation(f"the lock file {path} is {describe_owner(st)}: {problem}; a lock file is a regular "
                             "file of novatune's own with one link: remove it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.fchmod(fd, 0o600)  # ours (an older novatune made it 0644): no one else may open it, hence hold it
    return fd


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
        try:
            for knob in self.knobs:
                fd = open_lock_file(d, knob)
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
