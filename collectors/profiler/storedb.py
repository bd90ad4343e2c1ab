"""The profile store's database file: where it lives, who may own it, its schema, and how it is opened.

:class:`StoreDatabase` is the only code that touches the store's directory and files. The directory is
novatune's private data: created 0700 (missing parents too), it must be a real directory (not a symbolic
link) owned by the running user and writable by nobody else (a wider read mode is narrowed to 0700).
The database and its WAL files must be regular files of that user with one link each, checked before
every connection (a symlink, a device or a hard link is refused, never opened). A new database file is
created with ``O_EXCL | O_NOFOLLOW`` and mode 0600; SQLite gives its WAL files the same mode.

Each call gets a fresh connection (closed after it: safe across threads and processes), in WAL mode with
a busy timeout; writes run in ``BEGIN IMMEDIATE`` transactions, rolled back on any exception.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from collectors.profiler.model import ProfileError

__all__ = ["DB_NAME", "SCHEMA_VERSION", "StoreDatabase", "UnsafeStore"]

DB_NAME = "profiles.db"
SCHEMA_VERSION = 1
_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal")
#: the index (profiles), labels (one row per key, indexed by key and value) and blobs (zlib, checksummed);
#: one aggregate per bucket; deleting a profile deletes its labels and blob
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS profiles (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('window', 'hourly')),
        start_s REAL NOT NULL, end_s REAL NOT NULL, duration_s REAL NOT NULL,
        mode TEXT NOT NULL, engine TEXT NOT NULL, rate_hz REAL NOT NULL, pid INTEGER,
        target TEXT NOT NULL, cgroup TEXT NOT NULL, samples INTEGER NOT NULL, stored_bytes INTEGER NOT NULL,
        windows INTEGER NOT NULL, bucket TEXT NOT NULL, created_s REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS profiles_start ON profiles (start_s, id)",
    "CREATE INDEX IF NOT EXISTS profiles_kind_end ON profiles (kind, end_s)",
    "CREATE INDEX IF NOT EXISTS profiles_bucket ON profiles (bucket, kind)",
    "CREATE UNIQUE INDEX IF NOT EXISTS profiles_one_aggregate ON profiles (bucket) WHERE kind = 'hourly'",
    """CREATE TABLE IF NOT EXISTS labels (
        profile_id TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (profile_id, key)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS labels_key_value ON labels (key, value, profile_id)",
    """CREATE TABLE IF NOT EXISTS blobs (
        profile_id TEXT PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL)""",
)


class UnsafeStore(ProfileError):
    """The store's directory or database is not novatune's private file (a symbolic link, another owner, writable
    by others, a hard link); the message names it and what is required (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class StoreDatabase:
    """``directory/profiles.db``, made safe and current on construction.

    Raises:
        UnsafeStore: the directory cannot be created, or it or a database file breaks the rule above.
        ProfileError: the file is not a database, or has a newer schema than this novatune reads.
    """

    def __init__(self, directory: Path, *, busy_timeout_s: float) -> None:
        self.directory = directory
        self.path = directory / DB_NAME
        self.busy_timeout_s = busy_timeout_s
        self._make_directory()
        self._create()

    def _make_directory(self) -> None:
        missing = []
        path = self.directory.absolute()
        while not os.path.lexists(path):
            missing.append(path)
            path = path.parent
        for new in reversed(missing):
            try:
                os.mkdir(new, 0o700)
            except FileExistsError:
                pass
            except OSError as err:
                raise UnsafeStore(f"cannot create the profile store directory {new}: {err.strerror}") from err
        st = os.lstat(self.directory)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UnsafeStore(f"profile store directory {self.directory} is a symbolic link or not a directory; "
                              "it must be a real directory owned by this user")
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise UnsafeStore(f"profile store directory {self.directory} is owned by uid {st.st_uid} with mode "
                              f"{stat.S_IMODE(st.st_mode):o}; it must be owned by uid {os.geteuid()} and "
                              "writable by nobody else")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)

    def check_files(self) -> None:
        """Raises: UnsafeStore: the database or one of its WAL files is not a regular, singly linked file of
        the running user."""
        for name in _FILES:
            path = self.directory / name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file with one link"
                raise UnsafeStore(f"profile store file {path} is {what}; it must be a regular file owned by uid "
                                  f"{os.geteuid()} with one link: move it away")

    def _create(self) -> None:
        self.check_files()
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass
        except OSError as err:
            raise UnsafeStore(f"cannot create the profile store {self.path}: {err.strerror}") from err
        with self.connect() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ProfileError(f"profile store {self.path} has schema {version}; this novatune reads "
                                   f"{SCHEMA_VERSION}: use a newer novatune or another directory")
            if version < SCHEMA_VERSION:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective: no table exists yet
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: every later connection is in WAL
                with self.transaction(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection (rows as :class:`sqlite3.Row`, foreign keys on), closed on exit.

        Raises:
            UnsafeStore: see :meth:`check_files`.
            ProfileError: the database is locked past the busy timeout, damaged, or not a database.
        """
        self.check_files()
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as err:
            raise ProfileError(f"cannot open the profile store {self.path}: {err}") from err
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            yield conn
        except (sqlite3.OperationalError, sqlite3.DataError) as err:
            raise ProfileError(f"profile store {self.path}: {err}") from err
        except sqlite3.DatabaseError as err:
            if type(err) is not sqlite3.DatabaseError:  # IntegrityError, ProgrammingError...: a bug, not input
                raise
            raise ProfileError(f"profile store {self.path} is damaged or not a database: {err}") from err
        finally:
            conn.close()

    @staticmethod
    @contextmanager
    def transaction(conn: sqlite3.Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` (the write lock up front) ... ``COMMIT``; ``ROLLBACK`` on any exception."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (a full disk, an interrupt)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection inside one write transaction (committed on exit, rolled back on an exception)."""
        with self.connect() as conn, self.transaction(conn):
            yield conn

    def file_bytes(self) -> int:
        """The database and its WAL on disk, in bytes."""
        total = 0
        for name in (DB_NAME, f"{DB_NAME}-wal"):
            try:
                total += os.lstat(self.directory / name).st_size
            except FileNotFoundError:
                pass
        return total
