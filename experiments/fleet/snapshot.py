"""What a host publishes into the fleet's database: a read-only copy of its data directory, kind by kind.

:func:`snapshot` reads today's local stores of one data directory (:class:`~experiments.settings.Paths`) and
returns, for every kind of :data:`~experiments.fleet.state.KINDS`, ``key -> JSON payload``:

==================  ==============================================  ===========================================
kind                source                                          key, payload
==================  ==============================================  ===========================================
studies             ``service.db`` (the background studies'         study name; name, state, managed, knobs,
                    registry, :mod:`experiments.study.manager`)     trials, created, updated, reason, resumes
applications        the journal (:func:`experiments.deploy.         application id; ``Application.as_dict()``
                    applications.history`)
recommendations     ``recommendations.json`` (the last              recommendation id; the saved advice (rank,
                    ``novatune recommend``)                         score, changes...), ``collected``, ``root``
proposals           ``rightsizing.db`` (right-sizing proposals)     proposal id; ``Proposal.to_dict()`` (state,
                                                                    history, allowed_next)
profiles            ``profiles/profiles.db`` (the index only, the   profile id; what ``novatune profile list
                    newest :data:`PROFILE_LIMIT`)                   --json`` shows
tuners              ``autotune/<id>/meta.json``                     tuner id; what ``novatune autotune status
                                                                    --json`` shows
==================  ==============================================  ===========================================

Nothing is created or changed: a missing file is an empty kind, and no store's constructor runs (they
create their files and directories). The SQLite stores are opened read-only, after the rule of
:mod:`collectors.sqlitefile` (regular files of this user with one link each; ``service.db`` too). A database
in WAL mode with no ``-wal``/``-shm`` beside it (no connection open: the usual case) is read as an immutable
file, since a read-only connection would create those two files; that read is kept only if the file did not
change meanwhile (a writer's checkpoint), else it is tried again. The journal is only read
(:meth:`actuators.Journal.records`, a shared lock), ``recommendations.json`` through
:func:`experiments.safefs.read_trusted`.

A store that exists but cannot be read safely (a link, another owner, a damaged or newer database) does not
stop the others: its kind is left out of :attr:`Snapshot.kinds` and the reason is in :attr:`Snapshot.skipped`,
so :func:`publish` leaves that kind's last publication in place.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from collectors.errors import NovatuneError
from collectors.sqlitefile import SqliteFile
from experiments.fleet.state import KINDS, FleetState
from experiments.settings import Paths

__all__ = ["PROFILE_LIMIT", "Snapshot", "publish", "snapshot"]

#: the newest profiles published (a week of 10 s windows is ~60 000 index rows; the fleet needs the recent ones)
PROFILE_LIMIT = 1000
#: how often an immutable read is tried again when a writer changed the file under it
_ATTEMPTS = 3
_T = TypeVar("_T")
#: the study registry's columns that are published (no pid, no spec)
_STUDY_COLUMNS = ("name", "state", "managed", "knobs", "trials", "created", "updated", "reason", "resumes")


@dataclass
class Snapshot:
    """What :func:`snapshot` read: ``kinds`` (kind -> key -> payload) of the kinds it could read, and
    ``skipped`` (kind -> why) of the stores that exist but could not be read safely."""

    kinds: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kinds": self.kinds, "skipped": self.skipped}


# ------------------------------------------------------------------ read-only SQLite
class _ReadOnlyFile(SqliteFile):
    """A :class:`SqliteFile` opened read-only and never created: the same file rule (:meth:`check_files`
    before every connection) and the same error mapping, without the constructor that creates the file and
    applies the schema."""

    def __init__(self, path: Path, *, what: str, unsafe: type[Exception], failed: type[Exception] | None,
                 busy_timeout_s: float = 5.0) -> None:
        # SqliteFile.__init__ is not called on purpose: it creates the file and writes the schema
        self.path = path
        self.what = what
        self.unsafe = unsafe
        self.failed = failed or unsafe
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = "NORMAL"
        self.row_factory = True
        self._local = threading.local()
        self.immutable = False

    def wal_mode(self) -> bool:
        """Whether the file's header says WAL (bytes 18 and 19 are 2), read without SQLite."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            head = os.pread(fd, 20, 0)
        finally:
            os.close(fd)
        return len(head) == 20 and head[18] == 2 and head[19] == 2

    def _open(self) -> sqlite3.Connection:
        self.check_files()
        query = "mode=ro&immutable=1" if self.immutable else "mode=ro"
        try:
            conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?{query}", uri=True,
                                   timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as err:
            raise self.failed(f"cannot open the {self.what} {self.path}: {err}") from err
        conn.row_factory = sqlite3.Row
        return conn


