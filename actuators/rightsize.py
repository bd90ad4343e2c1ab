"""``rightsize.*``: the CPU and memory of a *running target's* cgroup (a service novatune did not start).

Where :mod:`actuators.sizing` acts on the cgroup a run creates, these knobs act on the cgroup of a running
service, VM or container, named in the knob context (``KnobContext(target_cgroup="/system.slice/x.service")``:
the cgroup's path inside its hierarchy, as ``/proc/PID/cgroup`` shows it). cgroup v1 uses the ``cpu``,
``memory`` and ``cpuset`` hierarchies (``/sys/fs/cgroup/<controller><PATH>``), v2 the one directory
(``/sys/fs/cgroup<PATH>``):

* ``rightsize.cpu_cores`` -- v1 ``cpu.cfs_quota_us = cores x cpu.cfs_period_us`` (the period untouched), v2
  ``cpu.max``; no limit (``-1`` / ``max``) reads as the number of online CPUs, the hard upper bound;
* ``rightsize.memory_gib`` -- v1 ``memory.limit_in_bytes``, v2 ``memory.max``; never below the cgroup's
  current working set x :data:`actuators.sizing.MEMORY_MARGIN`, never above the RAM (the logic of
  :class:`actuators.sizing.MemoryKnob`, reused);
* ``rightsize.cpuset_cpus`` -- ``cpuset.cpus``, a compact range of the parent cgroup's CPUs.

Every change is journaled as a ``file`` record with the exact old bytes, so ``recover`` and ``novatune rollback``
put it back through :func:`actuators.restore.restore_intent`.

Safety, in three places:

* here: the target path is checked by syntax (:func:`check_cgroup_path`: absolute, normalised, not ``/``, no
  ``.``/``..``, plain characters) and every file is reached through :class:`~actuators.sysroot.SysRoot` (no
  path outside the root);
* :mod:`actuators.vetting`: every record of these knobs -- the one a session is about to journal, and the one
  ``recover`` or ``rollback`` is about to write back -- must name one of the leaf files above of a cgroup
  directory under ``sys/fs/cgroup`` that is not a hierarchy's root and holds no process that is never a target
  (pid 1, kernel threads, novatune itself: :func:`target_refusal`, the rule of
  :mod:`collectors.passive.allowed`), with an old value that parses and lies within the bounds;
* **whether the operator allows the target** (the setting ``allowed_targets``,
  :class:`collectors.passive.allowed.PassivePolicy`) is NOT checked here: actuators cannot read settings.
  ``experiments`` checks it before every apply (:func:`experiments.deploy.apply.apply_to_target`, which
  :mod:`experiments.rightsizing.workflow` calls).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actuators.base import Knob
from actuators.cgroup import VcpusKnob
from actuators.errors import ActuatorError, UnknownKnob, UnsafePath
from actuators.family import Env, Family, KnobContext, KnobExport, SystemdOption, one_line
from actuators.sizing import GIB, CpusetKnob, MemoryKnob
from actuators.sysroot import SysRoot
from collectors.kernelfiles import parse_cpu_list
from collectors.passive.allowed import PassivePolicy, TargetRefused, TargetRule, never_target

__all__ = [
    "FAMILY",
    "LEAVES",
    "RIGHTSIZE",
    "CpuCoresKnob",
    "CpusetCpusKnob",
    "MemoryGibKnob",
    "RightsizeFamily",
    "TargetCgroup",
    "check_cgroup_path",
    "context_of_file",
    "online_cpus",
    "target_refusal",
]

RIGHTSIZE = ("rightsize.cpu_cores", "rightsize.memory_gib", "rightsize.cpuset_cpus")
#: controller -> (v1 leaf, v2 leaf) of the file its knob writes
LEAVES: dict[str, tuple[str, str]] = {
    "cpu": ("cpu.cfs_quota_us", "cpu.max"),
    "memory": ("memory.limit_in_bytes", "memory.max"),
    "cpuset": ("cpuset.cpus", "cpuset.cpus"),
}
#: v1 controller -> a file that shows its hierarchy is mounted
_V1_MOUNTED = {"cpu": "cpu.cfs_quota_us", "memory": "memory.limit_in_bytes", "cpuset": "cpuset.cpus"}
_ALL_LEAVES = ", ".join(sorted({leaf for pair in LEAVES.values() for leaf in pair}))
_BASE = "sys/fs/cgroup"
_PART = re.compile(r"[A-Za-z0-9_.:@\\+-]{1,255}")
_MAX_DEPTH = 32
_MAX_CGROUPS = 4096
NO_TARGET = ("no running target in this context (rightsize.* binds to a running target's cgroup: "
             "KnobContext(target_cgroup=\"/PATH\"))")


def check_cgroup_path(path: object) -> str:
    """``path`` if it names a cgroup other than a hierarchy's root, as ``/proc/PID/cgroup`` shows it.

    Raises:
        UnsafePath: not absolute, ``/`` (the root cgroup), empty, ``.`` or ``..`` components, a doubled or
            trailing slash, more than 32 levels, or characters other than ``[A-Za-z0-9_.:@\\\\+-]``.
    """
    allowed = ("allowed: an absolute cgroup path other than / (as /proc/PID/cgroup shows it), components of "
               f"{_PART.pattern}, no '.' or '..'")
    if not isinstance(path, str) or not path.startswith("/"):
        raise UnsafePath(f"refused target cgroup {path!r}: {allowed}")
    if path == "/":
        raise UnsafePath(f"refused target cgroup '/': the root cgroup holds every process; {allowed}")
    parts = path[1:].split("/")
    if len(parts) > _MAX_DEPTH or any(p in ("", ".", "..") or not _PART.fullmatch(p) for p in parts):
        raise UnsafePath(f"refused target cgroup {path!r}: {allowed}")
    return path


def _version(root: SysRoot) -> int | None:
    if root.exists(f"{_BASE}/cpu/cpu.cfs_quota_us"):
        return 1
    if root.exists(f"{_BASE}/cgroup.controllers"):
        return 2
    return None


def online_cpus(root: SysRoot) -> int:
    """The number of online CPUs under ``root`` (``sys/devices/system/cpu/online``; else ``os.cpu_count()``)."""
    try:
        return len(parse_cpu_list(root.read("sys/devices/system/cpu/online"))) or (os.cpu_count() or 1)
    except (ActuatorError, ValueError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TargetCgroup:
    """A running target's cgroup, bound for reading and re-tuning its ``rightsize.*`` files only (it is never
    created, emptied or removed). Build it with :meth:`bind`."""

    root: SysRoot
    cgroup: str
    version: int

    @classmethod
    def bind(cls, root: SysRoot, cgroup: str) -> TargetCgroup:
        """Raises:
        UnsafePath: see :func:`check_cgroup_path`.
        ActuatorError: no cgroup hierarchy under the root (neither v1 ``cpu`` nor v2).
        """
        check_cgroup_path(cgroup)
        version = _version(root)
        if version is None:
            raise ActuatorError(f"no cgroup v1 cpu hierarchy or v2 cgroup.controllers under {root.root}")
        return cls(root=root, cgroup=cgroup, version=version)

    def __repr__(self) -> str:
        return f"<TargetCgroup v{self.version} {self.cgroup}>"

    def dir_for(self, controller: str) -> str | None:
        """Root-relative directory of ``controller``'s files (None: its v1 hierarchy is not mounted)."""
        if self.version == 2:
            return f"{_BASE}{self.cgroup}"
        if not self.root.exists(f"{_BASE}/{controller}/{_V1_MOUNTED.get(controller, 'cgroup.procs')}"):
            return None
        return f"{_BASE}/{controller}{self.cgroup}"

    @property
    def rel(self) -> str:
        """The cpu controller's directory."""
        return self.dir_for("cpu") or ""

    @property
    def removed(self) -> bool:
        """Never: a target's cgroup is not novatune's to remove (a missing directory: see ``available``)."""
        return False

    @property
    def path(self) -> Path:
        return self.root.path(self.rel)


