"""What every tool workload shares: options, lifecycle, the tuned process, bounded tool runs, metrics.

Each tool module (:mod:`collectors.workloads.tools.fio`, ``pgbench``,
``redis_benchmark``, ``wrk``, ``iperf3``, ``stress_ng``) holds the tool's
adapter (command + parser) and its workload, a subclass of
:class:`ToolWorkload` (client/server tools) or :class:`HolderWorkload`
(client-only tools). What is *tuned* (what :meth:`ToolWorkload.start` starts,
with the caller's ``preexec_fn``, and what :meth:`ToolWorkload.pids` returns):

* client/server tools: the server, never as root (an unprivileged account,
  :mod:`collectors.workloads.tools.private`, living in a private directory).
  pgbench -> a throwaway PostgreSQL cluster (user ``postgres``, fsync off, TCP
  on 127.0.0.1 only with a random SCRAM password, no Unix socket);
  redis-benchmark -> ``redis-server`` without persistence (user ``redis`` or
  ``nobody``, no TCP: a unix socket in its private directory); wrk -> a small
  static HTTP server (:mod:`collectors.workloads.tools.http_server`, user
  ``nobody``, on a socket novatune bound to 127.0.0.1) unless a URL is given
  (then nothing is started and ``pids()`` is ``[]``); iperf3 -> a persistent
  ``iperf3 -s`` on 127.0.0.1 (user ``nobody``). The client runs outside the
  caller's ``preexec_fn`` (not in the workload cgroup).
* client-only tools (fio, stress-ng): a long-lived *holder* process
  (``sleep 86400``). Every tool run is spawned with a preexec that runs the
  caller's ``preexec_fn`` (cgroup placement) and then copies the holder's
  current CPU affinity, scheduling policy (non-real-time only), nice value and
  I/O priority into the tool, so process knobs applied to the holder act on
  the tool.

Paths: :meth:`ToolWorkload.prepare_paths` (the first step of ``start``) makes and
checks everything a run writes by path: the workdir and ``tmp/`` in it must be
private directories, files novatune writes itself (the log, fio's file) are
opened through :class:`collectors.safepath.WriteRoots` (the workdir, plus the
``allowed_roots`` the operator configured, never the ``protected`` data
directory; no symlink, device or hard link).

Every child gets ``TMPDIR=<workdir>/tmp``, runs with ``cwd`` in the workdir and
in its own process group; it receives a signal if the thread that started it
dies (``PR_SET_PDEATHSIG``: start and measure from a long-lived thread, usually
the main one). Every tool run goes through
:func:`collectors.workloads.tools.adapter.run_adapter`, bounded by the
adapter's time bound + 30 s (killed, whole process group, when exceeded) and by
the adapter's count caps.

Options are keyword arguments of the constructor, validated eagerly
(:class:`~collectors.workloads.tools.adapter.AdapterError`, a
:class:`~collectors.errors.WorkloadError`, whose message names the option and
what is allowed). ``<Class>.OPTIONS`` / ``<Class>.option_defaults()`` list the
option names with their defaults;
:data:`collectors.workloads.registry.TOOL_WORKLOADS` maps tool names to
classes.

Example::

    wl = TOOL_WORKLOADS["fio"](workdir, rw="randwrite", bs="16k", iodepth=4)
    pids = wl.start(preexec_fn=join_cgroup)
    try:
        m = wl.measure(warmup_s=1, measure_s=5)
    finally:
        wl.stop()
"""

from __future__ import annotations

import contextlib
import math
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, Self

import pandas as pd
import psutil

from collectors.errors import WorkloadError
from collectors.safepath import PathRefused, WriteRoots
from collectors.workloads._proc import set_parent_death_signal
from collectors.workloads.base import Measurement, Workload, process_tree
from collectors.workloads.process import child_env, stop_process, tail
from collectors.workloads.tools.adapter import (
    MAX_DURATION_S,
    Adapter,
    AdapterError,
    AdapterResult,
    check_count,
    run_adapter,
    which_or_error,
)
from collectors.workloads.tools.private import PrivateDir, account_env, drop_privileges, server_account

