"""Crash recovery: put back what killed runs left changed.

Works from the journal alone, without a catalog: each open entry records the
file (relative to a root) and its raw old content, or the per-thread affinity
masks. Targets outside ``/proc/sys``, ``/sys/kernel/mm``, ``/sys/block`` and
``/sys/fs/cgroup`` under the root are refused. Idempotent: a second call finds
nothing open. Runs marked kept (applied to stay, see :mod:`actuators.journal`)
are never restored here, not even with ``force``: ``novatune rollback`` undoes them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actuators.affinity import restore_affinity
from actuators.cgroup import kill_cgroup_tasks
from actuators.errors import ActuatorError, UnsafePath
from actuators.journal import OPENING_EVENTS, Journal, process_ctime, same_process
from actuators.net import netns_root
from actuators.nic import restore_nic
from actuators.process import restore_process
from actuators.sysroot import RESTORABLE_PREFIXES, SysRoot

__all__ = ["RecoverReport", "recover"]

log = logging.getLogger(__name__)



@dataclass
class RecoverReport:
    """What :func:`recover` did.

    ``restored``/``failed``/``skipped`` name journal entries (``run: knob target``);
    ``skipped_live`` lists runs whose owner is still alive (not touched without
    ``force``); ``kept`` the runs with open entries left alone because they were
    applied to stay; ``killed`` the pids killed; ``cgroups_removed`` the cgroup
    directories removed; ``scratch_removed`` the scratch directories deleted; ``runs`` the runs recovered. ``knobs`` has one dict
    per open knob entry, in the order handled: ``run``, ``knob``, ``target``,
    ``seq``, ``outcome`` (``restored`` | ``gone`` | ``failed`` | ``skipped``)
    and ``detail``.
    """

    restored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    cgroups_removed: list[str] = field(default_factory=list)
    scratch_removed: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    knobs: list[dict[str, Any]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return asdict(self)


class _Skip(Exception):
    pass



def _check_root(rec: dict[str, Any], root: SysRoot) -> None:
    recorded = rec.get("root")
    if recorded and Path(recorded) != root.root:
        raise _Skip(f"recorded under root {recorded}, recovering {root.root}")


def _check_target(target: Any) -> str:
    if not isinstance(target, str) or not target.startswith(RESTORABLE_PREFIXES):
        raise UnsafePath(f"refused target {target!r}: outside {', '.join(RESTORABLE_PREFIXES)}")
    return target


def _restore_entry(e: dict[str, Any], root: SysRoot) -> str:
    kind = e.get("restore")
    if kind == "affinity":
        n = restore_affinity(list(e.get("old") or []))
        return f"{n} thread(s)"
    if kind == "process":
        n = restore_process(str(e.get("knob")), list(e.get("old") or []))
        return f"{n} thread(s)"
    if kind == "nic":
        target = str(e.get("target"))
        ns = target.split(":", 1)[0]
        if ns and ns not in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []):
            return "gone"  # the namespace, and its interfaces, are gone
        restore_nic(target, e.get("old"))
        return "ok"
    _check_root(e, root)
    if kind == "files":
        old = e.get("old")
        if not isinstance(old, dict):
            raise ActuatorError(f"no raw old contents recorded for {e.get('target')}")
        for rel, raw in reversed(list(old.items())):
            root.restore(_check_target(rel), raw)
        return "ok"
    target = e.get("target")
    if isinstance(target, str) and target.startswith("netns:"):
        _, ns, rel = target.split(":", 2)
        ns_root = netns_root(root, ns)
        if ns_root.nsfile is None:
            return "gone"  # the namespace, and its settings, are gone
        ns_root.restore(_check_target(rel), str(e.get("old")))
        return "ok"
    target = _check_target(target)
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


def _close(journal: Journal, e: dict[str, Any], event: str, *, error: str | None = None) -> None:
    try:
        journal.close_entry(e, event, error=error)
    except ActuatorError as err:  # the entry stays open: a later recover redoes it, harmlessly
        log.error("cannot journal %s of %s: %s", event, e.get("knob"), err)


def recover(journal: Journal, *, root: SysRoot | None = None, force: bool = False) -> RecoverReport:
    """Restore every open entry of every dead run (or of all runs, with ``force``).

    First kills the processes of those runs (only when pid AND create time
    match, so a reused pid is never killed); then restores the open entries
    of all of them newest first, in global journal order (when two dead runs
    changed the same file, the older run's saved value is written last), each
    isolated; then removes the cgroups they created, newest first. Every step
    is journaled; a ``restored`` record is written only after the write
    succeeded. Entries recorded under another root are skipped and reported.
    ``report.knobs`` gives the outcome per knob entry.

    Raises:
        ActuatorError: the journal cannot be read.
    """
    root = root if root is not None else SysRoot()
    report = RecoverReport()
    records = journal.records()
    runs: list[str] = list(dict.fromkeys(r["run"] for r in records if r.get("run") is not None))
    kept = Journal.kept_runs(records)
    me = os.getpid()
    todo: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
    scratch_todo: list[tuple[str, list[dict[str, Any]]]] = []
    entries: list[dict[str, Any]] = []
    for run in runs:
        rr = [r for r in records if r.get("run") == run]
        open_entries = Journal.open_entries(rr)
        procs = Journal.open_resources(rr, "process")
        cgroups = Journal.open_resources(rr, "cgroup")
        scratch = Journal.open_resources(rr, "scratch")
        if not (open_entries or procs or cgroups or scratch):
            continue
        if run in kept:  # applied to stay: only a rollback undoes it
            report.kept.append(run)
            continue
        owners = {(r.get("owner_pid"), r.get("owner_ctime")) for r in rr if r.get("event") in OPENING_EVENTS}
        if any(pid is not None and same_process(pid, ct) for pid, ct in owners) and not force:
            report.skipped_live.append(run)
            continue
        report.runs.append(run)
        todo.append((run, procs, cgroups))
        scratch_todo.append((run, scratch))
        entries.extend(open_entries)
    # 1. the runs' processes, so nothing changes a setting back under us
    for run, procs, _ in todo:
        for p in procs:
            pid = int(p["target"])
            note = "gone"
            if pid != me and same_process(pid, p.get("ctime")):
                if _kill(pid):
                    report.killed.append(pid)
                    note = "killed"
            journal.release_process(run, pid, note=f"recover: {note}")
    # 2. knob entries of all those runs, newest first, each isolated
    for e in sorted(entries, key=lambda r: r["seq"], reverse=True):
        run = str(e.get("run"))
        label = f"{run}: {e.get('knob')} {e.get('target')}"
        row: dict[str, Any] = {"run": run, "knob": e.get("knob"), "target": e.get("target"), "seq": e["seq"]}
        try:
            how = _restore_entry(e, root)
        except _Skip as why:
            report.skipped.append(f"{label} ({why})")
            report.knobs.append({**row, "outcome": "skipped", "detail": str(why)})
            continue
        except (ActuatorError, OSError) as err:
            report.failed.append(f"{label}: {err}")
            report.knobs.append({**row, "outcome": "failed", "detail": str(err)})
            _close(journal, e, "restore_failed", error=str(err))
            continue
        report.restored.append(label if how == "ok" else f"{label} ({how})")
        gone = how == "gone"
        report.knobs.append({**row, "outcome": "gone" if gone else "restored", "detail": how if how != "ok" else ""})
        _close(journal, e, "restored")
    # 3. cgroups, newest first
    for run, _, cgroups in todo:
        for c in reversed(cgroups):
            rel = str(c["target"])
            try:
                _check_root(c, root)
                if not rel.startswith("sys/fs/cgroup/"):
                    raise UnsafePath(f"refused cgroup {rel!r}")
                if rel.endswith("/cgroup.subtree_control"):
                    for ctl in reversed(list(c.get("controllers") or ["cpu"])):
                        if ctl not in ("cpu", "memory", "cpuset"):
                            raise UnsafePath(f"refused controller {ctl!r} in {rel}")
                        try:
                            root.write(rel, f"-{ctl}")
                        except ActuatorError as err:  # still used by others: leave it
                            log.info("leaving %s enabled in %s: %s", ctl, rel, err)
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
    # 4. scratch directories (only novatune-* directly under the system temp dir, never through a symlink)
    for run, scratch in scratch_todo:
        for d in scratch:
            path = Path(str(d["target"]))
            try:
                if path.parent != Path(tempfile.gettempdir()) or not path.name.startswith("novatune-"):
                    raise UnsafePath(f"refused scratch directory {path}: not novatune-* in {tempfile.gettempdir()}")
                if path.is_symlink():
                    raise UnsafePath(f"refused scratch directory {path}: a symlink")
                if path.is_dir():
                    shutil.rmtree(path)
                    report.scratch_removed.append(str(path))
            except (ActuatorError, OSError) as err:
                report.failed.append(f"{run}: scratch {path}: {err}")
                continue
            journal.release_scratch(run, path, note="recover")
    for run, _, _ in todo:
        journal.end(run, note="recovered")
    return report
