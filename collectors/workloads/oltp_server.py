"""Pre-forked OLTP-like TCP service on 127.0.0.1 (the server side of the OLTP workload).

Run as ``python -m collectors.workloads.oltp_server --workdir DIR [--port 0]
[--workers 2]``. Standard library only (it must start fast and must not pull
pandas into every worker).

Process model:

* The parent seeds an SQLite database (WAL mode) under ``workdir``, binds and
  listens on 127.0.0.1, then forks ``workers`` worker processes that share the
  listening socket. Whatever cgroup/affinity the parent is in when it forks
  (e.g. set by a ``preexec_fn`` of the launcher) is inherited by the workers.
* When ready, the parent prints ONE JSON line on stdout:
  ``{"event": "ready", "port": P, "pid": PID, "workers": [PIDS]}``.
  Diagnostics go to stderr only.
* Every process dies with its parent (``PR_SET_PDEATHSIG``). SIGTERM/SIGINT on
  the parent terminates the workers (SIGKILL after a grace period) and exits 0.
  If a worker dies unexpectedly the parent stops the others and exits 1, so a
  half-dead server never produces a misleading measurement.

Protocol (line based, one request per line, one response line per request, on
a persistent connection):

* ``PING`` -> ``PONG``
* ``R <key>``  point read of a few rows             -> ``OK <nrows> <digest>``
* ``W <key>``  read-modify-write transaction        -> ``OK <nrows> <digest>``
* ``I <key>``  insert                               -> ``OK <nrows> <digest>``
* anything else -> ``ERR <reason>``

Each data request also does a fixed amount of CPU work (JSON encoding of the
rows and a PBKDF2-SHA256 hash with ``--cpu-iterations`` rounds), so the service
is CPU-bound and its throughput follows the CPU it is given.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import json
import mmap
import os
import selectors
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import cast

from collectors.workloads._proc import set_parent_death_signal

__all__ = ["main", "seed_database", "DEFAULT_ROWS", "DEFAULT_CPU_ITERATIONS"]

DEFAULT_ROWS = 20_000
DEFAULT_CPU_ITERATIONS = 3_000
_READ_ROWS = 4  # rows returned by a point read
_MAX_LINE = 256  # longest accepted request line (bytes)
_TERM_GRACE_S = 2.0


class _Shutdown(Exception):
    """Raised by the signal handler in the parent to leave its wait loop."""


# --------------------------------------------------------------------------- database


def _connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db_path), timeout=2.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # no fsync: the service must be CPU-bound, not bound by the disk of the test host
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA busy_timeout=2000")
    return conn


def seed_database(db_path: Path, *, rows: int) -> None:
    """(Re)create the ``accounts`` table with ``rows`` deterministic rows."""
    conn = _connect(db_path)
    try:
        conn.execute("DROP TABLE IF EXISTS accounts")
        conn.execute(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL,"
            " balance INTEGER NOT NULL, version INTEGER NOT NULL, note TEXT NOT NULL)"
        )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO accounts (id, owner, balance, version, note) VALUES (?, ?, ?, 0, ?)",
            ((i, f"owner-{i % 997:04d}", (i * 7919) % 100_000, f"seed row {i}") for i in range(1, rows + 1)),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


class _Handler:
    """Executes requests for one worker (one SQLite connection)."""

    def __init__(self, db_path: Path, *, rows: int, cpu_iterations: int) -> None:
        self.conn = _connect(db_path)
        # Writers are serialised across workers with a blocking flock: SQLite's own
        # busy handler sleep-polls (1, 2, 5, 10 ms ...), which idles the CPU and made
        # throughput fall when workers were added.
        self.write_lock = os.open(db_path.with_suffix(".writelock"), os.O_RDWR | os.O_CREAT, 0o600)
        self.rows = rows
        self.cpu_iterations = cpu_iterations
        self.salt = f"worker-{os.getpid()}".encode()

    def _key(self, raw: bytes) -> int:
        return (int(raw) % self.rows) + 1

    def _burn(self, rows: list[tuple]) -> str:
        payload = json.dumps(rows, separators=(",", ":")).encode()
        return hashlib.pbkdf2_hmac("sha256", payload, self.salt, self.cpu_iterations).hex()[:16]

    def handle(self, line: bytes) -> bytes:
        parts = line.split()
        if not parts:
            return b"ERR empty request\n"
        op = parts[0]
        if op == b"PING":
            return b"PONG\n"
        if len(parts) != 2 or op not in (b"R", b"W", b"I"):
            return b"ERR unknown request (allowed: PING, R <key>, W <key>, I <key>)\n"
        try:
            key = self._key(parts[1])
        except ValueError:
            return b"ERR key must be an integer\n"
        try:
            if op == b"R":
                rows = self.conn.execute(
                    "SELECT id, owner, balance, version, note FROM accounts WHERE id BETWEEN ? AND ?",
                    (key, key + _READ_ROWS - 1),
                ).fetchall()
            else:
                fcntl.flock(self.write_lock, fcntl.LOCK_EX)
                try:
                    if op == b"W":
                        rows = self._read_modify_write(key)
                    else:
                        cur = self.conn.execute(
                            "INSERT INTO accounts (owner, balance, version, note) VALUES (?, ?, 0, ?)",
                            (f"owner-{key % 997:04d}", key % 1000, f"insert by {os.getpid()}"),
                        )
                        rows = [(cur.lastrowid,)]
                finally:
                    fcntl.flock(self.write_lock, fcntl.LOCK_UN)
        except sqlite3.Error as err:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            return f"ERR sqlite: {err}\n".encode()
        return f"OK {len(rows)} {self._burn(rows)}\n".encode()

    def _read_modify_write(self, key: int) -> list[tuple]:
        other = (key * 31) % self.rows + 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            rows = self.conn.execute(
                "SELECT id, owner, balance, version, note FROM accounts WHERE id IN (?, ?)", (key, other)
            ).fetchall()
            self.conn.execute("UPDATE accounts SET balance = balance - 1, version = version + 1 WHERE id = ?", (key,))
            self.conn.execute("UPDATE accounts SET balance = balance + 1, version = version + 1 WHERE id = ?", (other,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return rows


# --------------------------------------------------------------------------- worker


class _LoadBoard:
    """Live connection count of every worker, in anonymous shared memory (created before fork).

    A worker only accepts while it is among the least loaded: with persistent
    client connections, a racy accept on the shared socket could otherwise give
    most connections to one worker and leave a CPU idle.
    """

    def __init__(self, workers: int) -> None:
        self._mem = mmap.mmap(-1, 4 * workers)  # MAP_SHARED | MAP_ANONYMOUS: shared with forked children
        self.counts = memoryview(self._mem).cast("i")

    def may_accept(self, me: int) -> bool:
        return self.counts[me] <= min(self.counts)


def _worker_loop(listener: socket.socket, handler: _Handler, board: _LoadBoard, me: int) -> None:
    """Serve this worker's connections from one selector loop (no threads)."""
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    listening = False
    buffers: dict[socket.socket, bytearray] = {}

    def close(conn: socket.socket) -> None:
        sel.unregister(conn)
        buffers.pop(conn, None)
        conn.close()
        board.counts[me] = len(buffers)

    while True:
        want = board.may_accept(me)
        if want != listening:
            if want:
                sel.register(listener, selectors.EVENT_READ, None)
            else:
                sel.unregister(listener)
            listening = want
        for key, _ in sel.select(timeout=0.05):
            if key.data is None:  # listening socket: the least-loaded workers race for it
                try:
                    conn, _addr = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setblocking(True)  # responses are small; sendall must not half-write
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffers[conn] = bytearray()
                board.counts[me] = len(buffers)
                sel.register(conn, selectors.EVENT_READ, "conn")
                break  # re-check the load board before accepting another one
            conn = cast(socket.socket, key.fileobj)  # only the listener and accepted sockets are registered
            try:
                chunk = conn.recv(4096)
            except (ConnectionError, OSError):
                close(conn)
                continue
            if not chunk:
                close(conn)
                continue
            buf = buffers[conn]
            buf += chunk
            try:
                while (nl := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    conn.sendall(handler.handle(line))
                if len(buf) > _MAX_LINE:
                    conn.sendall(b"ERR request line too long\n")
                    close(conn)
            except (ConnectionError, OSError):
                close(conn)


def _run_worker(
    listener: socket.socket, db_path: Path, parent: int, board: _LoadBoard, me: int, *, rows: int, cpu_iterations: int
) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_parent_death_signal(signal.SIGKILL, expected_parent=parent)
    handler = _Handler(db_path, rows=rows, cpu_iterations=cpu_iterations)
    _worker_loop(listener, handler, board, me)


# --------------------------------------------------------------------------- parent


def _stop_workers(workers: list[int]) -> None:
    for pid in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + _TERM_GRACE_S
    remaining = set(workers)
    while remaining and time.monotonic() < deadline:
        for pid in list(remaining):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                remaining.discard(pid)
        time.sleep(0.02)
    for pid in remaining:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m collectors.workloads.oltp_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--cpu-iterations", type=int, default=DEFAULT_CPU_ITERATIONS)
    parser.add_argument("--parent-pid", type=int, default=None, help="die at once if this is no longer our parent")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.rows < 1 or args.cpu_iterations < 1 or not 0 <= args.port <= 65535:
        parser.error("workers, rows and cpu-iterations must be >= 1 and port in 0..65535")

    set_parent_death_signal(signal.SIGTERM, expected_parent=args.parent_pid)

    def on_signal(signum: int, _frame: object) -> None:
        raise _Shutdown(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    workers: list[int] = []
    try:
        args.workdir.mkdir(parents=True, exist_ok=True)
        db_path = args.workdir / "oltp.sqlite3"
        seed_database(db_path, rows=args.rows)

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.port))
        listener.listen(512)
        port = listener.getsockname()[1]

        parent = os.getpid()
        board = _LoadBoard(args.workers)
        for me in range(args.workers):
            pid = os.fork()
            if pid == 0:  # worker
                code = 0
                try:
                    _run_worker(
                        listener, db_path, parent, board, me, rows=args.rows, cpu_iterations=args.cpu_iterations
                    )
                except BaseException as err:  # noqa: BLE001 - report, then leave without running parent cleanup
                    print(f"oltp worker {os.getpid()}: {err!r}", file=sys.stderr, flush=True)
                    code = 1
                os._exit(code)
            workers.append(pid)

        print(json.dumps({"event": "ready", "port": port, "pid": parent, "workers": workers}), flush=True)

        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return 1
            if pid in workers:
                workers.remove(pid)
                print(
                    f"oltp server: worker {pid} exited unexpectedly (status {status}); stopping",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
    except _Shutdown:
        return 0
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            print(f"oltp server: port {args.port} is in use", file=sys.stderr, flush=True)
        else:
            print(f"oltp server: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_workers(workers)


if __name__ == "__main__":
    sys.exit(main())
