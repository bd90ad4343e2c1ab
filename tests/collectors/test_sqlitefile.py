"""collectors.sqlitefile: the file checks hold against a hard link and a symlink, and not against SQLite
removing its own WAL files while they are checked."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from collectors.sqlitefile import SqliteFile


class Unsafe(Exception):
    pass


def _db(tmp_path: Path) -> SqliteFile:
    return SqliteFile(tmp_path / "t.db", what="test store", schema=["CREATE TABLE t (x INTEGER)"], version=1,
                      unsafe=Unsafe)


def test_a_hard_link_or_a_symlink_beside_the_database_is_refused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    os.link(db.path, tmp_path / "other")  # the database now has two links
    with pytest.raises(Unsafe, match="not a regular file of this user with one link"):
        db.check_files()
    os.unlink(tmp_path / "other")
    db.check_files()
    os.symlink(tmp_path / "elsewhere", f"{db.path}-wal")
    with pytest.raises(Unsafe, match="is a symbolic link"):
        db.check_files()


def test_a_wal_file_removed_while_it_is_checked_is_not_a_violation(tmp_path: Path) -> None:
    """SQLite deletes -wal and -shm when its last connection closes. ``lstat`` on a file being unlinked
    can report it with no link at all (it did, thousands of times in 3 s here): that is a file going
    away, not a hard link. CI hit it once in the profile store's thread test."""
    db = _db(tmp_path)
    shm = Path(f"{db.path}-shm")
    stop = threading.Event()

    def churn() -> None:  # what SQLite does to -shm, as fast as possible
        while not stop.is_set():
            os.close(os.open(shm, os.O_CREAT | os.O_WRONLY, 0o600))
            os.unlink(shm)

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(20000):
            db.check_files()
    finally:
        stop.set()
        t.join(timeout=10)
