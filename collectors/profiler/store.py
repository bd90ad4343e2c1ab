"""The profile store: every window (and hourly aggregate) compressed in one SQLite database, indexed with labels.

Layout (``directory``, created 0700, novatune's private data)::

    profiles.db          SQLite, WAL mode (profiles.db-wal, profiles.db-shm beside it)
      profiles           the index: id, kind (window | hourly), start_s, end_s, duration_s, mode, engine,
                         rate_hz, pid, target (command line), cgroup, samples, stored_bytes, windows,
                         bucket, created_s
      labels             (profile_id, key, value), indexed by (key, value): queries by label
      blobs              (profile_id, sha256, size, data): zlib of the canonical JSON (Profile.to_dict())

Blobs live in the database, so a profile, its labels and its blob are written and removed in one
transaction: there is never an index row without its blob or a blob nobody lists. Each blob is checked
(size, SHA-256, decompression, the model's own parse) when read; a bad one is a :class:`ProfileError`
naming the id. :meth:`ProfileStore.list` reads the index only, so a bad blob never breaks a listing.

Retention (:meth:`ProfileStore.prune`): what ended more than ``retention_days`` ago goes, then the oldest
until the blobs total at most ``max_bytes``. Aggregation (:meth:`ProfileStore.aggregate`): windows that ended
more than ``aggregate_after_s`` ago merge into one hourly aggregate per bucket (hour, target, mode, label
set: :mod:`collectors.profiler.rollup`); each bucket is one transaction that writes (or extends) the
aggregate and deletes the windows it took, so a crash anywhere leaves either both or neither.

Safety: ids are checked against :data:`ID_PATTERN` before they reach SQL (always parameterised); the
directory must be owned by the running user and writable by nobody else, and the database and its WAL
files must be regular files (a symlink, device or hard link is refused). Concurrency: a connection per
call, WAL, a busy timeout, writes in ``BEGIN IMMEDIATE`` transactions: one writer thread (the watcher)
and readers (the API) in other threads or processes.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
import math
import os
import re
import secrets
import sqlite3
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collectors.profiler import rollup
from collectors.profiler.model import Profile, ProfileError
from collectors.profiler.storedb import StoreDatabase, UnsafeStore

__all__ = [
    "ID_PATTERN",
    "AggregateReport",
    "ProfileStore",
    "PruneReport",
    "StoredProfile",
    "UnknownProfile",
    "UnsafeStore",
    "check_id",
]

#: a profile id: 12 hex digits of milliseconds since the epoch (sortable), 8 random hex digits
ID_PATTERN = re.compile(r"\A[0-9a-f]{20}\Z")
#: label keys: what a query string or a spec can carry without quoting
_LABEL_KEY = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.\-]{0,63}\Z")
_MAX_LABELS = 64
_MAX_VALUE = 1024
#: the largest canonical JSON a blob may inflate to (a day of 100 Hz windows is far below it)
MAX_INFLATED = 256 * 1024 * 1024
_KINDS = ("window", "hourly")
#: label filters that also match an index column: key -> (column, converter)
_COLUMNS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "mode": ("mode", str), "engine": ("engine", str), "kind": ("kind", str), "pid": ("pid", int),
    "target": ("target", str), "cmdline": ("target", str), "cgroup": ("cgroup", str),
    "rate_hz": ("rate_hz", float), "rate": ("rate_hz", float),
}
#: the index columns as :class:`StoredProfile` names them
_ROW = ('p.id, p.kind, p.start_s AS "start", p.end_s AS "end", p.duration_s, p.mode, p.engine, p.rate_hz, '
        "p.pid, p.target, p.cgroup, p.samples, p.stored_bytes, p.windows")


class UnknownProfile(ProfileError, LookupError):
    """No stored profile has this id (exit 2, HTTP 404); the message names it and how to list ids."""

    exit_code = 2
    http_status = 404


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_id(profile_id: object) -> str:
    """``profile_id`` when it is a well-formed id (20 lowercase hex digits).

    Raises:
        ProfileError: it is not (the message shows it, shortened, and the allowed shape).
    """
    if not isinstance(profile_id, str) or not ID_PATTERN.match(profile_id):
        raise ProfileError(f"profile id {_shown(profile_id)} is malformed: an id is 20 lowercase hex digits "
                           "(`novatune profile list` shows them)")
    return profile_id


def _new_id() -> str:
    return f"{int(time.time() * 1000) & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(4)}"


def _encode(profile: Profile) -> bytes:
    """The blob: zlib (level 6) of the canonical JSON."""
    return zlib.compress(json.dumps(profile.to_dict(), separators=(",", ":")).encode(), 6)


def _epoch(value: float | dt.datetime | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ProfileError(f"{what} must be epoch seconds or a datetime, got {_shown(value)}")


def _now(now: float | dt.datetime | None) -> float:
    when = _epoch(now, "now")
    return time.time() if when is None else when


def _check_labels(labels: Mapping[str, str], what: str) -> dict[str, str]:
    if len(labels) > _MAX_LABELS:
        raise ProfileError(f"{what} has {len(labels)} labels; at most {_MAX_LABELS} are allowed")
    out = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise ProfileError(f"{what}: label key {_shown(key)} is malformed: a letter or '_' first, then up to "
                               "63 letters, digits, '_', '.', '-'")
        if not isinstance(value, str) or len(value) > _MAX_VALUE or "\0" in value:
            raise ProfileError(f"{what}: label {key} = {_shown(value)} must be a string of at most {_MAX_VALUE} "
                               "characters without NUL")
        out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """One row of the index: what :meth:`ProfileStore.list` returns (no samples; :meth:`ProfileStore.get` has
    them). ``start``/``end`` are epoch seconds (an aggregate: its first window's start, its last window's
    end); ``duration_s`` the seconds profiled; ``stored_bytes`` the compressed blob's size."""

    id: str
    kind: str
    start: float
    end: float
    duration_s: float
    mode: str
    engine: str
    rate_hz: float
    pid: int | None
    target: str
    cgroup: str
    samples: int
    stored_bytes: int
    windows: int
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What :meth:`ProfileStore.prune` removed: by age, then by size, and the bytes left."""

    deleted_by_age: int
    deleted_by_size: int
    bytes_freed: int
    bytes_left: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AggregateReport:
    """What :meth:`ProfileStore.aggregate` did: aggregates written or extended, windows merged into them,
    and the ids it could not read (left in place for retention to remove)."""

    aggregates: int
    windows_merged: int
    unreadable: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProfileStore:
    """Profiles under ``directory`` (see the module docstring).

    Args:
        directory: the store's directory (created 0700 when missing, its parents too).
        retention_days: what ended longer ago than this is pruned (> 0).
        max_bytes: the compressed blobs' total kept at most by :meth:`prune` (> 0).
        aggregate_after_s: windows that ended longer ago than this are merged by :meth:`aggregate` (>= 0).
        busy_timeout_s: how long a call waits for another writer's lock.

    Raises:
        ProfileError: an option is out of range, or the database is not a profile store (or a newer one).
        UnsafeStore: the directory or the database is not novatune's private file.
    """

    def __init__(self, directory: str | os.PathLike[str], *, retention_days: float = 7.0,
                 max_bytes: int = 512 * 1024 * 1024, aggregate_after_s: float = 3600.0,
                 busy_timeout_s: float = 10.0) -> None:
        if not (isinstance(retention_days, (int, float)) and math.isfinite(retention_days) and retention_days > 0):
            raise ProfileError(f"retention_days must be a number > 0, got {_shown(retention_days)}")
        if not (isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and max_bytes > 0):
            raise ProfileError(f"max_bytes must be an integer > 0, got {_shown(max_bytes)}")
        if not (isinstance(aggregate_after_s, (int, float)) and math.isfinite(aggregate_after_s)
                and aggregate_after_s >= 0):
            raise ProfileError(f"aggregate_after_s must be a number >= 0, got {_shown(aggregate_after_s)}")
        self.directory = Path(directory)
        self.retention_days = float(retention_days)
        self.max_bytes = max_bytes
        self.aggregate_after_s = float(aggregate_after_s)
        self.busy_timeout_s = float(busy_timeout_s)
        #: called inside :meth:`aggregate`'s transaction after an aggregate is written and before its windows
        #: are deleted, with the aggregate's id (tests inject a crash here); None in production
        self._after_aggregate_write: Callable[[str], None] | None = None
        self._db = StoreDatabase(self.directory, busy_timeout_s=self.busy_timeout_s)
        self.path = self._db.path

    # -- writing ----------------------------------------------------------------------------------
    def put(self, profile: Profile) -> str:
        """Stores one window; returns its new id.

        The index takes the window's start from ``meta.start`` (the time of the call minus its duration
        when ``meta.start`` is unset) and its labels from ``meta.labels``; the blob is the canonical JSON.

        Raises:
            ProfileError: ``profile`` is not a Profile, its start or duration is not a finite number >= 0,
                or a label key or value is malformed.
            UnsafeStore: see the class.
        """
        if not isinstance(profile, Profile):
            raise ProfileError(f"only a Profile can be stored, not {type(profile).__name__}")
        meta = profile.meta
        labels = _check_labels(meta.labels, "profile")
        duration = float(meta.duration_s)
        if not (math.isfinite(duration) and duration >= 0 and math.isfinite(meta.start) and meta.start >= 0):
            raise ProfileError(f"profile start {meta.start!r} and duration {meta.duration_s!r} must be finite "
                               "numbers >= 0")
        start = meta.start if meta.start > 0 else time.time() - duration
        blob = _encode(profile)
        with self._db.writing() as conn:
            profile_id = self._insert(conn, profile, blob, kind="window", start=start, end=start + duration,
                                      windows=1, bucket=rollup.bucket_key(meta, start), labels=labels)
        return profile_id

    def _insert(self, conn: sqlite3.Connection, profile: Profile, blob: bytes, *, kind: str, start: float,
                end: float, windows: int, bucket: str, labels: Mapping[str, str],
                profile_id: str | None = None) -> str:
        """Writes the index row, the labels and ``blob`` (:func:`_encode` of ``profile``) inside the caller's
        transaction; returns the id (``profile_id``, else a new one)."""
        meta = profile.meta
        for _ in range(8):
            new_id = profile_id or _new_id()
            try:
                conn.execute(
                    "INSERT INTO profiles (id, kind, start_s, end_s, duration_s, mode, engine, rate_hz, pid, target,"
                    " cgroup, samples, stored_bytes, windows, bucket, created_s)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (new_id, kind, start, end, float(meta.duration_s), meta.mode, meta.engine, float(meta.rate_hz),
                     meta.pid, meta.cmdline, meta.cgroup, profile.total, len(blob), windows, bucket, time.time()))
                break
            except sqlite3.IntegrityError:
                if profile_id is not None:
                    raise
        else:  # pragma: no cover - 8 random 32-bit collisions in one millisecond
            raise ProfileError("could not choose a free profile id")
        conn.executemany("INSERT INTO labels (profile_id, key, value) VALUES (?, ?, ?)",
                         [(new_id, k, v) for k, v in labels.items()])
        conn.execute("INSERT INTO blobs (profile_id, sha256, size, data) VALUES (?, ?, ?, ?)",
                     (new_id, hashlib.sha256(blob).hexdigest(), len(blob), blob))
        return new_id

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, ids: builtins.list[str]) -> None:
        """Deletes profiles by id with their labels and blobs (cascade), inside the caller's transaction."""
        conn.executemany("DELETE FROM profiles WHERE id = ?", [(i,) for i in ids])

    def delete(self, profile_id: str) -> None:
        """Deletes one stored profile (window or aggregate).

        Raises:
            ProfileError: the id is malformed.
            UnknownProfile: no profile has it.
        """
        check_id(profile_id)
        with self._db.writing() as conn:
            if conn.execute("DELETE FROM profiles WHERE id = ?", (profile_id,)).rowcount == 0:
                raise self._unknown(profile_id)

    # -- reading ----------------------------------------------------------------------------------
    @staticmethod
    def _unknown(profile_id: str) -> UnknownProfile:
        return UnknownProfile(f"no stored profile has id {profile_id}; `novatune profile list` (GET "
                              "/profiling/profiles) shows the ids there are")

    def get(self, profile_id: str) -> Profile:
        """The stored profile ``profile_id``, exactly as it was put (an aggregate: as merged).

        Raises:
            ProfileError: the id is malformed, or the stored blob is corrupted (the message names the id).
            UnknownProfile: no profile has this id.
        """
        check_id(profile_id)
        with self._db.connect() as conn:
            return self._load(conn, profile_id)

    def _load(self, conn: sqlite3.Connection, profile_id: str) -> Profile:
        row = conn.execute("SELECT b.sha256, b.size, b.data FROM profiles p LEFT JOIN blobs b ON b.profile_id = p.id"
                           " WHERE p.id = ?", (profile_id,)).fetchone()
        if row is None:
            raise self._unknown(profile_id)
        data = row["data"]
        try:
            if not isinstance(data, bytes):
                raise ValueError("its blob is missing")
            if len(data) != row["size"] or hashlib.sha256(data).hexdigest() != row["sha256"]:
                raise ValueError(f"checksum mismatch ({len(data)} bytes, {row['size']} recorded)")
            inflater = zlib.decompressobj()
            doc = inflater.decompress(data, MAX_INFLATED)
            if inflater.unconsumed_tail or not inflater.eof:
                raise ValueError(f"truncated, or more than {MAX_INFLATED} bytes when inflated")
            return Profile.from_dict(json.loads(doc))
        except (ValueError, zlib.error, ProfileError) as err:  # JSONDecodeError and UnicodeError are ValueErrors
            raise ProfileError(f"stored profile {profile_id} is corrupted and cannot be read ({err}); "
                               "delete it, or retention removes it") from err

    def list(self, labels: Mapping[str, str] | None = None, *, since: float | dt.datetime | None = None,
             until: float | dt.datetime | None = None, kind: str | None = None,
             limit: int = 100) -> builtins.list[StoredProfile]:
        """Index rows matching every filter, newest start first, at most ``limit``.

        ``labels``: every ``key = value`` must hold (AND); a key that names an index column (``mode``,
        ``engine``, ``kind``, ``pid``, ``target``/``cmdline``, ``cgroup``, ``rate_hz``/``rate``) matches the
        column too. ``since``/``until`` (epoch seconds or datetimes; naive ones are UTC): the profile's span
        overlaps ``[since, until)``. ``kind``: ``"window"`` or ``"hourly"``. Blobs are not read.

        Raises:
            ProfileError: a filter is malformed, ``kind`` is unknown, or ``limit`` is not 1..10000.
        """
        where, params = self._filters(labels, since=since, until=until, kind=kind)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10000:
            raise ProfileError(f"limit must be an integer from 1 to 10000, got {_shown(limit)}")
        sql = (f"SELECT {_ROW}, (SELECT json_group_object(l.key, l.value) FROM labels l WHERE l.profile_id = p.id)"
               f" AS labels FROM profiles p WHERE {' AND '.join(where)} ORDER BY p.start_s DESC, p.id DESC LIMIT ?")
        with self._db.connect() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        out = []
        for row in rows:
            fields = dict(row)
            out.append(StoredProfile(**fields | {"labels": json.loads(fields["labels"])}))
        return out

    @staticmethod
    def _filters(labels: Mapping[str, str] | None, *, since: float | dt.datetime | None,
                 until: float | dt.datetime | None, kind: str | None) -> tuple[builtins.list[str], builtins.list[Any]]:
        where: builtins.list[str] = ["1 = 1"]
        params: builtins.list[Any] = []
        for key, value in _check_labels(dict(labels or {}), "label filter").items():
            clause = "p.id IN (SELECT l.profile_id FROM labels l WHERE l.key = ? AND l.value = ?)"
            params += [key, value]
            if key in _COLUMNS:
                column, convert = _COLUMNS[key]
                try:
                    params.append(convert(value))
                    clause = f"({clause} OR p.{column} = ?)"
                except ValueError:
                    pass
            where.append(clause)
        since_s, until_s = _epoch(since, "since"), _epoch(until, "until")
        if since_s is not None:
            where.append("p.end_s >= ?")
            params.append(since_s)
        if until_s is not None:
            where.append("p.start_s < ?")
            params.append(until_s)
        if kind is not None:
            if kind not in _KINDS:
                raise ProfileError(f"kind {_shown(kind)} is unknown: use one of {', '.join(_KINDS)}")
            where.append("p.kind = ?")
            params.append(kind)
        return where, params

    def stats(self) -> dict[str, Any]:
        """``count``, ``windows``, ``hourly``, ``samples``, ``bytes`` (compressed blobs), ``file_bytes``
        (the database and its WAL on disk), ``oldest`` (earliest start), ``newest`` (latest end; both None
        when empty), ``max_bytes``, ``retention_days``."""
        with self._db.connect() as conn:
            row = conn.execute("SELECT COUNT(*) AS n, COALESCE(SUM(kind = 'window'), 0) AS w,"
                               " COALESCE(SUM(kind = 'hourly'), 0) AS h, COALESCE(SUM(samples), 0) AS s,"
                               " COALESCE(SUM(stored_bytes), 0) AS b, MIN(start_s) AS lo, MAX(end_s) AS hi"
                               " FROM profiles").fetchone()
        on_disk = self._db.file_bytes()
        return {"count": row["n"], "windows": row["w"], "hourly": row["h"], "samples": row["s"], "bytes": row["b"],
                "file_bytes": on_disk, "oldest": row["lo"], "newest": row["hi"], "max_bytes": self.max_bytes,
                "retention_days": self.retention_days}

    # -- retention --------------------------------------------------------------------------------
    def prune(self, now: float | dt.datetime | None = None) -> PruneReport:
        """Deletes what ended more than ``retention_days`` before ``now`` (windows and aggregates alike), then
        the oldest (by start) until the blobs total at most ``max_bytes``; each step one transaction.

        Raises:
            ProfileError: ``now`` is malformed, or the database is busy past the timeout.
        """
        now_s = _now(now)
        with self._db.writing() as conn:
            old = conn.execute("SELECT id, stored_bytes FROM profiles WHERE end_s < ?",
                               (now_s - self.retention_days * 86400.0,)).fetchall()
            self._delete_rows(conn, [r["id"] for r in old])
        with self._db.writing() as conn:
            total = conn.execute("SELECT COALESCE(SUM(stored_bytes), 0) FROM profiles").fetchone()[0]
            doomed: builtins.list[str] = []
            freed = 0
            if total > self.max_bytes:
                for row in conn.execute("SELECT id, stored_bytes FROM profiles ORDER BY start_s, id"):
                    if total - freed <= self.max_bytes:
                        break
                    doomed.append(row["id"])
                    freed += row["stored_bytes"]
            self._delete_rows(conn, doomed)
        if old or doomed:
            with self._db.connect() as conn:
                conn.execute("PRAGMA incremental_vacuum").fetchall()
        return PruneReport(deleted_by_age=len(old), deleted_by_size=len(doomed),
                           bytes_freed=sum(r["stored_bytes"] for r in old) + freed, bytes_left=total - freed)

    def aggregate(self, now: float | dt.datetime | None = None) -> AggregateReport:
        """Merges every window that ended ``aggregate_after_s`` or more before ``now`` into its bucket's hourly
        aggregate (:func:`collectors.profiler.rollup.merge_windows`; an existing aggregate of the bucket is
        extended), and deletes the windows merged.

        One transaction per bucket writes the aggregate and deletes its windows together, so a crash leaves
        both or neither, never a count in two places; a rerun does what is left, and with nothing left
        changes nothing. An unreadable window stays (and is reported); a bucket whose aggregate is
        unreadable is left as it is.

        Raises:
            ProfileError: ``now`` is malformed, or the database is busy past the timeout.
        """
        now_s = _now(now)
        cutoff = now_s - self.aggregate_after_s
        with self._db.connect() as conn:
            buckets = [r[0] for r in conn.execute(
                "SELECT DISTINCT bucket FROM profiles WHERE kind = 'window' AND end_s <= ?", (cutoff,))]
        aggregates = merged = 0
        unreadable: builtins.list[str] = []
        for bucket in buckets:
            taken, bad = self._aggregate_bucket(bucket, cutoff)
            aggregates += 1 if taken else 0
            merged += taken
            unreadable += bad
        return AggregateReport(aggregates=aggregates, windows_merged=merged, unreadable=tuple(unreadable))

    def _aggregate_bucket(self, bucket: str, cutoff: float) -> tuple[int, builtins.list[str]]:
        """One bucket in one transaction: returns (windows merged, ids that could not be read)."""
        with self._db.writing() as conn:
            rows = conn.execute("SELECT id, start_s, end_s FROM profiles WHERE bucket = ? AND kind = 'window'"
                                " AND end_s <= ? ORDER BY start_s, id", (bucket, cutoff)).fetchall()
            old = conn.execute("SELECT id, start_s, end_s FROM profiles WHERE bucket = ? AND kind = 'hourly'",
                               (bucket,)).fetchone()
            parts, spans, taken, bad = [], [], [], []
            if old is not None:
                try:
                    parts.append(self._load(conn, old["id"]))
                except ProfileError:
                    return 0, [old["id"]]
                spans.append((old["start_s"], old["end_s"]))
            for row in rows:
                try:
                    parts.append(self._load(conn, row["id"]))
                except ProfileError:
                    bad.append(row["id"])
                    continue
                taken.append(row["id"])
                spans.append((row["start_s"], row["end_s"]))
            if not taken:
                return 0, bad
            result = rollup.merge_windows(parts)
            if old is not None:
                self._delete_rows(conn, [old["id"]])
            agg_id = self._insert(conn, result, _encode(result), kind="hourly", start=min(s for s, _ in spans),
                                  end=max(e for _, e in spans), windows=int(result.meta.labels[rollup.WINDOWS_LABEL]),
                                  bucket=bucket, labels=result.meta.labels,
                                  profile_id=old["id"] if old is not None else None)
            if self._after_aggregate_write is not None:
                self._after_aggregate_write(agg_id)
            self._delete_rows(conn, taken)
        return len(taken), bad
