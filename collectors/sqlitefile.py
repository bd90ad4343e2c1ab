"""One private SQLite database file: who may own it, how it is created, opened and written. The one copy of
this code behind every novatune database that is not Optuna's or MLflow's (the profile store, the usage
history, the right-sizing proposals).

The database and its WAL files must be regular files of the running user with one link each, checked before
every connection (a symlink, a device or a hard link is refused, never opened). A new database file is
created with ``O_EXCL | O_NOFOLLOW`` and mode 0600; SQLite gives its WAL files the same mode. The schema is
applied once, in one transaction, and versioned with ``user_version``: a newer schema is refused.

Each :meth:`SqliteFile.connect` gets a fresh connection (closed after it: safe across threads and processes)
in WAL mode with a busy timeout, unless the calling thread holds one (:meth:`SqliteFile.held`: a long-running
writer reuses its connection); writes run in ``BEGIN IMMEDIATE`` transactions, rolled back on any exception.
Errors are the caller's classes: ``unsafe`` for a file that breaks the rule, ``failed`` for a database that
is locked past the timeout, damaged, not a database or of a newer schema.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WAL_FILES", "SqliteFile"]

#: the suffixes of a database's own file and of the files SQLite keeps beside it
WAL_FILES = ("", "-wal", "-shm", "-journal")


class SqliteFile:
    """The database at ``path`` (``what`` names it in messages: "usage store"), made safe and current on
    construction with ``schema`` (statements) at ``version``.

    Args:
        unsafe: raised for a file that breaks the rule (or cannot be created).
        failed: raised for a database that cannot be opened or used (default: ``unsafe``).
        synchronous: SQLite's ``synchronous`` (``NORMAL``; ``FULL`` where every commit must survive a power loss).
        row_factory: rows as :class:`sqlite3.Row` (by name and index), else plain tuples.

    Raises:
        unsafe: see :meth:`check_files`.
        failed: the file is not a database, or has a newer schema than ``version``.
    """

    def __init__(self, path: Path, *, what: str, schema: Sequence[str], version: int, unsafe: type[Exception],
                 failed: type[Exception] | None = None, busy_timeout_s: float = 10.0, synchronous: str = "NORMAL",
                 row_factory: bool = True) -> None:
        self.path = path
        self.what = what
        self.unsafe = unsafe
        self.failed = failed or unsafe
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = synchronous
        self.row_factory = row_factory
        self._local = threading.local()
        self._create(schema, version)

    def check_files(self) -> None:
        """Raises: unsafe: the database or one of its WAL files is not a regular, singly linked file of the
        running user."""
        for suffix in WAL_FILES:
            p = Path(f"{self.path}{suffix}")
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if st.st_nlink == 0 and stat.S_ISREG(st.st_mode):
                # being removed as we looked (SQLite deletes -wal/-shm when its last connection closes, and
                # lstat can see the inode after the unlink): gone, like a missing file
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
                why = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file of this user with one link"
                raise self.unsafe(f"{self.what} file {p} is {why}; it must be a regular file owned by uid "
                                  f"{os.geteuid()} with one link: move it away")

    def _create(self, schema: Sequence[str], version: int) -> None:
        self.check_files()
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass
        except OSError as err:
            raise self.unsafe(f"cannot create the {self.what} {self.path}: {err.strerror}") from err
        with self.connect() as conn:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > version:
                raise self.failed(f"{self.what} {self.path} has schema {found}; this novatune reads {version}: "
                                  "use a newer novatune or move the file away")
            if found < version:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective: no table exists yet
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: every later connection is in WAL
                with self.transaction(conn):
                    for statement in schema:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")

    def _open(self) -> sqlite3.Connection:
        self.check_files()
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as err:
            raise self.failed(f"cannot open the {self.what} {self.path}: {err}") from err
        try:
            if self.row_factory:
                conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA journal_size_limit = 67108864")
        except sqlite3.Error as err:
            conn.close()
            raise self.failed(f"{self.what} {self.path} is damaged or not a database: {err}") from err
        return conn

    @contextmanager
    def held(self) -> Iterator[None]:
        """While inside, this thread's :meth:`connect` calls share one connection (closed on exit)."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        self._local.conn = self._open()
        try:
            yield
        finally:
            conn, self._local.conn = self._local.conn, None
            conn.close()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's held connection, else a fresh one closed on exit.

        Raises:
            unsafe: see :meth:`check_files`.
            failed: the database is locked past the busy timeout, damaged, or not a database.
        """
        held = getattr(self._local, "conn", None)
        conn = held if held is not None else self._open()
        try:
            yield conn
        except (sqlite3.OperationalError, sqlite3.DataError) as err:
            raise self.failed(f"{self.what} {self.path}: {err}") from err
        except sqlite3.DatabaseError as err:
            if type(err) is not sqlite3.DatabaseError:  # IntegrityError, ProgrammingError...: a bug, not input
                raise
            raise self.failed(f"{self.what} {self.path} is damaged or not a database: {err}") from err
        finally:
            if held is None:
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
        """A connection inside one write transaction (committed on exit, rolled back on an exception)."""
        with self.connect() as conn, self.transaction(conn):
            yield conn

    def file_bytes(self) -> int:
        """The database and its WAL on disk, in bytes."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.lstat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total
