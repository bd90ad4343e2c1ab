"""The profile store's database file: where it lives, who may own it, its schema, and how it is opened.

:class:`StoreDatabase` is the only code that touches the store's directory and files. The directory is
novatune's private data: created 0700 (missing parents too), it must be a real directory (not a symbolic
link) owned by the running user and writable by nobody else (a wider read mode is narrowed to 0700).
The database file itself follows :mod:`collectors.sqlitefile` (regular files of that user with one link,
checked before every connection; created ``O_EXCL | O_NOFOLLOW``, mode 0600; a fresh connection per call
in WAL mode; ``BEGIN IMMEDIATE`` writes, rolled back on any exception).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from collectors.profiler.model import ProfileError
from collectors.sqlitefile import SqliteFile

__all__ = ["DB_NAME", "SCHEMA_VERSION", "StoreDatabase", "UnsafeStore"]

DB_NAME = "profiles.db"
SCHEMA_VERSION = 1
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


class StoreDatabase(SqliteFile):
    """``directory/profiles.db``, made safe and current on construction (connections, transactions and the
    file rule: :class:`collectors.sqlitefile.SqliteFile`).

    Raises:
        UnsafeStore: the directory cannot be created, or it or a database file breaks the rule above.
        ProfileError: the file is not a database, or has a newer schema than this novatune reads.
    """

    def __init__(self, directory: Path, *, busy_timeout_s: float) -> None:
        self.directory = directory
        self._make_directory()
        super().__init__(directory / DB_NAME, what="profile store", schema=_SCHEMA, version=SCHEMA_VERSION,
                         unsafe=UnsafeStore, failed=ProfileError, busy_timeout_s=busy_timeout_s)

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
