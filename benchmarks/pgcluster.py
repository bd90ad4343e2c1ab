"""A throwaway PostgreSQL cluster on 127.0.0.1 for benchmarks and tests (Debian's postgresql package).

``with PgCluster() as pg: pg.url`` gives ``postgresql+psycopg://novatune:PASSWORD@127.0.0.1:PORT/novatune``.
The cluster lives in a private temporary directory (0700, owned by ``postgres``), is initialised as user
``postgres`` with SCRAM authentication for a random password (no trust: other local users cannot connect),
listens on 127.0.0.1 only (and, with ``socket=True``, on a Unix socket in its private directory, which a
process in another network namespace reaches: ``pg.socket_url``), and is stopped (fast shutdown) and
deleted on exit; ``restart()`` cuts every connection and brings the same cluster back. Durable by
default (``fsync`` on, as a deployment would run it); ``durable=False`` turns fsync and synchronous commit
off. Needs root and the ``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PgCluster", "pg_bindir"]


def pg_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<v>/bin`` with initdb. Raises: RuntimeError (none installed)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")])
    if not found:
        raise RuntimeError("no initdb under /usr/lib/postgresql: apt-get install postgresql")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A private PostgreSQL server for one benchmark or test (see the module's docstring)."""

    def __init__(self, *, durable: bool = True, max_connections: int = 200, socket: bool = False) -> None:
        self.durable = durable
        self.socket = socket  # also a Unix socket (in the cluster's own directory): reachable from a netns
        self.max_connections = max_connections
        self.port = 0
        self.password = secrets.token_urlsafe(24)
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of database ``novatune`` (role ``novatune``, its owner)."""
        return f"postgresql+psycopg://novatune:{self.password}@127.0.0.1:{self.port}/novatune"

    @property
    def socket_url(self) -> str:
        """The same database through the Unix socket (``socket=True``): what a process in another network
        namespace reaches, since 127.0.0.1 there is its own."""
        assert self.socket and self.dir is not None, "PgCluster(socket=True) and started"
        return (f"postgresql+psycopg://novatune:{self.password}@/novatune"
                f"?host={self.dir / 'sock'}&port={self.port}")

    def _as_postgres(self, argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True,
                              text=True, timeout=120, **kw)

    def start(self) -> PgCluster:
        if os.geteuid() != 0:
            raise RuntimeError("PgCluster runs initdb and postgres as user postgres: needs root")
        acct = pwd.getpwnam("postgres")
        bindir = pg_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="novatune-pg-"))
        os.chown(self.dir, acct.pw_uid, acct.pw_gid)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, acct.pw_uid, acct.pw_gid)
        os.chmod(pwfile, 0o600)
        data = self.dir / "data"
        try:
            self._as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                               f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C"], cwd=self.dir)
        finally:
            pwfile.unlink(missing_ok=True)
        self.port = _free_port()
        if self.socket:
            (self.dir / "sock").mkdir(mode=0o700)
            os.chown(self.dir / "sock", acct.pw_uid, acct.pw_gid)
        self._launch(bindir)
        self._sql("CREATE ROLE novatune LOGIN PASSWORD %s", self.password)
        self._sql("CREATE DATABASE novatune OWNER novatune")
        return self

    def _launch(self, bindir: Path) -> None:
        assert self.dir is not None
        sock = str(self.dir / "sock") if self.socket else ""
        argv = [str(bindir / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port), "-k", sock,
                "-c", "listen_addresses=127.0.0.1", "-c", f"max_connections={self.max_connections}"]
        if not self.durable:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server's log, closed in stop()
        self._proc = subprocess.Popen(["runuser", "-u", "postgres", "--", *argv], stdout=log, stderr=log,
                                      cwd=self.dir, start_new_session=True)
        log.close()
        self._wait_ready(bindir)

    def restart(self, down_s: float = 0.0) -> None:
        """Fast shutdown (every client's connection is cut), ``down_s`` seconds down, then the same cluster
        on the same port again."""
        self._shutdown()
        time.sleep(down_s)
        self._launch(pg_bindir())

    def _wait_ready(self, bindir: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            ok = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                                timeout=10).returncode == 0
            if ok:
                return
            time.sleep(0.2)
        raise RuntimeError(f"postgres did not answer in 60 s: {self.log_tail()}")

    def _sql(self, statement: str, *args: str) -> None:
        import psycopg
        from psycopg import sql

        dsn = f"host=127.0.0.1 port={self.port} user=postgres password={self.password} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as con:
            if args:  # a literal (the password) bound client-side: DDL takes no server-side parameters
                con.execute(sql.SQL(statement.replace("%s", "{}")).format(*map(sql.Literal, args)))
            else:
                con.execute(statement)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server's processes alive now (the postmaster, its backends and
        helpers; a backend that exited is not counted: read it while the clients are connected)."""
        import psutil

        from collectors.usage.sampler import cpu_seconds

        if self._proc is None:
            return 0.0
        return cpu_seconds(psutil.Process(self._proc.pid).children(recursive=True))

    def log_tail(self, n: int = 2000) -> str:
        path = self.dir / "server.log" if self.dir else None
        return path.read_text(errors="replace")[-n:] if path and path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the server's session), then delete the cluster. Idempotent."""
        self._shutdown()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _shutdown(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, 2)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, 9)
                proc.wait(timeout=30)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
