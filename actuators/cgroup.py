"""The run's workload cgroup and the ``sizing.vcpus`` knob on it.

cgroup v1 (``cpu`` controller, ``/sys/fs/cgroup/cpu/novatune-<name>``) is used
when mounted, else cgroup v2 (``/sys/fs/cgroup/novatune-<name>``). On v1 the
``memory`` and ``cpuset`` controllers get a directory of the same name when
asked for (``controllers=``). Every directory is journaled as the run's
resource BEFORE mkdir, so ``recover`` can remove it. Only such directories
(``novatune-<name>`` directly under a hierarchy's root, see
:func:`actuators.ownership.novatune_cgroup`) are ever emptied, removed or
re-tuned from a journal record; :meth:`WorkloadCgroup.of_file` is how a record's
file is bound back to its cgroup.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from actuators.base import Domain, Knob, Token
from actuators.errors import ActuatorError, KnobUnavailable, OutOfBounds, UnsafePath
from actuators.journal import Journal
from actuators.ownership import never_signal, novatune_cgroup
from actuators.sysroot import SysRoot

__all__ = ["VCPUS_FLOOR", "CgroupDirs", "VcpusKnob", "WorkloadCgroup", "kill_cgroup_tasks"]

#: the smallest CPU quota novatune sets, in CPUs (5 ms per 100 ms period)
VCPUS_FLOOR = 0.05

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_V1_CPU = "sys/fs/cgroup/cpu"
_V2 = "sys/fs/cgroup"
#: v1 hierarchies a run may add beside ``cpu``, and a file that proves each is mounted
#: v1 controller -> a file that shows the hierarchy is mounted. cpuacct and blkio only account
#: (no knob writes them): a run asks for them so the collector can read its CPU and IO bytes.
_V1_EXTRA = {
    "memory": "memory.limit_in_bytes",
    "cpuset": "cpuset.cpus",
    "cpuacct": "cpuacct.usage",
    "blkio": "blkio.throttle.io_service_bytes",
}


def kill_cgroup_tasks(root: SysRoot, rel: str, *, timeout_s: float = 5.0) -> list[int]:
    """SIGKILL every process of the novatune cgroup ``rel`` and wait until it is empty.

    Only on the real host: on a fake tree ``cgroup.procs`` is a plain file whose
    pids mean nothing, so nothing is signalled. Never pid 1, a kernel thread,
    novatune itself or an ancestor (:func:`actuators.ownership.never_signal`),
    whatever cgroup they sit in.

    Returns:
        the pids signalled.
    Raises:
        UnsafePath: ``rel`` is not a novatune cgroup directory (nothing is signalled).
        ActuatorError: tasks remain after ``timeout_s``.
    """
    novatune_cgroup(rel)
    procs = f"{rel}/cgroup.procs"
    if not root.is_host or not root.exists(procs):
        return []
    killed: list[int] = []
    spared: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        pids = []
        for pid in (int(x) for x in root.read(procs).split()):
            why = never_signal(pid)
            if why is None:
                pids.append(pid)
            elif pid not in spared:
                spared.add(pid)
                log.warning("not signalling %s in %s: %s", pid, root.path(rel), why)
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise ActuatorError(f"{root.path(rel)}: tasks {pids} still there after SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


class CgroupDirs(Protocol):
    """What a cgroup-bound knob reads of its cgroup: a run's :class:`WorkloadCgroup`, or a running target's
    (:class:`actuators.rightsize.TargetCgroup`). ``rel`` is the cpu controller's directory (root-relative)."""

    @property
    def root(self) -> SysRoot: ...

    @property
    def version(self) -> int: ...

    @property
    def rel(self) -> str: ...

    @property
    def removed(self) -> bool: ...

    @property
    def path(self) -> Path: ...

    def dir_for(self, controller: str) -> str | None: ...


