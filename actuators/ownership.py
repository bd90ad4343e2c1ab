"""What is provably novatune's: the one rule for signalling a process and for removing or re-tuning a cgroup.

A journal names pids and cgroups; a journal is replayed by ``recover`` at every study start. A record
alone proves nothing (pids are reused, and a record is only bytes in a file), so:

* **a process** is signalled only when :func:`check_signal` says so: never pid 1 (or 0 and negative
  pids, which signal process groups), kthreadd and kernel threads, novatune itself or one of its
  ancestors; otherwise only when the record carries the process's start time (``starttime``, field 22
  of ``/proc/<pid>/stat``, captured when the process was journaled, with the boot it was seen in) and
  the live process has that same start time (a reused pid has another one), or, for records of
  older versions that carry no start time, when the live process sits in a novatune cgroup
  (``novatune-*`` directly under a hierarchy's root) and its create time still matches;
* **a cgroup** is removed, emptied or re-tuned only when its directory is ``novatune-<name>``
  directly under ``sys/fs/cgroup`` (v2) or under one of the controllers novatune creates cgroups
  in (v1: :data:`V1_CONTROLLERS`), never through a symlink (:func:`novatune_cgroup`).

The signal itself goes through a pidfd opened before the last check (:func:`kill_verified`), so the
process checked is the process signalled.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from typing import Any

from actuators.errors import UnsafePath

__all__ = [
    "NETNS_NAME",
    "novatune_netns",
    "CGROUP_PREFIX",
    "V1_CONTROLLERS",
    "SignalCheck",
    "boot_id",
    "check_signal",
    "kill_verified",
    "never_signal",
    "novatune_cgroup",
    "novatune_cgroups_of",
    "process_starttime",
]

#: the prefix of every cgroup directory novatune creates
CGROUP_PREFIX = "novatune-"
#: the v1 hierarchies novatune creates cgroups in (``actuators.cgroup``)
V1_CONTROLLERS: tuple[str, ...] = ("cpu", "memory", "cpuset", "cpuacct", "blkio")
_CGROUP_DIR = re.compile(
    r"sys/fs/cgroup/(?:(?P<ctl>" + "|".join(V1_CONTROLLERS) + r")/)?(?P<dir>novatune-[A-Za-z0-9_.-]{1,64})"
)
_PF_KTHREAD = 0x00200000
_ANCESTOR_LIMIT = 4096


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (the command name, which may hold spaces, skipped); None if gone."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    rest = data[data.rfind(b")") + 2:].split()
    return rest if len(rest) >= 20 else None


def process_starttime(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (field 22 of ``/proc/<pid>/stat``); None when it
    does not exist or is a zombie. Unlike a wall-clock create time it is exact: two processes that
    had the same pid in one boot never share it."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == b"Z":
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def boot_id() -> str | None:
    """This boot's id (``/proc/sys/kernel/random/boot_id``): a start time means something within one boot only."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _ppid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    try:
        return int(fields[1]) if fields is not None else None
    except ValueError:
        return None


def _ancestors() -> set[int]:
    """This process and its ancestors, up to pid 1."""
    out: set[int] = set()
    pid: int | None = os.getpid()
    while pid is not None and pid > 0 and pid not in out and len(out) < _ANCESTOR_LIMIT:
        out.add(pid)
        pid = _ppid(pid)
    return out


def never_signal(pid: int) -> str | None:
    """Why ``pid`` is never signalled whatever a record says (None: no such reason).

    pid 1 and below (0 and negative pids signal whole process groups), kthreadd (2) and kernel
    threads, novatune itself and its ancestors.
    """
    if pid <= 1:
        return f"pid {pid} is never signalled (init, or a process group)"
    if pid == 2:
        return "pid 2 is kthreadd"
    if pid in _ancestors():
        return f"pid {pid} is novatune itself or one of its ancestors"
    fields = _stat_fields(pid)
    if fields is not None:
        try:
            flags, ppid = int(fields[6]), int(fields[1])
        except ValueError:
            return f"pid {pid}: unreadable /proc/{pid}/stat"
        if flags & _PF_KTHREAD or ppid == 2:
            return f"pid {pid} is a kernel thread"
    return None


