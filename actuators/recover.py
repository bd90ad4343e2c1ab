"""Crash recovery: put back what killed runs left changed.

Works from the journal alone, without a catalog: each open entry records the
file (relative to a root) and its raw old content, or the per-thread affinity
masks. Targets outside ``/proc/sys``, ``/sys/kernel/mm``, ``/sys/block`` and
``/sys/fs/cgroup`` under the root are refused. Idempotent: a second call finds
nothing open.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actuators.affinity import restore_affinity
from actuators.cgroup import kill_cgroup_tasks
from actuators.errors import ActuatorError, UnsafePath
from actuators.journal import OPENING_EVENTS, Journal, process_ctime
from actuators.sysroot import RESTORABLE_PREFIXES, SysRoot

__all__ = ["RecoverReport", "recover"]

log = logging.getLogger(__name__)

_CTIME_TOL = 0.05


@dataclass
class RecoverReport:
    """What :func:`recover` did.

    ``restored``/``failed``/``skipped`` name journal entries (``run: knob target``);
    ``skipped_live`` lists runs whose owner is still alive (not touched without
    ``force``); ``killed`` the pids killed; ``cgroups_removed`` the cgroup
    directories removed; ``runs`` the runs recovered.
    """

    restored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    cgroups_removed: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return asdict(self)


class _Skip(Exception):
    pass


def _same_process(pid: int, ctime: Any) -> bool:
    now = process_ctime(int(pid))
    return now is not None and ctime is not None and abs(now - float(ctime)) < _CTIME_TOL


def _check_root(rec: dict[str, Any], root: SysRoot) -> None:
    recorded = rec.get("root")
    if recorded and Path(recorded) != root.root:
        raise _Skip(f"recorded under root {recorded}, recovering {root.root}")


def _restore_entry(e: dict[str, Any], root: SysRoot) -> str:
    if e.get("restore") == "affinity":
        n = restore_affinity(list(e.get("old") or []))
        return f"{n} thread(s)"
    _check_root(e, root)
    target = e.get("target")
    if not isinstance(target, str) or not target.startswith(RESTORABLE_PREFIXES):
        raise UnsafePath(f"refused target {target!r}: outside {', '.join(RESTORABLE_PREFIXES)}")
    old = e.get("old")
    if not isinstance(old, str):
        raise ActuatorError(f"no raw old content recorded for {target}")
    if not root.exists(target) and target.startswith(("sys/block/", "sys/fs/cgroup/")):
        # the device or the cgroup is gone, and its setting with it
        parent = root.path(target).parent
        if not parent.exists() or target.startswith("sys/fs/cgroup/"):
            return "gone"
    root.restore(target, old)
    return "ok"


def _kill(pid: int, *, timeout_s: float = 5.0) -> bool:
    """SIGKILL ``pid`` and wait until it is gone (a zombie counts as gone)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while process_ctime(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def recover(journal: Journal, *, root: SysRoot | None = None, force: bool = False) -> RecoverReport:
    """Restore every open entry of every dead run (or of all runs, with ``force``).

    Per run: kills the processes it recorded (only when pid AND create time
    match, so a reused pid is never killed), restores open entries in reverse
    order (each isolated), removes the cgroups it created, and journals each
    step. Entries recorded under another root are skipped and reported.

    Raises:
        ActuatorError: the journal cannot be read or written.
    """
    root = root if root is not None else SysRoot()
    report = RecoverReport()
    records = journal.records()
    runs: list[str] = list(dict.fromkeys(r["run"] for r in records if r.get("run") is not None))
    me = os.getpid()
    for run in runs:
        rr = [r for r in records if r.get("run") == run]
        entries = Journal.open_entries(rr)
        procs = Journal.open_resources(rr, "process")
        cgroups = Journal.open_resources(rr, "cgroup")
        if not (entries or procs or cgroups):
            continue
        owners = {(r.get("owner_pid"), r.get("owner_ctime")) for r in rr if r.get("event") in OPENING_EVENTS}
        if any(pid is not None and _same_process(pid, ct) for pid, ct in owners) and not force:
            report.skipped_live.append(run)
            continue
        report.runs.append(run)
        # 1. the run's processes
        for p in procs:
            pid = int(p["target"])
            note = "gone"
            if pid != me and _same_process(pid, p.get("ctime")):
                if _kill(pid):
                    report.killed.append(pid)
                    note = "killed"
            journal.release_process(run, pid, note=f"recover: {note}")
        # 2. knob entries, newest first, each isolated
        for e in reversed(entries):
            label = f"{run}: {e.get('knob')} {e.get('target')}"
            try:
                how = _restore_entry(e, root)
            except _Skip as why:
                report.skipped.append(f"{label} ({why})")
                continue
            except (ActuatorError, OSError) as err:
                report.failed.append(f"{label}: {err}")
                journal.close_entry(e, "restore_failed", error=str(err))
                continue
            report.restored.append(label if how == "ok" else f"{label} ({how})")
            journal.close_entry(e, "restored")
        # 3. cgroups, newest first
        for c in reversed(cgroups):
            rel = str(c["target"])
            try:
                _check_root(c, root)
                if not rel.startswith("sys/fs/cgroup/"):
                    raise UnsafePath(f"refused cgroup {rel!r}")
                if rel.endswith("/cgroup.subtree_control"):
                    try:
                        root.write(rel, "-cpu")
                    except ActuatorError as err:  # still used by others: leave it
                        log.info("leaving cpu enabled in %s: %s", rel, err)
                elif root.path(rel).is_dir():
                    report.killed.extend(kill_cgroup_tasks(root, rel))
                    root.rmdir(rel)
                    report.cgroups_removed.append(rel)
            except _Skip as why:
                report.skipped.append(f"{run}: cgroup {rel} ({why})")
                continue
            except (ActuatorError, OSError) as err:
                report.failed.append(f"{run}: cgroup {rel}: {err}")
                continue
            journal.release_cgroup(run, rel, note="recover")
        journal.end(run, note="recovered")
    return report