class WorkloadCgroup:
    """A cgroup a run owns. Build it with :meth:`create`."""

    def __init__(
        self, *, name: str, rel: str, version: int, root: SysRoot, journal: Journal | None, run_id: str
    ) -> None:
        self.name = name
        self.rel = rel
        self.version = version
        self.root = root
        self.journal = journal
        self.run_id = run_id
        self.removed = False
        #: v2: the controllers this run enabled in the parent's subtree_control (disabled again on remove)
        self.enabled_in_parent: list[str] = []
        #: controller -> root-relative directory; on v2 every controller shares ``rel``
        self.dirs: dict[str, str] = {"cpu": rel}

    def __repr__(self) -> str:
        return f"<WorkloadCgroup v{self.version} {self.path}>"

    @classmethod
    def create(
        cls,
        name: str,
        *,
        journal: Journal,
        run_id: str,
        root: SysRoot | None = None,
        controllers: tuple[str, ...] = ("cpu",),
    ) -> WorkloadCgroup:
        """Create ``novatune-<name>``: journaled first, then mkdir.

        ``controllers`` may add ``"memory"``, ``"cpuset"``, ``"cpuacct"`` and
        ``"blkio"`` to ``"cpu"`` (the last two for accounting only): on
        v1 each gets its own directory (unless co-mounted with ``cpu``) (a new cpuset starts with its parent's
        CPUs and memory nodes); a v1 hierarchy that is not mounted is skipped
        (:meth:`dir_for` then says so).

        Raises:
            ActuatorError: invalid name (``[A-Za-z0-9_.-]{1,64}``), the cgroup
                exists already (a killed run's? run ``novatune recover``), or mkdir failed.
            KnobUnavailable: no usable cpu controller under the root.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
            raise ActuatorError(f"invalid cgroup name {name!r}: allowed [A-Za-z0-9_.-]{{1,64}}")
        root = root if root is not None else SysRoot()
        if root.exists(f"{_V1_CPU}/cpu.cfs_quota_us"):
            version, rel = 1, f"{_V1_CPU}/novatune-{name}"
        elif "cpu" in _words(root, f"{_V2}/cgroup.controllers"):
            version, rel = 2, f"{_V2}/novatune-{name}"
        else:
            raise KnobUnavailable(f"no cgroup cpu controller under {root.root}: "
                                  f"neither v1 {_V1_CPU} nor v2 with 'cpu' in cgroup.controllers")
        path = root.path(rel)
        if path.exists():
            raise ActuatorError(f"{path} exists already (left by a killed run? run `novatune recover`)")
        enabled: list[str] = []
        if version == 2:
            control = f"{_V2}/cgroup.subtree_control"
            offered = _words(root, f"{_V2}/cgroup.controllers")
            active = [w.lstrip("+") for w in _words(root, control)]
            enabled = [c for c in dict.fromkeys(("cpu", *controllers)) if c in offered and c not in active]
            if enabled:
                journal.record_cgroup(run_id, control, root=str(root.root), version=2, controllers=enabled)
                for c in enabled:
                    root.write(control, f"+{c}")
        journal.record_cgroup(run_id, rel, root=str(root.root), version=version)
        try:
            os.mkdir(path, 0o755)
        except OSError as err:
            journal.release_cgroup(run_id, rel, note=f"mkdir failed: {err}")
            raise ActuatorError(f"cannot create cgroup {path}: {err.strerror or err}") from err
        cg = cls(name=name, rel=rel, version=version, root=root, journal=journal, run_id=run_id)
        cg.enabled_in_parent = enabled
        if version == 1:
            try:
                for ctl in controllers:
                    if ctl != "cpu":
                        cg._add_v1(ctl)
            except BaseException:
                cg.remove()
                raise
        return cg

    @classmethod
    def of_file(cls, root: SysRoot, rel: str) -> WorkloadCgroup | None:
        """The novatune cgroup a file ``rel`` (as a journal record names it) belongs to, bound for reading
        and re-tuning its files only (it journals nothing and cannot be removed); None when its
        directory is gone.

        Raises:
            UnsafePath: ``rel`` is not a file directly in a novatune cgroup directory
                (``sys/fs/cgroup/[<controller>/]novatune-<name>/<file>``), or that directory is a symlink.
        """
        d, _, leaf = rel.rpartition("/") if isinstance(rel, str) else ("", "", "")
        ctl, dirname = novatune_cgroup(d)
        if not re.fullmatch(r"[A-Za-z0-9_.]{1,64}", leaf) or leaf in (".", ".."):
            raise UnsafePath(f"refused cgroup file {rel!r}: not a control file")
        if root.path(d).is_symlink():
            raise UnsafePath(f"refused cgroup {d!r}: a symlink")
        if not root.is_dir(d):
            return None
        name = dirname[len("novatune-"):]
        if ctl is None:
            return cls(name=name, rel=d, version=2, root=root, journal=None, run_id="")
        cpu_rel = f"{_V1_CPU}/{dirname}"
        cg = cls(name=name, rel=cpu_rel, version=1, root=root, journal=None, run_id="")
        for extra in _V1_EXTRA:
            base = f"sys/fs/cgroup/{extra}"
            if os.path.realpath(root.path(base)) == os.path.realpath(root.path(_V1_CPU)):
                cg.dirs[extra] = cpu_rel
            elif root.is_dir(f"{base}/{dirname}"):
                cg.dirs[extra] = f"{base}/{dirname}"
        return cg

    def _journal(self) -> Journal:
        if self.journal is None:
            raise ActuatorError(f"{self.path}: a cgroup read from a journal record is not this process's to change")
        return self.journal

    def _add_v1(self, ctl: str) -> None:
        if ctl not in _V1_EXTRA:
            raise ActuatorError(f"unknown cgroup controller {ctl!r}; allowed: cpu, {', '.join(_V1_EXTRA)}")
        base = f"sys/fs/cgroup/{ctl}"
        if not self.root.exists(f"{base}/{_V1_EXTRA[ctl]}"):
            return
        if os.path.realpath(self.root.path(base)) == os.path.realpath(self.root.path(_V1_CPU)):
            self.dirs[ctl] = self.rel  # co-mounted with cpu (e.g. cpu,cpuacct): the same directory
            return
        rel = f"{base}/novatune-{self.name}"
        path = self.root.path(rel)
        if path.exists():
            raise ActuatorError(f"{path} exists already (left by a killed run? run `novatune recover`)")
        journal = self._journal()
        journal.record_cgroup(self.run_id, rel, root=str(self.root.root), version=1)
        try:
            os.mkdir(path, 0o755)
        except OSError as err:
            journal.release_cgroup(self.run_id, rel, note=f"mkdir failed: {err}")
            raise ActuatorError(f"cannot create cgroup {path}: {err.strerror or err}") from err
        self.dirs[ctl] = rel
        if ctl == "cpuset":  # an empty cpuset cannot take tasks: start from the parent's
            for f in ("cpuset.cpus", "cpuset.mems"):
                self.root.write(f"{rel}/{f}", self.root.read(f"{base}/{f}").strip() or "0")

    def dir_for(self, controller: str) -> str | None:
        """Root-relative directory holding ``controller``'s files, None when the run has none."""
        if self.version == 2:
            return self.rel
        return self.dirs.get(controller)

    @property
    def path(self) -> Path:
        """The cgroup directory."""
        return self.root.path(self.rel)

    @property
    def procs_file(self) -> Path:
        """The cpu controller's ``cgroup.procs`` (see :attr:`procs_files` for all of them)."""
        return self.root.path(f"{self.rel}/cgroup.procs")

    @property
    def procs_files(self) -> list[Path]:
        """Write a pid into each (e.g. in a preexec_fn) to move that process into the cgroup."""
        return [self.root.path(f"{d}/cgroup.procs") for d in dict.fromkeys(self.dirs.values())]

    def attach(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the cgroup, in every controller.

        Raises:
            ActuatorError: the kernel refused.
        """
        for d in dict.fromkeys(self.dirs.values()):
            self.root.write(f"{d}/cgroup.procs", str(int(pid)))

    def pids(self) -> list[int]:
        """Processes in the cgroup (``[]`` once removed)."""
        if self.removed or not self.root.exists(f"{self.rel}/cgroup.procs"):
            return []
        return [int(x) for x in self.root.read(f"{self.rel}/cgroup.procs").split()]

    def remove(self) -> None:
        """SIGKILL remaining tasks, wait, rmdir, journal ``released``. Idempotent.

        Raises:
            ActuatorError: tasks do not go away or rmdir failed.
        """
        if self.removed:
            return
        journal = self._journal()
        for rel in reversed(list(dict.fromkeys(self.dirs.values()))):
            if self.root.path(rel).exists():
                kill_cgroup_tasks(self.root, rel)
                self.root.rmdir(rel)
            journal.release_cgroup(self.run_id, rel)
        self.removed = True
        if self.enabled_in_parent:
            control = f"{_V2}/cgroup.subtree_control"
            notes = []
            for c in reversed(self.enabled_in_parent):
                try:
                    self.root.write(control, f"-{c}")
                    notes.append(f"{c} disabled again")
                except ActuatorError as err:  # another cgroup uses it now: leave it on
                    notes.append(f"{c} left enabled: {err}")
            journal.release_cgroup(self.run_id, control, note="; ".join(notes))


def _words(root: SysRoot, rel: str) -> list[str]:
    try:
        return root.read(rel).split() if root.exists(rel) else []
    except ActuatorError:
        return []


class VcpusKnob(Knob):
    """``sizing.vcpus``: CPU bandwidth of the workload cgroup, in vCPUs (float).

    v1 writes ``cpu.cfs_quota_us = round(vcpus * cpu.cfs_period_us)`` (period
    untouched); v2 writes ``cpu.max = "QUOTA PERIOD"``. No limit (``-1`` /
    ``max``) reads as ``os.cpu_count()``.
    """

    def __init__(self, *, cgroup: CgroupDirs | None, name: str = "sizing.vcpus", ncpu: int | None = None) -> None:
        ncpu = ncpu or os.cpu_count() or 1
        super().__init__(
            name=name,
            domain=Domain("float", VCPUS_FLOOR, float(ncpu)),
            risk="medium",
            scope="cgroup",
            needs_root=True,
            unit="vCPU",
            description="CPU quota of the workload cgroup, in vCPUs (CFS bandwidth).",
        )
        self.cgroup = cgroup
        self.ncpu = ncpu

    def _files(self) -> tuple[SysRoot, str, str | None]:
        cg = self.cgroup
        if cg is None:
            raise KnobUnavailable(f"{self.name}: no workload cgroup in this context")
        if cg.version == 1:
            return cg.root, f"{cg.rel}/cpu.cfs_quota_us", f"{cg.rel}/cpu.cfs_period_us"
        return cg.root, f"{cg.rel}/cpu.max", None

    @property
    def path(self) -> str | None:
        """The quota file, None without a cgroup."""
        if self.cgroup is None:
            return None
        root, rel, _ = self._files()
        return str(root.path(rel))

    def available(self) -> str | None:
        if self.cgroup is None:
            return "no workload cgroup in this context (sizing.* binds to the cgroup a run creates)"
        if self.cgroup.removed:
            return f"cgroup {self.cgroup.path} was removed"
        root, rel, period = self._files()
        for f in (rel, period):
            if f is not None and not root.exists(f):
                return f"{root.path(f)} does not exist"
        if not root.writable(rel):
            return f"{root.path(rel)} is not writable (needs root)"
        return None

    def _quota_period(self) -> tuple[int | None, int, str]:
        root, rel, period_rel = self._files()
        raw = root.read(rel)
        try:
            if period_rel is not None:
                q = int(raw.split()[0])
                p = int(root.read(period_rel).split()[0])
                return (None if q < 0 else q), p, raw
            qs, ps = raw.split()[:2]
            return (None if qs == "max" else int(qs)), int(ps), raw
        except (ValueError, IndexError) as err:
            raise ActuatorError(f"{self.name}: cannot parse {raw!r} in {root.path(rel)}") from err

    @property
    def journal_root(self) -> str | None:
        return str(self.cgroup.root.root) if self.cgroup is not None else None

    @property
    def journal_target(self) -> str | None:
        return self._files()[1] if self.cgroup is not None else None

    def check_old(self, raw: str) -> None:
        """Whether ``raw`` (the quota file's old content, as journaled) is one this knob may write back:
        no limit (``-1`` / ``max``), or a quota within the hard bounds, with a period of 1 ms .. 1 s.

        Raises:
            OutOfBounds: anything else (the message says what is allowed).
        """
        words = raw.split()
        allowed = "allowed: -1 or a quota (v1), 'max PERIOD' or 'QUOTA PERIOD' (v2), period 1000..1000000 us"
        try:
            root, _, period_rel = self._files()
            if period_rel is not None:
                if len(words) != 1:
                    raise ValueError(raw)
                quota, period = int(words[0]), int(root.read(period_rel).split()[0])
                unlimited = quota == -1
            else:
                if len(words) != 2:
                    raise ValueError(raw)
                unlimited, period = words[0] == "max", int(words[1])
                quota = 0 if unlimited else int(words[0])
        except (ValueError, IndexError, ActuatorError):
            raise OutOfBounds(f"{self.name}: {raw!r} is not a quota; {allowed}") from None
        if not 1000 <= period <= 1_000_000:
            raise OutOfBounds(f"{self.name}: period {period} in {raw!r}; {allowed}")
        if not unlimited:
            self.normalise(quota / period)

    def read(self) -> float:
        q, p, _ = self._quota_period()
        return float(self.ncpu) if q is None else q / p

    def same(self, a: Any, b: Any) -> bool:
        return abs(float(a) - float(b)) <= 1e-4

    def prepare(self, value: Any) -> Token:
        v = self.validate(value)
        self.check_available()
        root, rel, period_rel = self._files()
        _, p, raw = self._quota_period()
        quota = round(v * p)
        new = str(quota) if period_rel is not None else f"{quota} {p}"
        return Token(knob=self.name, scope=self.scope, target=rel, old=raw, new=new, value=v)

    def commit(self, token: Token) -> None:
        root, _, _ = self._files()
        root.write(token.target, token.new)

    def restore(self, token: Token) -> None:
        root, _, _ = self._files()
        root.restore(token.target, token.old)
