"""The durable change journal: JSON lines, appended under ``flock``, fsynced.

Model: Optuna's ``JournalFileBackend``. One object per line; every record is
written and ``fsync``-ed BEFORE the change it describes, so a crash (even
SIGKILL between the two) never leaves a change without a record.

Record fields: ``seq`` (unique, increasing), ``time`` (epoch s), ``run``,
``trial``, ``kind`` (``knob`` | ``process`` | ``cgroup`` | ``run``), ``event``
(``intent`` | ``applied`` | ``restored`` | ``restore_failed`` | ``created`` |
``released`` | ``begin`` | ``end`` | ``kept``), ``knob``, ``scope``, ``target`` (file
relative to ``root``, a pid, or ``pids:...``), ``old`` (raw, byte-exact content
as read, or per-thread affinity entries), ``new``, ``root`` (the SysRoot the
target is under), ``ref`` (the ``seq`` of the intent/creation a later record
closes), ``owner_pid`` / ``owner_ctime`` (the writing process and its create
time; a run is alive while an owner of its opening records is).

An *open entry* is an ``intent`` with no later ``restored`` of the same seq
(an intent never marked applied is still open: the write may have happened).
A torn last line (crash mid-write) is skipped when reading, and the next
append starts on a fresh line.

*Kept runs* (``novatune apply``): a run with a ``kind: run, event: kept``
record (:data:`KEPT_EVENT`, written after every change of the run was
applied and read back) changed the system *to stay*: its open entries remain
open on purpose (they hold the values to roll back to) and :func:`recover`
leaves them alone. A run that dies before its ``kept`` record is an ordinary
dead run: recover undoes it.

:meth:`Journal.records` gives the lines as written; :meth:`Journal.view` the
same as typed records (:mod:`actuators.records`, the one place they are parsed).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from actuators.base import Token
from actuators.errors import ActuatorError, UnsafePath
from actuators.ownership import boot_id, process_starttime
from actuators.records import KEPT_EVENT, OPENING_EVENTS, JournalView, KnobIntent

__all__ = ["KEPT_EVENT", "OPENING_EVENTS", "Journal", "process_ctime", "same_process"]

log = logging.getLogger(__name__)


def process_ctime(pid: int) -> float | None:
    """psutil create time of ``pid``; None when it does not exist (or is a zombie, or is no pid at all)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


#: create times of one process read twice differ by rounding only
CTIME_TOLERANCE_S = 0.05