def _stamp(path: Path) -> tuple[int, ...]:
    st = os.lstat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _choose_mode(db: _ReadOnlyFile) -> bool:
    """Immutable for a WAL database nobody has open (no ``-wal``, no ``-shm``); a plain read-only connection
    when both exist (nothing to create) or the database is not in WAL mode. False: a WAL database with only
    one of its two files (a connection opening or closing it just now), to be looked at again."""
    if not db.wal_mode():
        db.immutable = False
        return True
    wal, shm = (os.path.lexists(f"{db.path}{s}") for s in ("-wal", "-shm"))
    db.immutable = not wal
    return wal == shm


def _read_db(db: _ReadOnlyFile, version: int, reader: Callable[[sqlite3.Connection], _T], empty: _T) -> _T:
    """``reader`` of one read transaction of ``db`` (``empty`` when the file is missing or has no schema yet).

    Raises:
        db.unsafe: a file breaks the rule of :mod:`collectors.sqlitefile`.
        db.failed: the database is damaged, of a newer schema than ``version``, or kept changing.
    """
    for attempt in range(_ATTEMPTS):
        if not os.path.lexists(db.path):
            return empty
        db.check_files()
        if _choose_mode(db):
            before = _stamp(db.path)
            try:
                out = _transaction(db, version, reader, empty)
            except db.failed:
                if not db.immutable or _stamp(db.path) == before:
                    raise
            else:
                if not db.immutable or _stamp(db.path) == before:
                    return out
        time.sleep(0.05 * (attempt + 1))  # a writer opened, closed or checkpointed it meanwhile: look again
    raise db.failed(f"{db.what} {db.path} kept changing while it was read (a writer opening, closing or "
                    "checkpointing it); it is read at the next publication")


def _transaction(db: _ReadOnlyFile, version: int, reader: Callable[[sqlite3.Connection], _T], empty: _T) -> _T:
    with db.connect() as conn:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            raise db.failed(f"{db.what} {db.path} has schema {found}; this novatune reads {version}: use a newer "
                            "novatune on this host")
        if found == 0 and version > 0:
            return empty  # created, its schema not written yet
        conn.execute("BEGIN")  # one read transaction: every query sees the same state
        try:
            return reader(conn)
        finally:
            conn.execute("ROLLBACK")


# ------------------------------------------------------------------ the kinds
def _study(row: sqlite3.Row) -> dict[str, Any]:
    """One registry row as ``GET /studies`` shows its state: a background study whose worker is gone is
    ``interrupted`` until a service reconciles it (the registry is not changed by a read)."""
    from experiments.study.manager import ACTIVE, StudyRecord

    item = {c: row[c] for c in _STUDY_COLUMNS}
    item["managed"], item["knobs"] = bool(item["managed"]), json.loads(item["knobs"])
    rec = StudyRecord(name=row["name"], state=row["state"], managed=item["managed"], pid=row["pid"], knobs=[],
                      shared=[], trials=row["trials"], created=row["created"], updated=row["updated"],
                      pid_ctime=row["pid_ctime"])
    if rec.managed and rec.state in ACTIVE and rec.pid is not None and not rec.alive():
        item["state"] = "interrupted"
        item["reason"] = (f"its worker (pid {rec.pid}) is gone; `novatune serve` resumes the study, "
                          "`novatune study stop` ends it")
    return item


def _studies(paths: Paths) -> dict[str, Any]:
    db = _ReadOnlyFile(paths.home / "service.db", what="study registry", unsafe=NovatuneError, failed=None)

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'").fetchone() is None:
            return {}  # made by a manager that stopped before it wrote its schema
        rows = conn.execute(f"SELECT {', '.join(_STUDY_COLUMNS)}, pid, pid_ctime FROM studies ORDER BY created")
        return {str(r["name"]): _study(r) for r in rows.fetchall()}

    return _read_db(db, 0, read, {})


def _applications(paths: Paths) -> dict[str, Any]:
    from experiments.deploy.applications import history

    return {app.id: app.as_dict() for app in history(paths)}


