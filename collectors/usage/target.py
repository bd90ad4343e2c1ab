"""What ``novatune observe`` watches: a target spec parsed, resolved to its cgroup directories, and checked.

A spec is one of

* ``cgroup:/PATH`` -- a cgroup, its path inside the hierarchy as ``/proc/PID/cgroup`` shows it (cgroup v1:
  the same PATH under each of ``/sys/fs/cgroup/{cpu,cpuacct,memory,cpuset}`` where it exists; v2: under the
  unified ``/sys/fs/cgroup``);
* ``unit:NAME.service`` (or ``.scope``) -- a systemd unit, whose cgroup is ``/system.slice/NAME.service``; a unit
  with no such cgroup (not started, or systemd not running) is :class:`TargetNotFound`;
* ``pid:N`` -- a process: its cgroups from ``/proc/N/cgroup``. A resource whose cgroup is the root cgroup (a
  process nobody placed in a cgroup), or a cgroup that also holds processes other than N and its descendants (a
  container's or a login session's), is read from the process tree instead (psutil: N and its descendants) --
  the cgroup would count the others too; its limits still give the capacity.

Every target is checked by :class:`collectors.passive.allowed.PassivePolicy` (the operator's
``allowed_targets``; pid 1, kernel threads, novatune itself and the root cgroup never are): a refusal is the
policy's :class:`~collectors.passive.allowed.TargetRefused`. Files are read through a
:class:`~collectors.rootfs.RootReader`, so a fake tree stands in for ``/`` in tests (process-tree reading uses
the host's ``/proc`` and needs the real root).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from collectors.passive.allowed import PassivePolicy, parse_rule
from collectors.rootfs import RootReader
from collectors.usage.errors import TargetNotFound, UsageError

__all__ = ["SPEC_FORMS", "V1_CONTROLLERS", "ResolvedTarget", "TargetSpec", "cgroup_version", "parse_target",
           "resolve_target"]

SPEC_FORMS = ("a target is cgroup:/PATH (a cgroup, as /proc/PID/cgroup shows it, not /), unit:NAME.service "
              "(a systemd unit: its cgroup /system.slice/NAME.service) or pid:N (a running process)")
#: the v1 hierarchies a target is read from (cpu: quota and throttling, cpuacct: usage, cpuset: CPUs)
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "cpuset")
_CG = "sys/fs/cgroup"
_MAX_WALK = 1024  # bound on the cgroups read below a pid's cgroup


@dataclass(frozen=True)
class TargetSpec:
    """A parsed spec: ``kind`` is ``cgroup``, ``unit`` or ``pid``; ``value`` the path, unit name or pid."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_target(text: object) -> TargetSpec:
    """``cgroup:/PATH``, ``unit:NAME.service`` or ``pid:N`` as a :class:`TargetSpec`.

    Raises:
        UsageError: anything else, ``cgroup:/`` (the root cgroup) or a pid that is not a positive integer; the
            message lists the forms.
    """
    if isinstance(text, str):
        kind, _, value = text.strip().partition(":")
        if kind == "pid":
            if value.isdigit() and int(value) > 0:
                return TargetSpec("pid", str(int(value)))
            raise UsageError(f"{text!r}: pid:N needs a positive integer pid; {SPEC_FORMS}")
        if kind in ("cgroup", "unit"):
            try:
                rule = parse_rule(f"{kind}:{value}")
            except ValueError as err:
                raise UsageError(f"{text!r} is not a target: {err}") from None
            return TargetSpec(rule.kind, rule.value)
    raise UsageError(f"{text!r} is not a target; {SPEC_FORMS}")


@dataclass(frozen=True)
class ResolvedTarget:
    """A target found on this machine.

    Attributes:
        name: the canonical spec (``cgroup:/a/b``, ``unit:x.service``, ``pid:42``): the store's key.
        kind: ``cgroup``, ``unit`` or ``pid``.
        version: the cgroup version (1 or 2).
        dirs: root-relative cgroup directory per controller (v1: ``cpu``, ``cpuacct``, ``memory``, ``cpuset``
            where the cgroup exists and is not the root; v2: ``unified``).
        pid: the process of a ``pid:`` target; ``pid_start`` its start time (a reused pid is another process).
        tree: the resources (``cpu``, ``memory``) read from the process tree (the pid's cgroup is the root, or
            holds other processes).
    """

    name: str
    kind: str
    version: int
    dirs: Mapping[str, str] = field(default_factory=dict)
    pid: int | None = None
    pid_start: float | None = None
    tree: frozenset[str] = frozenset()

    def dir(self, controller: str) -> str | None:
        """The root-relative directory of ``controller`` (v2: the unified one), None when there is none."""
        return self.dirs.get("unified" if self.version == 2 else controller)


def cgroup_version(fs: RootReader) -> int:
    """2 when ``/sys/fs/cgroup`` is the unified (v2) hierarchy, else 1."""
    return 2 if fs.exists(f"{_CG}/cgroup.controllers") else 1