__all__ = [
    "LOOPBACK",
    "START_TIMEOUT_S",
    "STOP_GRACE_S",
    "HolderWorkload",
    "ToolWorkload",
    "check_int",
    "free_port",
    "make_adapter",
    "whole_seconds",
]

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0
START_TIMEOUT_S = 30.0
_NON_RT_POLICIES = (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE)

#: extra metrics' units (the common ones are in collectors.workloads.base.COMMON_METRICS)
_EXTRA_UNITS = {
    "latency_stddev_ms": "ms",
    "latency_p75_ms": "ms",
    "latency_p90_ms": "ms",
    "bytes_per_s": "B/s",
    "sender_bits_per_s": "bit/s",
    "retransmits": "count",
    "bytes": "B",
    "bogo_ops": "count",
    "transactions": "count",
    "requests": "count",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def whole_seconds(value: float) -> int:
    """The whole-second run time a tool is given for ``value`` seconds (at least 1)."""
    return max(1, round(value))


def check_int(tool: str, name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an int in ``[low, high]``. Raises: AdapterError: naming ``name`` and the range."""
    return check_count(tool, name, value, low=low, high=high)


def make_adapter(tool: str, cls: type, **kw: Any) -> Any:
    """``cls(**kw)``. Raises: AdapterError: an option of a type the dataclass cannot take."""
    try:
        return cls(**kw)
    except TypeError as err:  # a wrong type the dataclass cannot take
        raise AdapterError(tool, f"bad option: {err}") from err


class ToolWorkload(Workload):
    """What every tool workload shares: options, lifecycle, the bounded runner, the measurement."""

    kind: str = ""
    #: option name -> default
    OPTIONS: ClassVar[Mapping[str, Any]] = {}
    #: what measure() reports
    METRICS: ClassVar[tuple[str, ...]] = ()
    #: binaries start() needs (checked first, each names its Debian package when missing)
    BINARIES: ClassVar[tuple[str, ...]] = ()
    #: signal that stops the tuned process gracefully
    STOP_SIGNAL: ClassVar[int] = signal.SIGTERM
    #: whether the tuned process is a holder whose attributes tool runs copy
    HOLDER: ClassVar[bool] = False
    #: accounts the server may run as when novatune is root, the first that exists (none: no server)
    SERVER_USERS: ClassVar[tuple[str, ...]] = ()
    #: the server's private directory is ``novatune-<PRIVATE_NAME or kind>-*`` under the system temp directory
    PRIVATE_NAME: ClassVar[str] = ""
    #: the tuned process (None until started; also when __init__ refused the options)
    _proc: subprocess.Popen[bytes] | None = None
    #: the server's private directory (None until start made it)
    _private: PrivateDir | None = None

    def __init__(self, workdir: str | os.PathLike[str], *, allowed_roots: Sequence[str | os.PathLike[str]] = (),
                 protected: Sequence[str | os.PathLike[str]] = (), **options: Any) -> None:
        """``workdir``: the run's scratch directory; ``allowed_roots``: further directories a path option
        may name (the operator's ``workload_allowed_paths``); ``protected``: never a target (the data
        directory); ``options``: the workload's :attr:`OPTIONS`.

        Raises:
            AdapterError: an unknown or bad option, a bad root.
        """
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise AdapterError(self.kind, f"unknown option(s) {unknown}; allowed: {sorted(self.OPTIONS)}")
        self.workdir = Path(os.path.abspath(workdir))
        try:
            self.roots = WriteRoots.of(self.workdir, allowed_roots, protected)
        except PathRefused as err:
            raise AdapterError(self.kind, str(err)) from None
        self.options: dict[str, Any] = {**self.OPTIONS, **options}
        self._proc = None
        self._private = None
        self._log: IO[bytes] | None = None
        self._preexec: Callable[[], None] | None = None
        self._started = False
        self._validate()

    # ---- subclass hooks

    def _validate(self) -> None:
        """Check ``self.options`` (raise AdapterError naming the option)."""

    def _binaries(self) -> tuple[str, ...]:
        return self.BINARIES

    def _prerequisites(self) -> None:
        """Further checks before anything starts (user, privileges)."""

    def _prepare_own_paths(self) -> None:
        """Make and check the files this tool writes by path (after the workdir and the server's private
        directory; see :meth:`prepare_paths`). Idempotent."""

    def _has_server(self) -> bool:
        """Whether :meth:`start` starts a server (which gets a private directory)."""
        return bool(self.SERVER_USERS)

    def _release_paths(self) -> None:
        """Close and remove what :meth:`_prepare_own_paths` made (from :meth:`stop`; idempotent)."""

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        """Start the tuned process into ``self._proc`` and wait until it is ready."""
        raise NotImplementedError

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        """Warm up and measure one window: the result, its timeline (or None) and notes."""
        raise NotImplementedError

    def _adapter(self, seconds: float) -> Adapter:
        """The adapter of one run of ``seconds`` (time-driven tools; used by :meth:`_warm_then_measure`)."""
        raise NotImplementedError

    # ---- public API

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Option name -> default value (a copy)."""
        return dict(cls.OPTIONS)

    def metric_names(self) -> tuple[str, ...]:
        """Every metric :meth:`measure` reports."""
        return self.METRICS

    @property
    def log_path(self) -> Path:
        """Where the tuned process's stdout/stderr go."""
        return self.workdir / f"{self.kind}-tuned.log"

    def start(self, *, preexec_fn: Callable[[], None] | None = None) -> list[int]:
        """Start the tuned process (server or holder) with ``preexec_fn`` run in it before exec.

        Returns:
            :meth:`pids` (``[]`` only for :class:`~collectors.workloads.tools.wrk.WrkWorkload` with a URL).

        Raises:
            WorkloadError: already started, a binary missing (names the Debian
                package; checked before anything else), a prerequisite missing,
                or the process did not start / become ready (with its log tail).
        """
        if self._started:
            raise WorkloadError(f"{self.kind} workload already started; call stop() first")
        for binary in self._binaries():
            which_or_error(self.kind, binary)
        self._prerequisites()
        self._started = True
        self._preexec = preexec_fn
        try:
            self.prepare_paths()
            self._start_tuned(preexec_fn)
        except BaseException:
            self.stop()
            raise
        return self.pids()

    def prepare_paths(self) -> None:
        """Make and check everything a run writes by path; starts nothing (the first step of :meth:`start`).

        The workdir and its ``tmp/`` are made private directories (0700; refused when a symlink, another
        user's, or writable by others), the log is opened through :attr:`roots`, a server gets its private
        directory (:mod:`~collectors.workloads.tools.private`), then the tool's own files (fio's file,
        wrk's served file, pgbench's password files). Idempotent; undone by :meth:`stop`.

        Raises:
            WorkloadError: a path is refused (the message says why and what is allowed) or cannot be made.
        """
        try:
            self.roots.ensure_dir(".")
            self.roots.ensure_dir("tmp")
            self._open_log()
            if self._has_server():
                self._server_dir()
            self._prepare_own_paths()
        except PathRefused as err:
            raise WorkloadError(f"{self.kind}: cannot prepare workdir {self.workdir}: {err}") from None

    def scratch_dirs(self) -> list[Path]:
        """The server's private directory outside the workdir while it exists, for the crash journal."""
        return [self._private.top] if self._private is not None else []

    def pids(self) -> list[int]:
        """The tuned process and its descendants, parent first ([] when none runs)."""
        return process_tree(self._proc)

    def measure(self, *, warmup_s: float, measure_s: float) -> Measurement:
        """Warm up (discarded), then measure one window with the tool.

        Raises:
            ValueError: ``warmup_s`` < 0 or ``measure_s`` not in (0, 600].
            WorkloadError: not started, the tuned process died (with its log
                tail), or the tool failed (with its stderr tail).
        """
        for name, val, low_ok in (("warmup_s", warmup_s, True), ("measure_s", measure_s, False)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ValueError(f"{name} must be a finite number of seconds, got {val!r}")
            if val < 0 or (not low_ok and val == 0) or val > MAX_DURATION_S:
                raise ValueError(f"{name} must be in {'[' if low_ok else '('}0, {MAX_DURATION_S:g}], got {val!r}")
        if not self._started:
            raise WorkloadError(f"{self.kind} workload is not started")
        self._check_alive("before the measurement")
        result, timeline, notes = self._measure(float(warmup_s), float(measure_s))
        self._check_alive("during the measurement")
        metrics = self._metrics(result)
        units = {"throughput": result.throughput_unit}
        units.update({k: u for k, u in _EXTRA_UNITS.items() if k in metrics})
        return Measurement(metrics=metrics, units=units, timeline=timeline, notes=tuple(notes))

    def stop(self) -> None:
        """Stop the tuned process (graceful signal, then SIGKILL to its group) and reap it. Idempotent."""
        proc, self._proc = self._proc, None
        self._started = False
        self._preexec = None
        if proc is not None:
            stop_process(proc, self.STOP_SIGNAL, grace_s=STOP_GRACE_S)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._release_paths()
        private, self._private = self._private, None
        if private is not None:
            private.remove()

    def __enter__(self) -> Self:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; stop() is the contract
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self.stop()

    # ---- shared machinery

    def _env(self) -> dict[str, str]:
        """A child's environment: ``PYTHONPATH`` set, ``TMPDIR`` in the workdir, C locale unless set (and none of
        novatune's secrets: :func:`~collectors.workloads.process.child_env`)."""
        env = child_env()
        env["TMPDIR"] = str(self.workdir / "tmp")
        env.setdefault("LC_ALL", "C")
        return env

    def _log_tail(self) -> str:
        try:
            return tail(self.log_path.read_bytes())
        except OSError:
            return "(no log)"

    def _check_alive(self, when: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            what = "holder process" if self.HOLDER else "server"
            raise WorkloadError(
                f"{self.kind}: the {what} exited {when} (status {self._proc.returncode}); "
                f"log tail:\n{self._log_tail()}"
            )

    def _open_log(self) -> IO[bytes]:
        """The tuned process's log, opened once through :attr:`roots`. Raises: PathRefused."""
        if self._log is None:
            safe = self.roots.open_file(self.log_path.name, append=True)
            os.close(safe.dir_fd)
            self._log = os.fdopen(safe.fd, "ab")
        return self._log

    def _server_dir(self) -> PrivateDir:
        """The server's private directory, made now (its account from :attr:`SERVER_USERS`). Raises: WorkloadError."""
        if self._private is None:
            account = server_account(self.kind, self.SERVER_USERS)
            self._private = PrivateDir(self.kind, account, name=self.PRIVATE_NAME or self.kind)
        return self._private

    def _spawn_tuned(
        self,
        argv: list[str],
        preexec_fn: Callable[[], None] | None,
        *,
        stdout_pipe: bool = False,
        private: PrivateDir | None = None,
        death_signal: int = signal.SIGTERM,
        pass_fds: tuple[int, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """Popen the tuned process: caller's preexec (as root), then PDEATHSIG. A server (``private``) runs
        as its account in its private ``home`` (cwd, ``HOME``, ``TMPDIR``)."""
        log = self._open_log()
        parent = os.getpid()
        account = private.account if private is not None else None

        def _pre() -> None:
            if preexec_fn is not None:
                preexec_fn()
            drop_privileges(account)
            set_parent_death_signal(death_signal, expected_parent=parent)

        env = self._env() if private is None else account_env(self._env(), account, private.home)
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                cwd=private.home if private is not None else self.workdir,
                env=env,
                process_group=0,
                pass_fds=pass_fds,
                preexec_fn=_pre,  # noqa: PLW1509 - the contract: cgroup placement before exec
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise WorkloadError(
                f"{self.kind}: cannot start {argv[0]} (or the preexec_fn failed in the child): {err}"
            ) from err
        return self._proc

    def _wait(self, ready: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll ``ready()`` until true; WorkloadError (with log tail) on exit or timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive("during start-up")
            try:
                if ready():
                    return
            except (OSError, psutil.Error):
                pass
            if time.monotonic() > deadline:
                raise WorkloadError(
                    f"{self.kind}: {what} not ready after {timeout_s:g} s; log tail:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def _listening(self, port: int) -> bool:
        assert self._proc is not None
        procs = [psutil.Process(p) for p in self.pids()]
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port
            for p in procs
            for c in p.net_connections(kind="tcp")
        )

    def _tool_preexec(self, run_as: pwd.struct_passwd | None = None) -> Callable[[], None]:
        """The preexec of a tool run: the caller's preexec, then the holder's scheduling attributes
        (a client: ``run_as``'s account, when given)."""
        caller = self._preexec
        if not self.HOLDER:
            def _client() -> None:
                drop_privileges(run_as)
                set_parent_death_signal(signal.SIGKILL)
            return _client
        assert self._proc is not None
        holder = self._proc.pid
        try:
            cpus = os.sched_getaffinity(holder)
            nice = os.getpriority(os.PRIO_PROCESS, holder)
            policy = os.sched_getscheduler(holder)
            io_class, io_level = psutil.Process(holder).ionice()
        except (OSError, psutil.Error) as err:
            raise WorkloadError(f"{self.kind}: cannot read the holder process {holder}: {err}") from err

        def _pre() -> None:
            if caller is not None:
                caller()  # cgroup placement first: joining a cpuset resets the affinity
            os.sched_setaffinity(0, cpus)
            if policy in _NON_RT_POLICIES and os.sched_getscheduler(0) != policy:
                os.sched_setscheduler(0, policy, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            if int(io_class) != psutil.IOPRIO_CLASS_NONE:
                me = psutil.Process(os.getpid())
                if int(io_class) == psutil.IOPRIO_CLASS_IDLE:
                    me.ionice(io_class)
                else:
                    me.ionice(io_class, io_level)
            set_parent_death_signal(signal.SIGKILL)

        return _pre

    def _warm_then_measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, list[str]]:
        """A discarded warm-up run of ``warmup_s`` (when > 0), then a run of ``measure_s``; both rounded
        to whole seconds (the tools take no fractions), which the notes say."""
        notes = []
        if warmup_s > 0:
            self._run(self._adapter(float(whole_seconds(warmup_s))))
        secs = whole_seconds(measure_s)
        if secs != measure_s:
            notes.append(f"{self.kind} runs whole seconds: measure_s={measure_s:g} ran {secs} s")
        return self._run(self._adapter(float(secs))), notes

    def _run(
        self, adapter: Adapter, *, extra_args: tuple[str, ...] = (), timeout_s: float | None = None,
        pass_fds: tuple[int, ...] = (), run_as: pwd.struct_passwd | None = None,
    ) -> AdapterResult:
        """Run one tool invocation through :func:`run_adapter`, with this workload's preexec, env and cwd
        (``pass_fds``: descriptors the tool inherits; ``run_as``: a client run as the server's account).

        If the tuned process died meanwhile, that is the error reported (with
        its log tail) rather than the tool's failure.

        Raises:
            AdapterError: see :func:`run_adapter`.
            WorkloadError: the tuned process exited during the run.
        """
        return run_adapter(
            adapter, timeout_s=timeout_s, cwd=self.workdir, env=self._env(), preexec_fn=self._tool_preexec(run_as),
            extra_args=extra_args, on_failure=lambda: self._check_alive("during the run"), pass_fds=pass_fds,
        )

    def _metrics(self, result: AdapterResult) -> dict[str, float]:
        raw = result.metrics()
        out = {name: float(raw.get(name, math.nan)) for name in self.METRICS}
        if "error_rate" in out:
            total = self._operations(result)
            out["error_rate"] = result.errors / total if total and total > 0 else math.nan
        return out

    def _operations(self, result: AdapterResult) -> float:
        """Operations in the window (denominator of error_rate); NaN if unknown."""
        return math.nan



class HolderWorkload(ToolWorkload):
    HOLDER = True
    STOP_SIGNAL = signal.SIGKILL

    def _binaries(self) -> tuple[str, ...]:
        return (*self.BINARIES, "sleep")

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        self._spawn_tuned([which_or_error(self.kind, "sleep"), "86400"], preexec_fn, death_signal=signal.SIGKILL)
        self._wait(lambda: True, "holder process")

    def pids(self) -> list[int]:
        """The holder process ([] when not started)."""
        if self._proc is None or self._proc.poll() is not None:
            return []
        return [self._proc.pid]