def _missing(target: TargetCgroup, controller: str) -> str | None:
    d = target.dir_for(controller)
    if d is None:
        return f"the cgroup v1 {controller} hierarchy is not mounted under {target.root.root}"
    if not target.root.is_dir(d):
        return f"target cgroup {target.cgroup} has no {controller} directory ({target.root.path(d)})"
    return None


class CpuCoresKnob(VcpusKnob):
    """``rightsize.cpu_cores``: the CPU bandwidth of the target's cgroup, in cores (the logic of ``sizing.vcpus``)."""

    def __init__(self, *, target: TargetCgroup | None, root: SysRoot) -> None:
        super().__init__(cgroup=target, name="rightsize.cpu_cores", ncpu=online_cpus(root))
        self.description = "CPU quota of a running target's cgroup, in cores (CFS bandwidth; no limit = online CPUs)."
        self.unit = "cores"

    def available(self) -> str | None:
        if not isinstance(self.cgroup, TargetCgroup):
            return NO_TARGET
        return _missing(self.cgroup, "cpu") or super().available()


class MemoryGibKnob(MemoryKnob):
    """``rightsize.memory_gib``: the memory limit of the target's cgroup (the bounds of ``sizing.memory_gib``)."""

    def __init__(self, *, target: TargetCgroup | None) -> None:
        super().__init__(cgroup=target, name="rightsize.memory_gib")
        self.description = ("Memory limit of a running target's cgroup, in GiB; never below its working set "
                            "times the margin, never above the RAM.")

    def available(self) -> str | None:
        if not isinstance(self.cgroup, TargetCgroup):
            return NO_TARGET
        return _missing(self.cgroup, "memory") or super().available()


class CpusetCpusKnob(CpusetKnob):
    """``rightsize.cpuset_cpus``: the CPUs of the target's cgroup, a compact range of its parent's."""

    def __init__(self, *, target: TargetCgroup | None) -> None:
        super().__init__(cgroup=target, what="cpus", name="rightsize.cpuset_cpus")
        self.description = "CPUs of a running target's cgroup (a compact range of its parent cgroup's CPUs)."

    def available(self) -> str | None:
        if not isinstance(self.cgroup, TargetCgroup):
            return NO_TARGET
        return _missing(self.cgroup, "cpuset") or super().available()


