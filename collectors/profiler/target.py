"""What may be profiled, and the errors a profiling target raises.

:func:`check_target` is asked before any sampler attaches: the pid exists (else
:class:`ProfileTargetNotFound`, 404), it is allowed (else :class:`ProfileTargetRefused`, 403) and, for py-spy,
it runs Python (else :class:`NotAPythonProcess`, naming ``engine="perf"`` when ``perf`` is on PATH).

**Which pids are allowed** is :class:`collectors.passive.allowed.PassivePolicy`'s one rule, the same a passive
study's targets obey: with a ``policy`` (the operator's ``allowed_targets``; the CLI and the API pass one),
a pid must be named by it; without one (``policy=None``: in-process callers that launched the target, such
as the study loop and :func:`collectors.profiler.sampler.record_command`), only the rule's "never" half
applies (pid 1, kernel threads and novatune itself are never profiled: py-spy's blocking mode pauses its
target).

**Python or not** is decided from ``/proc``: the executable's name or a mapped file (``libpython3.X.so``,
the interpreter) starting with ``python``/``libpython``. It covers CPython, embedded interpreters that link
libpython (uwsgi, mod_wsgi, PyInstaller's unpacked library); an interpreter statically linked into a binary
whose name says nothing of Python is refused — ``engine="perf"`` samples it natively.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from collectors.passive.allowed import PassivePolicy, TargetRefused, never_target, read_proc
from collectors.profiler.model import ProfileError

__all__ = [
    "EmptyProfile",
    "NotAPythonProcess",
    "ProfileTargetError",
    "ProfileTargetExited",
    "ProfileTargetNotFound",
    "ProfileTargetRefused",
    "ProfilerUnavailable",
    "TargetInfo",
    "cgroup_of",
    "cgroup_pids",
    "check_pid_value",
    "check_target",
    "is_python",
    "thread_count",
]

_MAX_CGROUPS = 4096  # bound on the cgroups below a watched cgroup that are read


class ProfileTargetError(ProfileError):
    """A profiling target cannot be profiled as asked (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class ProfileTargetNotFound(ProfileTargetError):
    """No process has that pid (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class ProfileTargetRefused(ProfileTargetError):
    """The pid is not an allowed target (exit 2, HTTP 403)."""

    exit_code = 2
    http_status = 403


class NotAPythonProcess(ProfileTargetError):
    """py-spy profiles Python processes only (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class ProfileTargetExited(ProfileTargetError):
    """The target exited before or during the window (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class EmptyProfile(ProfileTargetError):
    """The window holds no sample (an idle target in CPU mode, a target that exited at once); never returned as
    an empty profile (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class ProfilerUnavailable(ProfileError):
    """The sampler (py-spy, perf) is missing or failed for a reason of its own (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


@dataclass(frozen=True)
class TargetInfo:
    """What :func:`check_target` found of the target."""

    pid: int
    comm: str
    cmdline: str
    exe: str
    threads: int
    cgroup: str
    python: bool


def check_pid_value(pid: object) -> int:
    """``pid`` as a positive int. Raises: ProfileError: not an integer > 0."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ProfileError(f"pid must be a positive integer, not {pid!r}")
    return pid


def thread_count(pid: int, *, proc: Path = Path("/proc")) -> int:
    """The target's thread count (``Threads:`` of ``/proc/PID/status``); 0 when it is not readable."""
    try:
        for line in (proc / str(pid) / "status").read_text(encoding="latin-1").splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cgroup_of(pid: int, *, proc: Path = Path("/proc")) -> str:
    """The target's cgroup as ``/proc/PID/cgroup`` shows it: the v2 path (``0::``) when there is one, else the
    ``cpu`` controller's, else the first line's; "" when unreadable."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text(encoding="latin-1").splitlines()
    except OSError:
        return ""
    entries = [line.split(":", 2) for line in lines if line.count(":") >= 2]
    for hid, _, path in entries:
        if hid == "0":
            return path
    for _, controllers, path in entries:
        if "cpu" in controllers.split(","):
            return path
    return entries[0][2] if entries else ""


def is_python(pid: int, *, proc: Path = Path("/proc")) -> bool:
    """Whether the process runs a Python interpreter (see the module docstring for the rule)."""
    base = proc / str(pid)
    try:
        exe = os.readlink(base / "exe")
    except OSError:
        exe = ""
    if os.path.basename(exe).startswith("python"):
        return True
    try:
        with open(base / "maps", encoding="latin-1") as fh:
            for line in fh:
                path = line.rpartition(" ")[2].strip()
                name = os.path.basename(path)
                if name.startswith(("libpython", "python")):
                    return True
    except OSError:
        return False
    return False


def _not_python_message(info: TargetInfo) -> str:
    msg = (f"pid {info.pid} ({info.comm}, {info.exe or 'executable unknown'}) is not a Python process: "
           "py-spy profiles Python processes only")
    if shutil.which("perf"):
        msg += '; perf is on PATH, so engine="perf" (--engine perf) samples its native and kernel stacks'
    else:
        msg += "; perf (Debian package linux-perf) is not installed, so nothing here can sample it"
    return msg


def check_target(pid: int, *, policy: PassivePolicy | None = None, python: bool = True,
                 proc: Path = Path("/proc")) -> TargetInfo:
    """Check that ``pid`` may be profiled now, and say what it is.

    Args:
        pid: the target.
        policy: the allowed-target rule (None: only its "never" half; see the module docstring).
        python: require a Python process (py-spy); False for ``engine="perf"``.
        proc: where ``/proc`` is (tests).

    Raises:
        ProfileError: ``pid`` is not a positive integer (422).
        ProfileTargetNotFound: no such process, or a zombie (404).
        ProfileTargetRefused: the policy does not allow it, or it is never a target (403).
        NotAPythonProcess: ``python`` is asked and it does not run Python (422).
    """
    check_pid_value(pid)
    found = read_proc(proc, pid)
    if found is None:
        raise ProfileTargetNotFound(f"no process has pid {pid} (it never ran, exited, or is a zombie)")
    if policy is not None:
        try:
            policy.check_pids([pid])
        except TargetRefused as err:
            raise ProfileTargetRefused(f"profiling refused: {err}") from err
    else:
        reason = never_target([pid], proc=proc)
        if reason is not None:
            raise ProfileTargetRefused(f"profiling refused: {reason}; pid 1, kernel threads and novatune itself "
                                       "are never profiled")
    info = TargetInfo(pid=pid, comm=found.comm, cmdline=" ".join(found.cmdline), exe=found.exe or "",
                      threads=thread_count(pid, proc=proc), cgroup=cgroup_of(pid, proc=proc),
                      python=is_python(pid, proc=proc))
    if python and not info.python:
        raise NotAPythonProcess(_not_python_message(info))
    return info


def cgroup_pids(path: Path, *, policy: PassivePolicy | None = None) -> list[int]:
    """The pids in the cgroup directory ``path`` (v1 or v2) and the cgroups below it, sorted.

    With a ``policy`` the cgroup itself is checked by :meth:`PassivePolicy.check_cgroup` first (each pid is
    checked again when it is profiled).

    Raises:
        ProfileTargetNotFound: ``path`` is not a cgroup directory (no ``cgroup.procs``).
        ProfileTargetRefused: the policy refuses the cgroup.
    """
    if not (path / "cgroup.procs").is_file():
        raise ProfileTargetNotFound(f"{path} is not a cgroup directory (it has no cgroup.procs); give a directory "
                                    "under /sys/fs/cgroup (v2) or /sys/fs/cgroup/<controller> (v1)")
    if policy is not None:
        try:
            policy.check_cgroup(path)
        except TargetRefused as err:
            raise ProfileTargetRefused(f"profiling refused: {err}") from err
    pids: set[int] = set()
    for n, (dirpath, dirnames, _) in enumerate(os.walk(path)):
        if n >= _MAX_CGROUPS:
            break
        dirnames[:] = sorted(dirnames)
        try:
            text = (Path(dirpath) / "cgroup.procs").read_text(encoding="ascii")
        except OSError:
            continue
        pids.update(int(x) for x in text.split() if x.isdigit())
    return sorted(pids)