def novatune_cgroups_of(pid: int) -> set[str]:
    """The novatune cgroups (``novatune-<name>`` directly under a hierarchy's root) ``pid`` sits in."""
    try:
        with open(f"/proc/{int(pid)}/cgroup") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):
        return set()
    out = set()
    for line in lines:
        path = line.split(":", 2)[-1]
        top = path.lstrip("/").split("/", 1)[0]
        if top.startswith(CGROUP_PREFIX):
            out.add(top)
    return out


@dataclass(frozen=True)
class SignalCheck:
    """The verdict on a recorded pid: ``ok`` (signal it; ``starttime`` is the live one, for
    :func:`kill_verified`), ``gone`` (nothing of it is left) or ``refused`` (``why``)."""

    verdict: str
    why: str = ""
    starttime: int | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_signal(pid: Any, *, starttime: Any = None, boot: Any = None, ctime: Any = None) -> SignalCheck:
    """Whether the recorded process ``pid`` is provably novatune's and may be signalled (see the module doc).

    ``starttime`` / ``boot``: what the record says (``starttime`` and ``boot_id``); ``ctime``: the
    create time older records carry.
    """
    if not isinstance(pid, int) or isinstance(pid, bool):
        return SignalCheck("refused", f"{pid!r} is not a pid")
    never = never_signal(pid)
    if never is not None:
        return SignalCheck("refused", never)
    live = process_starttime(pid)
    if live is None:
        return SignalCheck("gone")
    if isinstance(starttime, int) and not isinstance(starttime, bool):
        if isinstance(boot, str) and boot != boot_id():
            return SignalCheck("gone", "recorded in another boot")
        if live != starttime:
            return SignalCheck("gone", f"pid {pid} was reused (start time {live}, recorded {starttime})")
        return SignalCheck("ok", starttime=live)
    if starttime is not None:
        return SignalCheck("refused", f"start time {starttime!r} is not a number of clock ticks")
    recorded = _number(ctime)
    if recorded is not None:
        from actuators.journal import same_process

        if not same_process(pid, recorded):
            return SignalCheck("gone", f"pid {pid} was reused (its create time differs)")
    if not novatune_cgroups_of(pid):
        return SignalCheck("refused", f"cannot prove pid {pid} is novatune's: the record carries no start time "
                                      f"and the process is in no {CGROUP_PREFIX}* cgroup")
    return SignalCheck("ok", starttime=live)


def kill_verified(pid: int, starttime: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid`` only if it still has ``starttime``, through a pidfd opened before the
    check (the process checked is the one signalled). Returns whether it was signalled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfd (old kernel): check, then kill by pid (a tiny window)
        if process_starttime(pid) != starttime:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True
    try:
        if process_starttime(pid) != starttime:
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False
        return True
    finally:
        os.close(fd)


def novatune_cgroup(rel: Any) -> tuple[str | None, str]:
    """``(controller, directory name)`` of a novatune cgroup directory (controller None: cgroup v2).

    Raises:
        UnsafePath: ``rel`` is not ``sys/fs/cgroup/[<controller>/]novatune-<name>`` (controllers:
            :data:`V1_CONTROLLERS`; name ``[A-Za-z0-9_.-]{1,64}``).
    """
    m = _CGROUP_DIR.fullmatch(rel) if isinstance(rel, str) else None
    if m is None or m.group("dir") in (f"{CGROUP_PREFIX}.", f"{CGROUP_PREFIX}.."):
        raise UnsafePath(f"refused cgroup {rel!r}: not a novatune cgroup; allowed: "
                         f"sys/fs/cgroup/[<controller>/]{CGROUP_PREFIX}<name> with controller one of "
                         f"{', '.join(V1_CONTROLLERS)}")
    return m.group("ctl"), m.group("dir")


#: the network namespaces novatune makes (a benchmark's pair: ``ntb`` + 6 hex digits + ``a`` or ``b``)
NETNS_NAME = re.compile(r"ntb[0-9a-f]{6}[ab]")


def novatune_netns(name: Any) -> str:
    """``name`` when it is a network namespace novatune makes (:data:`NETNS_NAME`).

    Raises:
        UnsafePath: anything else (another program's namespace is never deleted).
    """
    if not isinstance(name, str) or NETNS_NAME.fullmatch(name) is None:
        raise UnsafePath(f"refused network namespace {name!r}: not one novatune makes; allowed: "
                         f"{NETNS_NAME.pattern}")
    return name