def _cgroup_dirs(fs: RootReader, version: int, rel: str) -> dict[str, str]:
    if rel == "/":
        return {}
    if version == 2:
        d = f"{_CG}{rel}"
        return {"unified": d} if fs.is_dir(d) else {}
    return {ctl: f"{_CG}/{ctl}{rel}" for ctl in V1_CONTROLLERS if fs.is_dir(f"{_CG}/{ctl}{rel}")}


def pid_cgroups(fs: RootReader, pid: int, version: int) -> dict[str, str]:
    """controller (``unified`` on v2) -> the pid's cgroup path, from ``/proc/PID/cgroup``.

    Raises:
        TargetNotFound: no such process.
    """
    try:
        text = fs.read_bytes(f"proc/{pid}/cgroup").decode("latin-1")
    except OSError as err:
        raise TargetNotFound(f"pid:{pid}: no such process (it never ran or exited)") from err
    out: dict[str, str] = {}
    for line in text.splitlines():
        hid, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if version == 2 and hid == "0":
            out["unified"] = path
        for ctl in controllers.split(","):
            if ctl in V1_CONTROLLERS:
                out[ctl] = path
    return out


def _only(fs: RootReader, cgroup_dir: str, pids: set[int]) -> bool:
    """Whether every process in ``cgroup_dir`` and the cgroups below it is one of ``pids`` (at most
    :data:`_MAX_WALK` cgroups are read; more counts as shared)."""
    for n, (dirpath, dirnames, _) in enumerate(os.walk(fs.path(cgroup_dir))):
        if n >= _MAX_WALK:
            return False
        try:
            text = Path(dirpath, "cgroup.procs").read_text(encoding="ascii")
        except OSError:
            continue
        if any(int(x) not in pids for x in text.split() if x.isdigit()):
            return False
        dirnames.sort()
    return True


def _resolve_pid(fs: RootReader, pid: int, version: int, policy: PassivePolicy) -> ResolvedTarget:
    try:
        proc = psutil.Process(pid) if fs.is_host else None
        start = proc.create_time() if proc is not None else None
        members = [c.pid for c in proc.children(recursive=True)] if proc is not None else []
    except psutil.Error as err:
        raise TargetNotFound(f"pid:{pid}: no such process (it never ran or exited)") from err
    paths = pid_cgroups(fs, pid, version)
    policy.check_pids([pid], members)
    dirs: dict[str, str] = {}
    for ctl, rel in paths.items():
        base = f"{_CG}{rel}" if ctl == "unified" else f"{_CG}/{ctl}{rel}"
        if rel not in ("", "/") and fs.is_dir(base):
            dirs[ctl] = base
    usage_ctl = "unified" if version == 2 else "cpuacct"
    mem_ctl = "unified" if version == 2 else "memory"
    ours = {pid, *members}
    tree = frozenset(r for r, c in (("cpu", usage_ctl), ("memory", mem_ctl))
                     if c not in dirs or not _only(fs, dirs[c], ours))
    if tree and not fs.is_host:
        raise UsageError(f"pid:{pid}: its cgroup is the root cgroup or shared; the process tree is read only on the "
                         "real root")
    return ResolvedTarget(f"pid:{pid}", "pid", version, dirs, pid=pid, pid_start=start, tree=tree)


def resolve_target(spec: str | TargetSpec, *, policy: PassivePolicy,
                   root: RootReader | str | Path = "/") -> ResolvedTarget:
    """Find the target on this machine and check it with ``policy``.

    Raises:
        UsageError: a bad spec (see :func:`parse_target`).
        TargetNotFound: no such cgroup (in any hierarchy read), unit cgroup or process.
        TargetRefused: the policy refuses it (not in ``allowed_targets``, or never a target).
    """
    ts = spec if isinstance(spec, TargetSpec) else parse_target(spec)
    fs = root if isinstance(root, RootReader) else RootReader(root)
    version = cgroup_version(fs)
    if ts.kind == "pid":
        return _resolve_pid(fs, int(ts.value), version, policy)
    rel = ts.value if ts.kind == "cgroup" else f"/system.slice/{ts.value}"
    dirs = _cgroup_dirs(fs, version, rel)
    if not dirs or (version == 1 and "cpuacct" not in dirs and "memory" not in dirs):
        where = f"{fs.path(_CG)}/<controller>{rel}" if version == 1 else f"{fs.path(_CG)}{rel}"
        if ts.kind == "unit":
            raise TargetNotFound(f"{ts}: the unit has no cgroup {rel} ({where} does not exist): it is not "
                                 "running, or systemd does not run on this machine; give its cgroup:/PATH or pid:N")
        raise TargetNotFound(f"{ts}: no such cgroup ({where} does not exist)")
    for real in dict.fromkeys(fs.path(d).resolve() for d in dirs.values()):
        policy.check_cgroup(real)
    return ResolvedTarget(str(ts), ts.kind, version, dirs)