def same_process(pid: Any, ctime: Any) -> bool:
    """Whether ``pid`` is alive and still the process created at ``ctime`` (a reused pid is not)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(ctime, (int, float)):
        return False  # a record's field of another type (a journal is only bytes) names no process
    now = process_ctime(pid)
    return now is not None and abs(now - float(ctime)) < CTIME_TOLERANCE_S


def open_journal(path: Path, flags: int) -> int:
    """``os.open`` of the journal file, safely: never through a symlink (``O_NOFOLLOW``), never a FIFO or
    device (``O_NONBLOCK``, then a regular file is required), owned by this user, writable by no one
    else, and with one name only (a hard link to another file is refused). The file is created 0600.

    Raises:
        UnsafePath: the file is a symlink, not a regular file, owned by another user, group- or
            world-writable, or has other names (the message says which and what is required).
        OSError: it cannot be opened.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePath(f"refusing the journal {path}: it is a symlink; it must be a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        why = None
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        elif st.st_uid != os.geteuid():
            why = f"owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
        elif st.st_mode & 0o022:
            why = f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
        elif st.st_nlink != 1:
            why = f"it has {st.st_nlink} names (a hard link)"
        if why is not None:
            raise UnsafePath(f"refusing the journal {path}: {why}; it must be a regular file of this user's, "
                             "with one name, writable by no one else (0600)")
    except BaseException:
        os.close(fd)
        raise
    return fd


class Journal:
    """Append-only journal at ``path`` (created with its directory on first write).

    Thread- and process-safe: each append takes an exclusive ``flock`` on the
    file, allocates the next ``seq`` under it, writes one line and fsyncs.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._scanned = 0  # bytes of the file already scanned for seq
        self._last_seq = 0
        self._owner: tuple[int, float] | None = None
        self.skipped_lines = 0  # undecodable lines seen by the last records()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -------------------------------------------------------------- low level
    def _owner_id(self) -> tuple[int, float]:
        pid = os.getpid()
        if self._owner is None or self._owner[0] != pid:
            self._owner = (pid, psutil.Process(pid).create_time())
        return self._owner

    def _scan_seq(self, fd: int, size: int) -> None:
        if size < self._scanned:  # replaced or truncated: start over
            self._scanned, self._last_seq = 0, 0
        if size == self._scanned:
            return
        data = os.pread(fd, size - self._scanned, self._scanned)
        end = data.rfind(b"\n") + 1  # a torn tail is rescanned next time
        for line in data[:end].splitlines():
            try:
                seq = int(json.loads(line)["seq"])
            except (ValueError, KeyError, TypeError):
                continue
            self._last_seq = max(self._last_seq, seq)
        self._scanned += end

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add ``seq``, ``time`` and the owner to ``record``, write it and fsync.

        Returns:
            the record as written.
        Raises:
            ActuatorError: the journal cannot be written (then nothing may be changed).
        """
        pid, ctime = self._owner_id()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new_file = not self.path.exists()
            with self._lock:
                fd = open_journal(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    size = os.fstat(fd).st_size
                    self._scan_seq(fd, size)
                    prefix = b""
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        prefix = b"\n"  # a torn line from a crash: end it
                    self._last_seq += 1
                    full = {
                        "seq": self._last_seq,
                        "time": time.time(),
                        "run": None,
                        "trial": None,
                        **record,
                        "owner_pid": pid,
                        "owner_ctime": ctime,
                    }
                    full["seq"] = self._last_seq
                    data = prefix + json.dumps(full, sort_keys=True, separators=(",", ":")).encode() + b"\n"
                    written = 0
                    while written < len(data):
                        written += os.write(fd, data[written:])
                    os.fsync(fd)
                    self._scanned = size + len(data)
                finally:
                    os.close(fd)  # releases the flock
            if new_file:
                dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as err:
            raise ActuatorError(f"cannot write the journal {self.path}: {err.strerror or err}") from err
        return full

    def records(self) -> list[dict[str, Any]]:
        """Every decodable record, in file order; undecodable (torn) lines are skipped.

        Raises:
            ActuatorError: the journal exists but cannot be read.
        """
        try:
            with os.fdopen(open_journal(self.path, os.O_RDONLY), "rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH)
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise ActuatorError(f"cannot read the journal {self.path}: {err.strerror or err}") from err
        out: list[dict[str, Any]] = []
        skipped = 0
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            if isinstance(rec, dict) and isinstance(rec.get("seq"), int):
                out.append(rec)
            else:
                skipped += 1
        if skipped:
            log.warning("journal %s: %d undecodable line(s) skipped (torn write?)", self.path, skipped)
        self.skipped_lines = skipped
        return out

    def view(self) -> JournalView:
        """Every record, typed (:class:`~actuators.records.JournalView`).

        Raises:
            ActuatorError: the journal exists but cannot be read.
        """
        return JournalView(self.records())

    # ------------------------------------------------------------------- runs
    def begin(self, run_id: str, *, trial: int | None = None) -> dict[str, Any]:
        """Record that ``run_id`` starts (its owner is this process)."""
        return self.append({"run": run_id, "trial": trial, "kind": "run", "event": "begin"})

    def end(self, run_id: str, *, trial: int | None = None, note: str | None = None) -> dict[str, Any]:
        """Record that ``run_id`` ended."""
        return self.append({"run": run_id, "trial": trial, "kind": "run", "event": "end", "note": note})

    @contextmanager
    def run(self, run_id: str) -> Iterator[Journal]:
        """``begin`` on entry, ``end`` on exit (also on errors)."""
        self.begin(run_id)
        try:
            yield self
        finally:
            self.end(run_id)

    # ------------------------------------------------------------------ knobs
    def intent(self, run_id: str, trial: int | None, token: Token, *, root: str) -> dict[str, Any]:
        """Record a change about to be written; returns the record (its ``seq`` is the entry id)."""
        return self.append(
            {
                "run": run_id,
                "trial": trial,
                "kind": "knob",
                "event": "intent",
                "knob": token.knob,
                "scope": token.scope,
                "target": token.target,
                "restore": token.kind,
                "old": token.old,
                "new": token.new,
                "value": token.value,
                "root": root,
            }
        )

    def close_entry(
        self, entry: KnobIntent | dict[str, Any], event: str, *, error: str | None = None
    ) -> dict[str, Any]:
        """Record ``applied`` / ``restored`` / ``restore_failed`` for an intent record (typed or as written)."""
        if isinstance(entry, KnobIntent):
            entry = entry.raw
        rec = {
            "run": entry.get("run"),
            "trial": entry.get("trial"),
            "kind": "knob",
            "event": event,
            "knob": entry.get("knob"),
            "scope": entry.get("scope"),
            "target": entry.get("target"),
            "ref": entry["seq"],
        }
        if error is not None:
            rec["error"] = error
        return self.append(rec)

    # -------------------------------------------------------------- processes
    def record_process(self, run_id: str, pid: int, create_time: float | None = None) -> dict[str, Any]:
        """Record a process the run spawned (recover kills it if the run dies, and only it).

        The record carries the process's start time (``starttime``, clock ticks after boot, from
        ``/proc/<pid>/stat``) and the boot (``boot_id``): what proves to ``recover`` that the pid is
        still this process (:func:`actuators.ownership.check_signal`). ``create_time`` (psutil's, the
        default) is kept for older readers.

        Raises:
            ActuatorError: the process does not exist.
        """
        starttime = process_starttime(pid)
        if create_time is None:
            create_time = process_ctime(pid)
        if create_time is None or starttime is None:
            raise ActuatorError(f"process {pid} does not exist")
        return self.append(
            {"run": run_id, "kind": "process", "event": "created", "target": int(pid), "ctime": create_time,
             "starttime": starttime, "boot_id": boot_id()}
        )

    def release_process(self, run_id: str, pid: int, *, note: str | None = None) -> dict[str, Any]:
        """Record that the run no longer owns process ``pid``."""
        return self.append({"run": run_id, "kind": "process", "event": "released", "target": int(pid), "note": note})

    # ---------------------------------------------------------------- network namespaces
    def record_netns(self, run_id: str, name: str) -> dict[str, Any]:
        """Record a network namespace the run is about to create (before ``ip netns add``: a kill in
        between leaves a record ``recover`` deletes harmlessly)."""
        return self.append({"run": run_id, "kind": "netns", "event": "created", "target": name})

    def release_netns(self, run_id: str, name: str, *, note: str | None = None) -> dict[str, Any]:
        """Record that the network namespace ``name`` is gone."""
        return self.append({"run": run_id, "kind": "netns", "event": "released", "target": name, "note": note})

    # ---------------------------------------------------------------- loop devices
    def record_loop(self, run_id: str, backing: str | os.PathLike[str], device: str | None = None) -> dict[str, Any]:
        """Record a loop backing file the run is about to create and attach (before the file exists), then
        again with its ``device`` once attached; recover detaches the devices still backed by it and deletes
        it (:func:`actuators.loopdev.release`)."""
        return self.append({"run": run_id, "kind": "loop", "event": "created", "target": str(backing),
                            "device": device})

    def release_loop(self, run_id: str, backing: str | os.PathLike[str], *, note: str | None = None) -> dict[str, Any]:
        """Record that the loop backing file ``backing`` is detached and deleted."""
        return self.append({"run": run_id, "kind": "loop", "event": "released", "target": str(backing), "note": note})

    # ---------------------------------------------------------------- scratch directories
    def record_scratch(self, run_id: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Record a scratch directory a workload of the run created outside the data directory
        (e.g. a throwaway database cluster under the system temp dir); recover deletes it."""
        return self.append({"run": run_id, "kind": "scratch", "event": "created", "target": str(path)})

    def release_scratch(self, run_id: str, path: str | os.PathLike[str], *, note: str | None = None) -> dict[str, Any]:
        """Record that the scratch directory ``path`` is gone."""
        return self.append({"run": run_id, "kind": "scratch", "event": "released", "target": str(path), "note": note})

    # ---------------------------------------------------------------- cgroups
    def record_cgroup(
        self, run_id: str, rel: str, *, root: str, version: int, controllers: list[str] | None = None
    ) -> dict[str, Any]:
        """Record a cgroup directory the run is about to create (before mkdir).

        For a v2 ``cgroup.subtree_control``, ``controllers`` lists the ones the
        run is about to enable there (recover disables them again).
        """
        rec = {"run": run_id, "kind": "cgroup", "event": "created", "target": rel, "root": root, "version": version}
        if controllers is not None:
            rec["controllers"] = list(controllers)
        return self.append(rec)

    def release_cgroup(self, run_id: str, rel: str, *, note: str | None = None) -> dict[str, Any]:
        """Record that the run's cgroup ``rel`` is gone."""
        return self.append({"run": run_id, "kind": "cgroup", "event": "released", "target": rel, "note": note})

    # ---------------------------------------------------------------- queries
    # the records as written, for callers that keep them so; the reading is JournalView's
    @staticmethod
    def open_entries(records: list[dict[str, Any]], run_id: str | None = None) -> list[dict[str, Any]]:
        """Intents not followed by a ``restored`` record, in journal order (see :meth:`JournalView.open_intents`)."""
        return [r.raw for r in JournalView(records).open_intents(run_id)]

    @staticmethod
    def kept_runs(records: list[dict[str, Any]]) -> set[str]:
        """Runs marked kept (a ``kind: run``, ``event: kept`` record): recover never restores them."""
        return JournalView(records).kept_runs()

    @staticmethod
    def open_resources(records: list[dict[str, Any]], kind: str, run_id: str | None = None) -> list[dict[str, Any]]:
        """``created`` processes/cgroups of ``kind`` with no later ``released`` for the same target."""
        return [r.raw for r in JournalView(records).open_resources(kind, run_id)]