def _recommendations(paths: Paths) -> dict[str, Any]:
    from experiments.safefs import read_trusted

    data = read_trusted(paths.home / "recommendations.json", what="the recommendations file")
    if data is None:
        return {}
    doc = json.loads(data)
    stamp = {"collected": doc.get("collected"), "root": doc.get("root")}
    return {str(r["id"]): {**r, **stamp} for r in doc.get("recommendations", [])}


def _proposals(paths: Paths) -> dict[str, Any]:
    from experiments.rightsizing.proposals import SCHEMA_VERSION, HistoryStep, Proposal, UnsafeProposalStore

    db = _ReadOnlyFile(paths.rightsizing_db, what="right-sizing store", unsafe=UnsafeProposalStore, failed=None)

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        out = {}
        for r in conn.execute("SELECT * FROM proposals ORDER BY created DESC, id DESC").fetchall():
            steps = conn.execute("SELECT state, who, at, note FROM history WHERE proposal_id = ? ORDER BY seq",
                                 (r["id"],)).fetchall()
            p = Proposal(id=r["id"], target=r["target"], profile=r["profile"], created=r["created"],
                         recommendation=json.loads(r["recommendation"]), values=json.loads(r["knob_values"]),
                         plan=json.loads(r["plan"]), state=r["state"], application=r["application"],
                         history=[HistoryStep(s["state"], s["who"], s["at"], s["note"]) for s in steps])
            out[p.id] = p.to_dict()
        return out

    return _read_db(db, SCHEMA_VERSION, read, {})


def _profiles(paths: Paths) -> dict[str, Any]:
    from collectors.profiler.model import ProfileError
    from collectors.profiler.store import StoredProfile
    from collectors.profiler.storedb import DB_NAME, SCHEMA_VERSION, UnsafeStore

    db = _ReadOnlyFile(paths.profiles / DB_NAME, what="profile store", unsafe=UnsafeStore, failed=ProfileError)
    sql = ('SELECT p.id, p.kind, p.start_s AS "start", p.end_s AS "end", p.duration_s, p.mode, p.engine, '
           "p.rate_hz, p.pid, p.target, p.cgroup, p.samples, p.stored_bytes, p.windows, "
           "(SELECT json_group_object(l.key, l.value) FROM labels l WHERE l.profile_id = p.id) AS labels "
           "FROM profiles p ORDER BY p.start_s DESC, p.id DESC LIMIT ?")

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        out = {}
        for r in conn.execute(sql, (PROFILE_LIMIT,)).fetchall():
            fields = dict(r)
            out[fields["id"]] = StoredProfile(**fields | {"labels": json.loads(fields["labels"])}).to_dict()
        return out

    try:
        st = os.lstat(paths.profiles)
    except FileNotFoundError:
        return {}
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise UnsafeStore(f"profile store directory {paths.profiles} is a symbolic link, not a directory, another "
                          "user's or writable by others; it must be a real directory of this user")
    return _read_db(db, SCHEMA_VERSION, read, {})


def _tuners(paths: Paths) -> dict[str, Any]:
    from experiments.autotune.service import summaries

    return {str(s["id"]): s for s in summaries(paths)}


_READERS: dict[str, Callable[[Paths], dict[str, Any]]] = {
    "studies": _studies, "applications": _applications, "recommendations": _recommendations,
    "proposals": _proposals, "profiles": _profiles, "tuners": _tuners,
}


# ------------------------------------------------------------------ the API
def snapshot(paths: Paths) -> Snapshot:
    """Every kind of :data:`~experiments.fleet.state.KINDS` read from the data directory ``paths``, creating
    and changing nothing; a kind whose store cannot be read safely is in ``skipped`` with the reason."""
    out = Snapshot()
    for kind in KINDS:
        try:
            out.kinds[kind] = _READERS[kind](paths)
        except (NovatuneError, OSError, ValueError, KeyError, TypeError, sqlite3.Error) as err:
            out.skipped[kind] = f"{type(err).__name__}: {err}"
    return out


def publish(state: FleetState, host_id: str, paths: Paths) -> Snapshot:
    """:func:`snapshot` of ``paths``, each kind read published whole as ``host_id``'s (a skipped kind keeps
    its last publication); returns the snapshot.

    Raises:
        InvalidCommand: a payload that is not JSON or a key longer than 256 characters.
        HostStoreError: the fleet's database cannot be written.
    """
    snap = snapshot(paths)
    for kind, items in snap.kinds.items():
        state.publish(host_id, kind, items)
    return snap