def context_of_file(root: SysRoot, rel: str) -> KnobContext:
    """The context binding a ``rightsize.*`` knob to the cgroup whose file ``rel`` a journal record names (the
    directory may be gone: the knob is then unavailable, and vetting reports the record ``gone``).

    Raises:
        UnsafePath: ``rel`` is not a ``rightsize.*`` leaf file (:data:`LEAVES`) of a cgroup below a hierarchy's
            root (v1 ``sys/fs/cgroup/{cpu,memory,cpuset}/PATH/LEAF``, v2 ``sys/fs/cgroup/PATH/LEAF``).
    """
    version = _version(root)
    d, _, leaf = rel.rpartition("/") if isinstance(rel, str) else ("", "", "")
    cgroup: str | None = None
    if version == 1:
        for ctl, (v1_leaf, _) in LEAVES.items():
            if leaf == v1_leaf and d.startswith(f"{_BASE}/{ctl}/"):
                cgroup = d[len(f"{_BASE}/{ctl}"):]
    elif version == 2 and leaf in {v2 for _, v2 in LEAVES.values()} and d.startswith(f"{_BASE}/"):
        cgroup = d[len(_BASE):]
    if cgroup is None:
        raise UnsafePath(f"refused {rel!r}: not a rightsize file ({_ALL_LEAVES}) "
                         f"of a cgroup under /{_BASE}")
    check_cgroup_path(cgroup)
    if root.path(d).is_symlink():
        raise UnsafePath(f"refused cgroup directory {d!r}: a symlink")
    return KnobContext(target_cgroup=cgroup)


def _fake_members(root: SysRoot, d: str) -> list[int] | None:
    pids: set[int] = set()
    for n, (dirpath, dirnames, _) in enumerate(os.walk(root.path(d))):
        if n >= _MAX_CGROUPS:
            return None
        dirnames[:] = sorted(dirnames)
        try:
            pids.update(int(x) for x in (Path(dirpath) / "cgroup.procs").read_text().split() if x.isdigit())
        except OSError:
            continue
    return sorted(pids)


def target_refusal(root: SysRoot, d: str) -> str | None:
    """Why the cgroup directory ``d`` (root-relative) is never a ``rightsize.*`` target, or None.

    The "never" half of :class:`collectors.passive.allowed.PassivePolicy`: a hierarchy's root, a directory under
    no cgroup mount, or a cgroup that (itself or below) holds pid 1, a kernel thread or novatune itself. On a
    fake tree (tests) the pids of its ``cgroup.procs`` files are checked against the live processes.
    """
    if not root.is_host:
        pids = _fake_members(root, d)
        if pids is None:
            return f"{d} has more than {_MAX_CGROUPS} cgroups below it to check"
        why = never_target(pids)
        return None if why is None else f"{d} holds a process that is never a target ({why})"
    path = root.path(d)
    rel = PassivePolicy().cgroup_rel(path)
    if rel is None:
        return f"{path} is not under a cgroup mount"
    try:
        PassivePolicy(targets=(TargetRule("cgroup", rel),)).check_cgroup(path)
    except TargetRefused as err:
        return str(err)
    return None


def _percent(x: Any) -> str:
    return f"{round(float(x) * 100, 2):g}%"


class RightsizeFamily(Family):
    """``rightsize.*``: the resources of a running target's cgroup (``KnobContext.target_cgroup``)."""

    name = "rightsize"
    patterns = RIGHTSIZE
    workload = True
    bound_by_target = True
    exports = {
        "rightsize.cpu_cores": KnobExport(systemd=SystemdOption(
            "CPUQuota", _percent, note=lambda v: f"CPUQuota: rightsize.cpu_cores={v} cores x 100%")),
        "rightsize.memory_gib": KnobExport(systemd=SystemdOption(
            "MemoryMax", lambda v: str(round(float(v) * GIB)),
            note=lambda v: f"MemoryMax: rightsize.memory_gib={v} GiB in bytes")),
        "rightsize.cpuset_cpus": KnobExport(systemd=SystemdOption("AllowedCPUs", one_line)),
    }

    def resolve(self, name: str, env: Env) -> Knob:
        target: TargetCgroup | None = None
        if env.context.target_cgroup is not None:
            try:
                target = TargetCgroup.bind(env.root, env.context.target_cgroup)
            except (UnsafePath, ActuatorError) as err:
                raise UnknownKnob(f"{name}: {err}") from None
        if name == "rightsize.cpu_cores":
            return CpuCoresKnob(target=target, root=env.root)
        if name == "rightsize.memory_gib":
            return MemoryGibKnob(target=target)
        if name == "rightsize.cpuset_cpus":
            return CpusetCpusKnob(target=target)
        raise UnknownKnob(f"{name}: not a rightsize knob; allowed: {', '.join(RIGHTSIZE)}")

    def context_of(self, root: SysRoot, rel: str) -> KnobContext | None:
        return context_of_file(root, rel)


FAMILY = RightsizeFamily()
