"""Crash recovery: put back what killed runs left changed.

Works from the journal alone, without a catalog: each open entry records the
file (relative to a root) and its raw old content, or the per-thread affinity
masks; the typed reader (:mod:`actuators.records`) reads it and the one
restore path (:mod:`actuators.restore`) puts it back. Nothing a record says is
trusted: every knob intent is re-validated as a fresh apply would be
(:func:`actuators.vetting.vet_intent`: its knob, its exact file, its old value
within the hard bounds), a process is killed only when it is provably the one
the run spawned (:func:`actuators.ownership.check_signal`: recorded start time,
or a novatune cgroup; never pid 1, kernel threads or novatune itself), a cgroup
is emptied and removed only when it is a novatune cgroup, a scratch directory
deleted only when it is ``novatune-*`` in the temp dir. What is refused is
reported (``report.refused``, the log) and never touched; a refused intent is
closed with a ``refused`` record. Idempotent: a second call finds
nothing open. Runs marked kept (applied to stay, see :mod:`actuators.journal`)
are never restored here, not even with ``force``: ``novatune rollback`` undoes them.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actuators.cgroup import kill_cgroup_tasks
from actuators.errors import ActuatorError, UnsafePath
from actuators.journal import Journal, same_process
from actuators.loopdev import release as release_loop
from actuators.ownership import check_signal, kill_verified, novatune_cgroup, novatune_netns, process_starttime
from actuators.records import REFUSED_EVENT, CgroupRecord, JournalView, KnobIntent, ProcessRecord, ResourceRecord
from actuators.restore import Refused, Skipped, check_root, restore_intent
from actuators.sysroot import SysRoot

__all__ = ["RecoverReport", "recover"]

log = logging.getLogger(__name__)

#: the v2 root's subtree_control: where a run enables the controllers it needs (and recover disables them)
_V2_CONTROL = "sys/fs/cgroup/cgroup.subtree_control"


@dataclass
class RecoverReport:
    """What :func:`recover` did.

    ``restored``/``failed``/``skipped`` name journal entries (``run: knob target``);
    ``refused`` names every record that named something novatune would not write,
    kill or remove (a knob intent, a process, a cgroup, a scratch directory), with why;
    ``skipped_live`` lists runs whose owner is still alive (not touched without
    ``force``); ``kept`` the runs with open entries left alone because they were
    applied to stay; ``killed`` the pids killed; ``cgroups_removed`` the cgroup
    directories removed; ``scratch_removed`` the scratch directories deleted;
    ``runs`` the runs recovered. ``knobs`` has one dict per open knob entry, in
    the order handled: ``run``, ``knob``, ``target``, ``seq``, ``outcome``
    (``restored`` | ``gone`` | ``failed`` | ``skipped`` | ``refused``) and ``detail``.
    """

    restored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    cgroups_removed: list[str] = field(default_factory=list)
    scratch_removed: list[str] = field(default_factory=list)
    netns_removed: list[str] = field(default_factory=list)
    loops_removed: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    knobs: list[dict[str, Any]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return asdict(self)


@dataclass
class _DeadRun:
    """What a dead (or forced) run left open."""

    run: str
    procs: list[ProcessRecord]
    cgroups: list[CgroupRecord]
    scratch: list[ResourceRecord]
    netns: list[ResourceRecord] = field(default_factory=list)
    loops: list[ResourceRecord] = field(default_factory=list)


def _kill(pid: int, starttime: int, *, timeout_s: float = 5.0) -> bool:
    """SIGKILL ``pid`` if it still has ``starttime``, and wait until it is gone (a zombie counts as gone)."""
    if not kill_verified(pid, starttime):
        return False
    deadline = time.monotonic() + timeout_s
    while process_starttime(pid) == starttime and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def _refuse(report: RecoverReport, what: str) -> None:
    """Report a refused record (and log it: the service's log, the CLI's stderr)."""
    report.refused.append(what)
    log.warning("recover refused %s", what)


def _close(journal: Journal, e: KnobIntent, event: str, *, error: str | None = None) -> None:
    try:
        journal.close_entry(e, event, error=error)
    except ActuatorError as err:  # the entry stays open: a later recover redoes it, harmlessly
        log.error("cannot journal %s of %s: %s", event, e.knob, err)


def _select(view: JournalView, report: RecoverReport, force: bool) -> tuple[list[_DeadRun], list[KnobIntent]]:
    """The runs to recover (kept runs and live owners' runs left alone, and reported) and their open intents."""
    kept = view.kept_runs()
    runs: list[_DeadRun] = []
    entries: list[KnobIntent] = []
    for run in view.runs():
        rv = view.of_run(run)
        open_entries = rv.open_intents()
        procs = [r for r in rv.open_resources("process") if isinstance(r, ProcessRecord)]
        cgroups = [r for r in rv.open_resources("cgroup") if isinstance(r, CgroupRecord)]
        scratch = rv.open_resources("scratch")
        netns = rv.open_resources("netns")
        loops = rv.open_resources("loop")
        if not (open_entries or procs or cgroups or scratch or netns or loops):
            continue
        if run in kept:  # applied to stay: only a rollback undoes it
            report.kept.append(run)
            continue
        if any(pid is not None and same_process(pid, ct) for pid, ct in rv.owners()) and not force:
            report.skipped_live.append(run)
            continue
        report.runs.append(run)
        runs.append(_DeadRun(run, procs, cgroups, scratch, netns, loops))
        entries.extend(open_entries)
    return runs, entries


def _kill_processes(journal: Journal, runs: list[_DeadRun], report: RecoverReport) -> None:
    """The runs' processes, so nothing changes a setting back under us: only those provably the run's
    (:func:`actuators.ownership.check_signal`); the others are reported and left alone."""
    for dead in runs:
        for p in dead.procs:
            check = check_signal(p.target, starttime=p.starttime, boot=p.boot_id, ctime=p.ctime)
            note = "gone"
            if check.verdict == "refused":
                _refuse(report, f"{dead.run}: process {p.target!r} (record {p.seq}): not killed: {check.why}")
                note = f"not killed: {check.why}"
            elif check.verdict == "ok" and check.starttime is not None and _kill(p.target, check.starttime):
                report.killed.append(p.target)
                note = "killed"
            if isinstance(p.target, int) and not isinstance(p.target, bool):
                journal.release_process(dead.run, p.target, note=f"recover: {note}")
            else:
                journal.append({"run": dead.run, "kind": "process", "event": "released", "target": p.target,
                                "note": f"recover: {note}"})


def _restore_knobs(journal: Journal, entries: list[KnobIntent], root: SysRoot, report: RecoverReport) -> None:
    """The knob entries of all those runs, newest first, each isolated."""
    for e in sorted(entries, key=lambda r: r.seq, reverse=True):
        run = str(e.run)
        label = f"{run}: {e.knob} {e.target}"
        row: dict[str, Any] = {"run": run, "knob": e.knob, "target": e.target, "seq": e.seq}
        try:
            how = restore_intent(e, root)
        except Refused as why:
            _refuse(report, str(why))
            report.knobs.append({**row, "outcome": "refused", "detail": str(why)})
            _close(journal, e, REFUSED_EVENT, error=str(why))
            continue
        except Skipped as why:
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


def _release_cgroup(c: CgroupRecord, root: SysRoot, report: RecoverReport) -> None:
    """Disable the controllers a run enabled in a v2 ``cgroup.subtree_control``, or remove its cgroup.

    Raises:
        Skipped: recorded under another root.
        UnsafePath: not a novatune cgroup (nor the v2 root's ``cgroup.subtree_control``), a symlink,
            or a controller novatune never enables.
        ActuatorError, OSError: removal failed.
    """
    rel = str(c.target)
    check_root(c.root, root)
    if rel == _V2_CONTROL:
        controllers = list(c.controllers or ("cpu",))
        bad = [ctl for ctl in controllers if ctl not in ("cpu", "memory", "cpuset")]
        if bad:
            raise UnsafePath(f"refused controllers {bad} in {rel}: novatune enables only cpu, memory and cpuset")
        for ctl in reversed(controllers):
            try:
                root.write(rel, f"-{ctl}")
            except ActuatorError as err:  # still used by others: leave it
                log.info("leaving %s enabled in %s: %s", ctl, rel, err)
        return
    novatune_cgroup(rel)
    if root.path(rel).is_symlink():
        raise UnsafePath(f"refused cgroup {rel!r}: a symlink")
    if root.path(rel).is_dir():
        report.killed.extend(kill_cgroup_tasks(root, rel))
        root.rmdir(rel)
        report.cgroups_removed.append(rel)


def _remove_cgroups(journal: Journal, runs: list[_DeadRun], root: SysRoot, report: RecoverReport) -> None:
    """The runs' cgroups, newest first."""
    for dead in runs:
        for c in reversed(dead.cgroups):
            rel = str(c.target)
            try:
                _release_cgroup(c, root, report)
            except Skipped as why:
                report.skipped.append(f"{dead.run}: cgroup {rel} ({why})")
                continue
            except UnsafePath as why:
                _refuse(report, f"{dead.run}: cgroup {rel!r} (record {c.seq}): {why}")
                journal.release_cgroup(dead.run, rel, note=f"recover: refused: {why}")
                continue
            except (ActuatorError, OSError) as err:
                report.failed.append(f"{dead.run}: cgroup {rel}: {err}")
                continue
            journal.release_cgroup(dead.run, rel, note="recover")


def _remove_scratch(journal: Journal, runs: list[_DeadRun], report: RecoverReport) -> None:
    """Scratch directories: only ``novatune-*`` directly under the system temp dir, never through a symlink."""
    for dead in runs:
        for d in dead.scratch:
            path = Path(str(d.target))
            try:
                if path.parent != Path(tempfile.gettempdir()) or not path.name.startswith("novatune-"):
                    raise UnsafePath(f"refused scratch directory {path}: not novatune-* in {tempfile.gettempdir()}")
                if path.is_symlink():
                    raise UnsafePath(f"refused scratch directory {path}: a symlink")
                if path.is_dir():
                    shutil.rmtree(path)
                    report.scratch_removed.append(str(path))
            except UnsafePath as why:
                _refuse(report, f"{dead.run}: {why}")
                journal.release_scratch(dead.run, path, note=f"recover: {why}")
                continue
            except (ActuatorError, OSError) as err:
                report.failed.append(f"{dead.run}: scratch {path}: {err}")
                continue
            journal.release_scratch(dead.run, path, note="recover")


def _remove_netns(journal: Journal, runs: list[_DeadRun], report: RecoverReport) -> None:
    """Network namespaces: only the names novatune makes (``ownership.NETNS_NAME``); deleting one deletes the
    veth end in it and so its peer; a veth end of that name left in the host namespace is deleted too."""
    ip = shutil.which("ip")
    listed: set[str] | None = None  # the namespaces that exist, listed once (when a run has one to delete)
    for dead in runs:
        for r in reversed(dead.netns):
            try:
                name = novatune_netns(r.target)
            except UnsafePath as why:
                _refuse(report, f"{dead.run}: {why}")
                journal.release_netns(dead.run, str(r.target), note=f"recover: {why}")
                continue
            if ip is None:
                report.failed.append(f"{dead.run}: netns {name}: the `ip` command is missing (iproute2)")
                continue
            try:
                if listed is None:
                    out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10).stdout
                    listed = {line.split()[0] for line in out.splitlines() if line.split()}
                if name in listed:
                    subprocess.run([ip, "netns", "delete", name], capture_output=True, timeout=10, check=True)
                    report.netns_removed.append(name)
                subprocess.run([ip, "link", "delete", "dev", name], capture_output=True, timeout=10)
            except (OSError, subprocess.SubprocessError) as err:
                report.failed.append(f"{dead.run}: netns {name}: {err}")
                continue
            journal.release_netns(dead.run, name, note="recover")


