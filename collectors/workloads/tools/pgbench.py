"""pgbench: the adapter (a bounded TPC-B-like run against PostgreSQL on 127.0.0.1; tps and latency
avg/stddev) and :class:`PgbenchWorkload`, which starts the throwaway PostgreSQL cluster it measures
(as user postgres, password-protected)."""

from __future__ import annotations

import math
import os
import pwd
import re
import secrets
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from collectors.errors import WorkloadError
from collectors.safepath import SafeFile
from collectors.workloads.process import run_bounded, tail
from collectors.workloads.tools.adapter import (
    DEBIAN_PACKAGES,
    AdapterBase,
    AdapterError,
    AdapterResult,
    check_count,
    check_duration,
    to_float,
    which_or_error,
)
from collectors.workloads.tools.private import account_env
from collectors.workloads.tools.workload import LOOPBACK, ToolWorkload, check_int, free_port, make_adapter

__all__ = ["PgbenchAdapter", "PgbenchWorkload", "parse_pgbench"]

TOOL = "pgbench"
_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding) initial connection", re.M)
_TPS_ANY = re.compile(r"^tps = ([0-9.]+)", re.M)
_AVG = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_STD = re.compile(r"^latency stddev = ([0-9.]+) ms", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_SETUP_TIMEOUT_S = 180.0
_PWFILE = "pwfile"
_PROGRESS = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps, lat ([0-9.]+) ms stddev ([0-9.]+|NaN)", re.M)


@dataclass(frozen=True, kw_only=True)
class PgbenchAdapter(AdapterBase):
    """``pgbench -n -T duration_s -c clients -j threads -P 1`` against ``host:port``.

    ``run_as`` (e.g. ``"postgres"``) prefixes ``runuser -u <user> --``.
    :meth:`init_command` is the ``pgbench -i -s scale`` that creates the tables.
    """

    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"
    dbname: str = "postgres"
    clients: int = 2
    threads: int = 1
    duration_s: float = 3.0
    scale: int = 1
    run_as: str | None = None
    tool: str = TOOL
    #: ``-P`` progress lines go to stderr; :func:`run_adapter` merges them into the parsed text.
    merge_stderr: ClassVar[bool] = True

    def max_runtime_s(self) -> float:
        return check_duration(TOOL, "duration_s", self.duration_s) + 10.0

    def _prefix(self) -> list[str]:
        check_count(TOOL, "port", self.port, high=65535)
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + [
            "pgbench", "-h", self.host, "-p", str(self.port), "-U", self.user,
        ]

    def init_command(self) -> list[str]:
        """``pgbench -i -s scale -q`` (bounded by scale <= 100). Raises: AdapterError: bad option."""
        check_count(TOOL, "scale", self.scale, high=100)
        return [*self._prefix(), "-i", "-s", str(self.scale), "-q", self.dbname]

    def command(self) -> list[str]:
        """Raises: AdapterError: an option out of range."""
        t = check_duration(TOOL, "duration_s", self.duration_s)
        check_count(TOOL, "clients", self.clients, high=1000)
        check_count(TOOL, "threads", self.threads, high=min(self.clients, 256))
        return [
            *self._prefix(), "-n", "-T", str(max(1, round(t))), "-c", str(self.clients),
            "-j", str(self.threads), "-P", "1", self.dbname,
        ]

    def parse(self, text: str) -> AdapterResult:
        return parse_pgbench(text)


def _write_secret(target: SafeFile, text: str, *, give: Callable[[int], None] | None = None) -> None:
    """Write ``text`` as the whole content of ``target`` (0600, left open); ``give`` hands it to the server's
    account first. Raises: WorkloadError."""
    try:
        if give is not None:
            give(target.fd)
        os.ftruncate(target.fd, 0)
        os.pwrite(target.fd, text.encode(), 0)
    except OSError as err:
        raise WorkloadError(f"pgbench: cannot write {target.path}: {err}") from err


def parse_pgbench(text: str) -> AdapterResult:
    """Parse pgbench's run summary (and ``-P`` progress lines into ``raw["progress"]``).

    Throughput is ``tps`` without the initial connection time (``tx/s``).
    Latency average and stddev in ms (pgbench gives no percentiles; p50/p95/p99
    stay NaN). ``errors`` is the number of failed transactions.

    Raises:
        AdapterError: no ``tps = ...`` line or no latency average.
    """
    m = _TPS.search(text) or _TPS_ANY.search(text)
    if not m:
        raise AdapterError(TOOL, f"no 'tps = ...' line in output: {text.strip()[-300:]!r}")
    tps = to_float(TOOL, "tps", m.group(1))
    avg = _AVG.search(text)
    if not avg:
        raise AdapterError(TOOL, "no 'latency average = ... ms' line in output")
    std = _STD.search(text)
    failed = _FAILED.search(text)
    done = _DONE.search(text)
    progress = [
        {"t_s": float(p[0]), "tps": float(p[1]), "lat_ms": float(p[2]), "stddev_ms": float(p[3])}
        for p in _PROGRESS.findall(text)
    ]
    extra = {"transactions": float(done.group(1))} if done else {}
    return AdapterResult(
        tool=TOOL,
        throughput=tps,
        throughput_unit="tx/s",
        latency_avg_ms=to_float(TOOL, "latency average", avg.group(1)),
        latency_stddev_ms=to_float(TOOL, "latency stddev", std.group(1)) if std else float("nan"),
        errors=int(failed.group(1)) if failed else 0,
        extra=extra,
        raw={"progress": progress, "text": text},
    )


class PgbenchWorkload(ToolWorkload):
    """pgbench against a throwaway PostgreSQL cluster (the tuned process).

    :meth:`start` makes the server's private directory (mkdtemp under the system temp dir: novatune's
    top directory, mode 0710, and ``home`` inside, 0700, owned by ``postgres``: the workdir may sit under
    a home directory ``postgres`` cannot enter, e.g. root's), runs ``initdb`` there as user ``postgres``
    with ``--no-sync`` and SCRAM authentication for a random password (handed over in a file novatune
    deletes right after; TCP connections need it, there is no Unix socket), starts ``postgres`` on
    127.0.0.1:<free port> only (``fsync=off``, ``synchronous_commit=off``) as user ``postgres`` with the
    caller's ``preexec_fn`` run as root before the privilege drop, waits for ``pg_isready`` and runs
    ``pgbench -i -s scale`` once. The clients read the password from a 0600 file in the workdir
    (``PGPASSFILE``); no other local user can connect. Needs root and the ``postgres`` user.
    :meth:`stop` is a fast shutdown (SIGINT) and deletes the cluster directory and the password file;
    the server log stays in the workdir.

    Options (defaults): ``clients`` (2): 1..1000; ``threads`` (1):
    1..min(clients, 256); ``scale`` (1): 1..100.

    A warm-up run of ``warmup_s`` (discarded) when > 0, then a run of
    ``measure_s`` (pgbench takes whole seconds: rounded, >= 1).

    Metrics: ``throughput`` (``tx/s`` excluding connection time),
    ``latency_avg_ms``, ``latency_stddev_ms``, ``errors`` (failed
    transactions), ``error_rate``, ``transactions``. pgbench gives no
    percentiles. Timeline: the ``-P 1`` progress lines (``t_s`` -> ``tps``,
    ``lat_ms``, ``stddev_ms``).
    """

    kind = "pgbench"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"clients": 2, "threads": 1, "scale": 1}
    METRICS = ("throughput", "latency_avg_ms", "latency_stddev_ms", "errors", "error_rate", "transactions")
    BINARIES = ("pgbench",)
    SERVER_USERS = ("postgres",)
    PRIVATE_NAME = "pg"
    STOP_SIGNAL = signal.SIGINT  # fast shutdown

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.port: int | None = None
        self._passfile: SafeFile | None = None
        super().__init__(workdir, **options)

    def _prepare_own_paths(self) -> None:
        """A random password: in ``pwfile`` of the private directory (the account's, for initdb; deleted
        after it) and in ``pgpass`` in the workdir (0600, novatune's clients: ``PGPASSFILE``)."""
        private = self._private
        if private is None or self._passfile is not None:
            return
        password = secrets.token_urlsafe(32)
        with private.roots.open_file(_PWFILE) as secret:
            _write_secret(secret, password + "\n", give=private.give)
        self._passfile = self.roots.open_file("pgpass")
        _write_secret(self._passfile, f"{LOOPBACK}:*:*:postgres:{password}\n")

    @property
    def cluster_dir(self) -> Path | None:
        """The cluster's private directory while it exists (its ``home/data`` is the data directory)."""
        return self._private.top if self._private is not None else None

    def _validate(self) -> None:
        o = self.options
        check_int("pgbench", "clients", o["clients"], 1, 1000)
        check_int("pgbench", "threads", o["threads"], 1, min(o["clients"], 256))
        check_int("pgbench", "scale", o["scale"], 1, 100)
        self._adapter(1.0, port=5432).command()

    def _adapter(self, seconds: float, port: int | None = None) -> PgbenchAdapter:
        o = self.options
        return make_adapter(
            "pgbench", PgbenchAdapter, port=port if port is not None else self.port, clients=o["clients"],
            threads=o["threads"], duration_s=seconds, scale=o["scale"],
        )

    @staticmethod
    def pg_bindir() -> Path | None:
        """The newest ``/usr/lib/postgresql/<v>/bin`` holding initdb and postgres, or None."""
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")],
        )
        found = [p for p in found if (p.parent / "postgres").exists()]
        return found[-1].parent if found else None

    def _binaries(self) -> tuple[str, ...]:
        bindir = self.pg_bindir()
        if bindir is None:
            raise AdapterError("pgbench", f"initdb not found under /usr/lib/postgresql (Debian package: "
                               f"{DEBIAN_PACKAGES['initdb']})")
        return (*self.BINARIES, str(bindir / "initdb"), str(bindir / "postgres"), str(bindir / "pg_isready"))

    def _prerequisites(self) -> None:
        if os.geteuid() != 0:
            raise WorkloadError("pgbench: starting the PostgreSQL cluster as user postgres needs root")
        try:
            pwd.getpwnam("postgres")
        except KeyError as err:
            raise WorkloadError(
                "pgbench: no 'postgres' user to run the PostgreSQL cluster (Debian package: postgresql)"
            ) from err

    def _env(self) -> dict[str, str]:
        env = super()._env()
        if self._passfile is not None:
            env["PGPASSFILE"] = str(self._passfile.path)
        return env

    def _as_postgres(self, argv: list[str], what: str, timeout_s: float) -> None:
        """Run ``argv`` to completion as user postgres in the cluster's home. Raises: WorkloadError."""
        private = self._private
        assert private is not None and private.account is not None
        acct = private.account
        env = account_env(self._env(), acct, private.home)
        try:
            proc = run_bounded(
                argv, timeout_s=timeout_s, cwd=private.home, env=env,
                user=acct.pw_uid, group=acct.pw_gid, extra_groups=[],
            )
        except subprocess.TimeoutExpired as err:
            raise WorkloadError(
                f"pgbench: {what} did not finish in {timeout_s:g} s; stderr: {tail(err.stderr)}"
            ) from err
        except (OSError, subprocess.SubprocessError) as err:
            raise WorkloadError(f"pgbench: cannot run {what}: {err}") from err
        if proc.returncode != 0:
            raise WorkloadError(
                f"pgbench: {what} failed ({proc.returncode}); stderr: {tail(proc.stderr or proc.stdout)}"
            )

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        """A fresh cluster (initdb), its server (the tuned process, as postgres), then ``pgbench -i``."""
        bindir = self.pg_bindir()
        assert bindir is not None
        private = self._server_dir()
        pwfile = private.top / _PWFILE
        private.open_to()
        data = private.home / "data"
        try:
            self._as_postgres(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-host=scram-sha-256",
                 "--auth-local=peer", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C"],
                "initdb", _SETUP_TIMEOUT_S,
            )
        finally:
            pwfile.unlink(missing_ok=True)  # top is novatune's: postgres cannot swap the name
        self.port = free_port()
        argv = [
            str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", "",
            "-c", f"listen_addresses={LOOPBACK}", "-c", "password_encryption=scram-sha-256",
            "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "logging_collector=off",
            "-c", f"max_connections={max(100, self.options['clients'] + 10)}",
        ]
        self._spawn_tuned(argv, preexec_fn, private=private, death_signal=signal.SIGINT)
        isready = [str(bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres"]
        self._wait(lambda: run_bounded(isready, timeout_s=10).returncode == 0, "PostgreSQL")
        self._init_tables()

    def _init_tables(self) -> None:
        """``pgbench -i -s scale`` once. Raises: WorkloadError (with the stderr tail, or the server's log)."""
        init = self._adapter(1.0).init_command()
        init[0] = which_or_error("pgbench", init[0])
        try:
            proc = run_bounded(init, timeout_s=_SETUP_TIMEOUT_S, cwd=self.workdir, env=self._env())
        except subprocess.TimeoutExpired as err:
            raise WorkloadError(f"pgbench -i did not finish in {_SETUP_TIMEOUT_S:g} s") from err
        if proc.returncode != 0:
            self._check_alive("during pgbench -i")
            raise WorkloadError(f"pgbench -i failed ({proc.returncode}); stderr: {tail(proc.stderr)}")

    def _release_paths(self) -> None:
        passfile, self._passfile = self._passfile, None
        if passfile is not None:
            passfile.unlink()
            passfile.close()

    def stop(self) -> None:
        """Fast shutdown (SIGINT), reap every backend, then delete the throwaway cluster. Idempotent."""
        super().stop()
        self.port = None

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        result, notes = self._warm_then_measure(warmup_s, measure_s)
        progress = result.raw.get("progress") or []
        timeline = None
        if progress:
            timeline = pd.DataFrame(progress, columns=["t_s", "tps", "lat_ms", "stddev_ms"]).set_index("t_s")
        return result, timeline, notes

    def _operations(self, result: AdapterResult) -> float:
        done = result.extra.get("transactions", math.nan)
        return done + result.errors