def _remove_loops(journal: Journal, runs: list[_DeadRun], report: RecoverReport) -> None:
    """Loop devices: every device still backed by a journaled backing file is detached (never one that
    another file backs now) and the file deleted, only a ``novatune-loop-*.img`` under the data directory."""
    for dead in runs:
        for r in reversed(dead.loops):
            target = str(r.target)
            try:
                detached = release_loop(target, journal.path.parent)
            except UnsafePath as why:
                _refuse(report, f"{dead.run}: {why}")
                journal.release_loop(dead.run, target, note=f"recover: {why}")
                continue
            except (ActuatorError, OSError) as err:
                report.failed.append(f"{dead.run}: loop {target}: {err}")
                continue
            report.loops_removed.extend(f"/dev/{d}" for d in detached)
            journal.release_loop(dead.run, target, note="recover")


def recover(journal: Journal, *, root: SysRoot | None = None, force: bool = False) -> RecoverReport:
    """Restore every open entry of every dead run (or of all runs, with ``force``).

    First kills the processes of those runs (only those provably the run's:
    recorded start time, or a novatune cgroup for older records; a reused pid
    is never killed); then restores the open entries
    of all of them newest first, in global journal order (when two dead runs
    changed the same file, the older run's saved value is written last), each
    isolated, through the one restore path (:func:`actuators.restore.restore_intent`);
    then removes the cgroups they created, newest first, their scratch
    directories, their network namespaces and their loop devices. Every step is journaled; a ``restored``
    record is written only after the write succeeded. Entries recorded under another root are
    skipped and reported; records that name anything novatune would not write,
    kill or remove are refused, reported (``report.refused``) and never acted
    on. ``report.knobs`` gives the outcome per knob entry.

    Raises:
        ActuatorError: the journal cannot be read.
    """
    root = root if root is not None else SysRoot()
    report = RecoverReport()
    runs, entries = _select(journal.view(), report, force)
    _kill_processes(journal, runs, report)
    _restore_knobs(journal, entries, root, report)
    _remove_cgroups(journal, runs, root, report)
    _remove_scratch(journal, runs, report)
    _remove_netns(journal, runs, report)
    _remove_loops(journal, runs, report)
    for dead in runs:
        journal.end(dead.run, note="recovered")
    return report
