"""Workloads driven by real tools: fio, pgbench, redis-benchmark, wrk, iperf3, stress-ng.

Each class implements :class:`collectors.workloads.base.Workload` on top of the
matching adapter in :mod:`collectors.workloads.adapters` (its ``command()``
builds the argument list, its ``parse()`` reads the output; nothing is parsed
twice). What is *tuned* (what :meth:`start` starts, with the caller's
``preexec_fn``, and what :meth:`pids` returns):

* client/server tools: the server. pgbench -> a throwaway PostgreSQL cluster
  in the workdir (run as user ``postgres``, fsync off, TCP on 127.0.0.1 only,
  no Unix socket); redis-benchmark -> ``redis-server`` without persistence;
  wrk -> a small static HTTP server (:mod:`collectors.workloads._servers`)
  unless a URL is given (then nothing is started and :meth:`pids` is ``[]``);
  iperf3 -> a persistent ``iperf3 -s`` on 127.0.0.1. The client runs outside
  the caller's ``preexec_fn`` (not in the workload cgroup).
* client-only tools (fio, stress-ng): a long-lived *holder* process
  (``sleep 86400``). Every tool run is spawned with a preexec that runs the
  caller's ``preexec_fn`` (cgroup placement) and then copies the holder's
  current CPU affinity, scheduling policy (non-real-time only), nice value and
  I/O priority into the tool, so process knobs applied to the holder act on
  the tool.

Every child gets ``TMPDIR=<workdir>/tmp``, runs with ``cwd`` in the workdir and
in its own process group; it receives a signal if the thread that started it
dies (``PR_SET_PDEATHSIG``: start and measure from a long-lived thread, usually
the main one). Every tool run is bounded by the adapter's time bound + 30 s
(killed, whole process group, when exceeded) and by the adapter's count caps.

Options are keyword arguments of the constructor, validated eagerly
(:class:`~collectors.workloads.adapters.AdapterError`, a
:class:`~collectors.errors.WorkloadError`, whose message names the option and
what is allowed). ``<Class>.OPTIONS`` / ``<Class>.option_defaults()`` list the
option names with their defaults; :data:`TOOL_WORKLOADS` maps tool names to
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
import ipaddress
import json
import math
import os
import pwd
import re
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar, Self
from urllib.parse import urlsplit

import pandas as pd
import psutil

from collectors.errors import WorkloadError
from collectors.workloads._proc import set_parent_death_signal
from collectors.workloads.adapters._base import (
    DEBIAN_PACKAGES,
    MAX_DURATION_S,
    AdapterError,
    AdapterResult,
    check_count,
)
from collectors.workloads.adapters.fio import FioAdapter
from collectors.workloads.adapters.iperf3 import Iperf3Adapter
from collectors.workloads.adapters.pgbench import PgbenchAdapter
from collectors.workloads.adapters.redis_benchmark import TESTS as _REDIS_TESTS
from collectors.workloads.adapters.redis_benchmark import RedisBenchmarkAdapter
from collectors.workloads.adapters.stress_ng import StressNgAdapter
from collectors.workloads.adapters.wrk import WrkAdapter
from collectors.workloads.base import Measurement, process_tree

__all__ = [
    "TOOL_WORKLOADS",
    "FioWorkload",
    "Iperf3Workload",
    "PgbenchWorkload",
    "RedisBenchmarkWorkload",
    "StressNgWorkload",
    "WrkWorkload",
    "check_fio_filename",
]

LOOPBACK = "127.0.0.1"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_TAIL_CHARS = 1500
_STOP_GRACE_S = 10.0
_START_TIMEOUT_S = 30.0
_SETUP_TIMEOUT_S = 180.0
_LOOP_DEVICE = re.compile(r"/dev/loop[0-9]+")
_SIZE = re.compile(r"([0-9]+)([kmgt]?)(i?b?)", re.IGNORECASE)
_SIZE_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_FIO_MAX_SIZE = 64 << 30
_FIO_MAX_BS = 64 << 20
_FIO_ENGINES = ("psync", "sync", "pvsync", "pvsync2", "libaio", "io_uring", "posixaio", "mmap")
_FIO_RW = ("read", "write", "randread", "randwrite", "rw", "randrw")
#: stressors a study may run (each bounded by --timeout; hdd writes in the workdir only)
STRESSORS: tuple[str, ...] = ("cpu", "vm", "matrix", "memcpy", "hdd", "io", "switch", "pipe", "cache")
_STRESS_HDD_BYTES = "64M"  # per worker; stress-ng's own default is 1G
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


# --------------------------------------------------------------------------- helpers


def _tail(text: str | bytes | None, n: int = _TAIL_CHARS) -> str:
    if not text:
        return "(empty)"
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    if not text:
        return "(empty)"
    return text if len(text) <= n else "..." + text[-n:]


def _child_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env["TMPDIR"] = str(workdir / "tmp")
    env.setdefault("LC_ALL", "C")
    return env


def _which_or_error(tool: str, binary: str) -> str:
    """Absolute path of ``binary`` or an AdapterError naming the Debian package that provides it."""
    found = binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else shutil.which(binary)
    if not found:
        name = binary.rsplit("/", 1)[-1]
        raise AdapterError(tool, f"{name} not found (Debian package: {DEBIAN_PACKAGES.get(name, '?')})")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _whole_seconds(value: float) -> int:
    """The whole-second run time a tool is given for ``value`` seconds (at least 1)."""
    return max(1, round(value))


def _check_int(tool: str, name: str, value: Any, low: int, high: int) -> int:
    return check_count(tool, name, value, low=low, high=high)


def _size_bytes(tool: str, name: str, value: Any, high: int) -> int:
    """``"4k"`` / ``"32M"`` / ``"1GiB"`` / ``4096`` -> bytes in [1, high]. Raises AdapterError."""
    if isinstance(value, bool):
        raise AdapterError(tool, f"{name} must be a size like '4k' or '32M', got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.fullmatch(str(value).strip()) if isinstance(value, str) else None
        if not m:
            raise AdapterError(tool, f"{name} must be a size like '4k', '32M' or '1G', got {value!r}")
        n = int(m.group(1)) * _SIZE_MULT[m.group(2).lower()]
    if not 1 <= n <= high:
        raise AdapterError(tool, f"{name} must be between 1 byte and {high >> 20} MiB, got {value!r}")
    return n


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def check_fio_filename(filename: str | os.PathLike[str] | None, workdir: Path) -> Path:
    """The path fio may use, or an AdapterError saying why it is refused.

    ``None`` -> ``<workdir>/fio.dat``. Otherwise the path (symlinks resolved)
    must be inside the workdir, or an existing regular file the user named, or
    a loop device ``/dev/loopN``. Every other block device is refused (fio
    would overwrite it), as are character devices, directories, FIFOs and
    paths outside the workdir that do not exist.
    """
    root = Path(os.path.realpath(workdir))
    if filename is None:
        return root / "fio.dat"
    text = os.fspath(filename)
    if not isinstance(text, str) or not text or ":" in text or "\0" in text:
        raise AdapterError("fio", f"filename must be a plain path (no ':'), got {filename!r}")
    path = Path(text)
    if not path.is_absolute():
        path = root / path
    real = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise AdapterError("fio", f"filename {text!r}: cannot stat {real}: {err}") from err
    if st is not None and stat.S_ISBLK(st.st_mode):
        if _LOOP_DEVICE.fullmatch(str(real)):
            return real
        raise AdapterError(
            "fio", f"filename {text!r} is the block device {real}: refused (fio would overwrite it); "
            "only loop devices /dev/loopN are allowed"
        )
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise AdapterError("fio", f"filename {text!r} ({real}) is not a regular file: refused")
    if _inside(real, root):
        return real
    if st is None:
        raise AdapterError(
            "fio", f"filename {text!r} ({real}) is outside the workdir {root} and does not exist: "
            "only an existing regular file may be named outside the workdir"
        )
    return real


def _make_adapter(tool: str, cls: type, **kw: Any) -> Any:
    try:
        return cls(**kw)
    except TypeError as err:  # a wrong type the dataclass cannot take
        raise AdapterError(tool, f"bad option: {err}") from err


# --------------------------------------------------------------------------- the common part


class _ToolWorkload:
    """What every tool workload shares: options, lifecycle, the bounded runner, the measurement."""

    kind: ClassVar[str] = ""
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

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise AdapterError(self.kind, f"unknown option(s) {unknown}; allowed: {sorted(self.OPTIONS)}")
        self.workdir = Path(os.path.abspath(workdir))
        self.options: dict[str, Any] = {**self.OPTIONS, **options}
        self._proc: subprocess.Popen[bytes] | None = None
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

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        """Start the tuned process into ``self._proc`` and wait until it is ready."""
        raise NotImplementedError

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
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
            :meth:`pids` (``[]`` only for :class:`WrkWorkload` with a URL).

        Raises:
            WorkloadError: already started, a binary missing (names the Debian
                package; checked before anything else), a prerequisite missing,
                or the process did not start / become ready (with its log tail).
        """
        if self._started:
            raise WorkloadError(f"{self.kind} workload already started; call stop() first")
        for binary in self._binaries():
            _which_or_error(self.kind, binary)
        self._prerequisites()
        try:
            (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WorkloadError(f"{self.kind}: cannot prepare workdir {self.workdir}: {err}") from err
        self._started = True
        self._preexec = preexec_fn
        try:
            self._start_tuned(preexec_fn)
        except BaseException:
            self.stop()
            raise
        return self.pids()

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
            _terminate(proc, self.STOP_SIGNAL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; stop() is the contract
        if getattr(self, "_proc", None) is not None:
            with contextlib.suppress(Exception):
                self.stop()

    # ---- shared machinery

    def _log_tail(self) -> str:
        try:
            return _tail(self.log_path.read_bytes())
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
        if self._log is None:
            try:
                self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            except OSError as err:
                raise WorkloadError(f"{self.kind}: cannot open {self.log_path}: {err}") from err
        return self._log

    def _spawn_tuned(
        self,
        argv: list[str],
        preexec_fn: Callable[[], None] | None,
        *,
        stdout_pipe: bool = False,
        cwd: Path | None = None,
        drop_to: pwd.struct_passwd | None = None,
        death_signal: int = signal.SIGTERM,
    ) -> subprocess.Popen[bytes]:
        """Popen the tuned process: caller's preexec (as root), then optional privilege drop, then PDEATHSIG."""
        log = self._open_log()
        parent = os.getpid()

        def _pre() -> None:
            if preexec_fn is not None:
                preexec_fn()
            if drop_to is not None:
                os.setgroups([])
                os.setgid(drop_to.pw_gid)
                os.setuid(drop_to.pw_uid)
            set_parent_death_signal(death_signal, expected_parent=parent)

        env = _child_env(self.workdir)
        if drop_to is not None:
            env.update(HOME=drop_to.pw_dir, USER=drop_to.pw_name, LOGNAME=drop_to.pw_name)
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                cwd=cwd or self.workdir,
                env=env,
                process_group=0,
                preexec_fn=_pre,  # noqa: PLW1509 - the contract: cgroup placement before exec
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise WorkloadError(
                f"{self.kind}: cannot start {argv[0]} (or the preexec_fn failed in the child): {err}"
            ) from err
        return self._proc

    def _wait(self, ready: Callable[[], bool], what: str, timeout_s: float = _START_TIMEOUT_S) -> None:
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

    def _tool_preexec(self) -> Callable[[], None]:
        """The preexec of a tool run: the caller's preexec, then the holder's scheduling attributes."""
        caller = self._preexec
        if not self.HOLDER:
            def _client() -> None:
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
            self._run(self._adapter(float(_whole_seconds(warmup_s))))
        secs = _whole_seconds(measure_s)
        if secs != measure_s:
            notes.append(f"{self.kind} runs whole seconds: measure_s={measure_s:g} ran {secs} s")
        return self._run(self._adapter(float(secs))), notes

    def _run(self, adapter: Any, *, extra_args: tuple[str, ...] = (), timeout_s: float | None = None) -> AdapterResult:
        """Run one tool invocation like :func:`run_adapter`, with this workload's preexec.

        Same conventions: ``merge_stderr`` merges stderr into the parsed text,
        ``collect(stdout)`` supplies the text to parse; a missing binary names
        the Debian package; on timeout the tool's whole process group is
        killed; a non-zero exit carries the stderr tail. If the tuned process
        died meanwhile, that is the error reported (with its log tail).
        """
        argv = [*adapter.command(), *extra_args]
        argv[0] = _which_or_error(self.kind, argv[0])
        limit = timeout_s if timeout_s is not None else adapter.max_runtime_s() + 30.0
        merge = bool(getattr(adapter, "merge_stderr", False))
        preexec = self._tool_preexec()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                text=True,
                cwd=self.workdir,
                env=_child_env(self.workdir),
                process_group=0,
                preexec_fn=preexec,  # noqa: PLW1509 - cgroup placement and the holder's attributes
            )
        except subprocess.SubprocessError as err:
            raise AdapterError(
                self.kind, f"cannot start {argv[0]}: the preexec (preexec_fn, or copying the holder's "
                f"affinity/policy/nice/ioprio) failed in the child: {err}"
            ) from err
        except OSError as err:
            raise AdapterError(self.kind, f"cannot run {argv[0]}: {err}") from err
        try:
            out, err_text = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err_text = proc.communicate()
            raise AdapterError(self.kind, f"timed out after {limit:g} s; stderr: {_tail(err_text)}") from None
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
        if proc.returncode != 0:
            self._check_alive("during the run")
            raise AdapterError(
                self.kind,
                f"exited with {proc.returncode}; stderr: {_tail(err_text if not merge else out)}; "
                f"stdout: {_tail(out, 500)}",
            )
        collect = getattr(adapter, "collect", None)
        text = collect(out) if callable(collect) else out
        try:
            return adapter.parse(text)
        except AdapterError:
            self._check_alive("during the run")
            raise

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


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL whatever is left in the process group led by ``proc`` (a tool run's forked workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(proc: subprocess.Popen[Any], sig: int) -> None:
    """Signal the leader, wait, then SIGKILL the group; every known descendant is reaped or gone."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=_STOP_GRACE_S)
    alive = []
    for child in family:
        try:
            if child.is_running():
                child.kill()
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=_STOP_GRACE_S)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# --------------------------------------------------------------------------- client-only tools


class _HolderWorkload(_ToolWorkload):
    HOLDER = True
    STOP_SIGNAL = signal.SIGKILL

    def _binaries(self) -> tuple[str, ...]:
        return (*self.BINARIES, "sleep")

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        self._spawn_tuned([_which_or_error(self.kind, "sleep"), "86400"], preexec_fn, death_signal=signal.SIGKILL)
        self._wait(lambda: True, "holder process")

    def pids(self) -> list[int]:
        """The holder process ([] when not started)."""
        if self._proc is None or self._proc.poll() is not None:
            return []
        return [self._proc.pid]


class FioWorkload(_HolderWorkload):
    """fio: one time-based job; the holder process is tuned and the fio runs copy its attributes.

    Options (defaults):

    * ``filename`` (None -> ``<workdir>/fio.dat``, deleted by :meth:`stop`):
      the file fio reads/writes. Must be inside the workdir, an existing
      regular file the user named (write modes overwrite up to ``size`` of
      it), or a loop device ``/dev/loopN``; any other block device is refused,
      symlinks are resolved first and the check is repeated before every run.
    * ``rw`` ("randread"): read, write, randread, randwrite, rw, randrw.
    * ``bs`` ("4k"): block size, up to 64M. ``size`` ("32M"): file size, up to 64G.
    * ``iodepth`` (1): 1..1024. ``numjobs`` (1): 1..64.
    * ``direct`` (False): O_DIRECT (not supported on tmpfs).
    * ``ioengine`` ("psync"): psync, sync, pvsync, pvsync2, libaio, io_uring, posixaio, mmap.

    One run per window: ``--ramp_time`` = warm-up (not counted), then
    ``measure_s`` rounded to whole seconds (at least 1; fio reads "1.5" as 1).

    Metrics: ``throughput`` (IOPS, ``ops/s``), ``latency_p50_ms``,
    ``latency_p95_ms``, ``latency_p99_ms`` (completion latency), ``errors``
    (jobs that ended with an error), ``bytes_per_s``. No timeline.
    """

    kind = "fio"
    OPTIONS: ClassVar[Mapping[str, Any]] = {
        "filename": None, "rw": "randread", "bs": "4k", "size": "32M", "iodepth": 1,
        "direct": False, "numjobs": 1, "ioengine": "psync",
    }
    METRICS = ("throughput", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "errors", "bytes_per_s")
    BINARIES = ("fio",)

    def _validate(self) -> None:
        o = self.options
        if o["rw"] not in _FIO_RW:
            raise AdapterError("fio", f"rw must be one of {list(_FIO_RW)}, got {o['rw']!r}")
        _size_bytes("fio", "bs", o["bs"], _FIO_MAX_BS)
        _size_bytes("fio", "size", o["size"], _FIO_MAX_SIZE)
        _check_int("fio", "iodepth", o["iodepth"], 1, 1024)
        _check_int("fio", "numjobs", o["numjobs"], 1, 64)
        if not isinstance(o["direct"], bool):
            raise AdapterError("fio", f"direct must be true or false, got {o['direct']!r}")
        if o["ioengine"] not in _FIO_ENGINES:
            raise AdapterError("fio", f"ioengine must be one of {list(_FIO_ENGINES)}, got {o['ioengine']!r}")
        check_fio_filename(o["filename"], self.workdir)
        self._adapter(1.0).command()

    def stop(self) -> None:
        """Kill and reap the holder; delete the default scratch file (a named file is never deleted). Idempotent."""
        super().stop()
        if self.options["filename"] is None:
            (Path(os.path.realpath(self.workdir)) / "fio.dat").unlink(missing_ok=True)

    def _adapter(self, runtime_s: float) -> FioAdapter:
        o = self.options
        path = check_fio_filename(o["filename"], self.workdir)  # checked again at every run (symlink swaps)
        return _make_adapter(
            "fio", FioAdapter, filename=str(path), rw=o["rw"], size=str(o["size"]), bs=str(o["bs"]),
            runtime_s=runtime_s, numjobs=o["numjobs"], iodepth=o["iodepth"], ioengine=o["ioengine"],
            direct=o["direct"],
        )

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        secs = _whole_seconds(measure_s)
        notes = [] if secs == measure_s else [f"fio runs whole seconds: measure_s={measure_s:g} ran {secs} s"]
        ramp_ms = round(warmup_s * 1000)
        extra = (f"--ramp_time={ramp_ms}ms",) if ramp_ms > 0 else ()
        adapter = self._adapter(float(secs))
        return self._run(adapter, extra_args=extra, timeout_s=adapter.max_runtime_s() + warmup_s + 30.0), None, notes


class StressNgWorkload(_HolderWorkload):
    """stress-ng: one stressor for the window; the holder process is tuned and the runs copy its attributes.

    Options (defaults):

    * ``stressor`` ("cpu"): one of cpu, vm, matrix, memcpy, hdd, io, switch,
      pipe, cache (``hdd`` writes at most 64M per worker, in the workdir).
    * ``workers`` (1): 1..256 stressor instances.

    A warm-up run of ``warmup_s`` (when > 0, discarded), then a run of
    ``measure_s`` (stress-ng takes fractional seconds as whole: rounded, >= 1).

    Metrics: ``throughput`` (``bogo-ops/s``, real time), ``errors`` (always 0:
    a failing stressor fails the run), ``bogo_ops``. No timeline.
    """

    kind = "stress-ng"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"stressor": "cpu", "workers": 1}
    METRICS = ("throughput", "errors", "bogo_ops")
    BINARIES = ("stress-ng",)

    def _validate(self) -> None:
        if self.options["stressor"] not in STRESSORS:
            raise AdapterError(
                "stress-ng", f"stressor must be one of {list(STRESSORS)}, got {self.options['stressor']!r}"
            )
        _check_int("stress-ng", "workers", self.options["workers"], 1, 256)
        self._adapter(1.0, "x.yaml").command()

    def _adapter(self, seconds: float, yaml_path: str) -> StressNgAdapter:
        return _make_adapter(
            "stress-ng", StressNgAdapter, yaml_path=yaml_path, stressor=self.options["stressor"],
            workers=self.options["workers"], timeout_s=seconds,
        )

    def _once(self, seconds: float, label: str) -> AdapterResult:
        report = self.workdir / f"stress-ng-{label}.yaml"
        report.unlink(missing_ok=True)  # never parse a stale report
        extra: tuple[str, ...] = ("--temp-path", str(self.workdir / "tmp"))
        if self.options["stressor"] == "hdd":
            extra += ("--hdd-bytes", _STRESS_HDD_BYTES)
        try:
            return self._run(self._adapter(float(_whole_seconds(seconds)), str(report)), extra_args=extra)
        finally:
            report.unlink(missing_ok=True)

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        notes = []
        if warmup_s > 0:
            self._once(warmup_s, "warmup")
        secs = _whole_seconds(measure_s)
        if secs != measure_s:
            notes.append(f"stress-ng runs whole seconds: measure_s={measure_s:g} ran {secs} s")
        return self._once(measure_s, "measure"), None, notes


# --------------------------------------------------------------------------- client/server tools


class PgbenchWorkload(_ToolWorkload):
    """pgbench against a throwaway PostgreSQL cluster (the tuned process) in the workdir.

    :meth:`start` runs ``initdb`` as user ``postgres`` in a private directory
    it creates (``mkdtemp`` under the system temp dir, mode 0700, owned by
    ``postgres``: the workdir may sit under a home directory ``postgres``
    cannot enter, e.g. root's), with trust auth and ``--no-sync``, starts
    ``postgres`` on 127.0.0.1:<free port> (no Unix socket, ``fsync=off``,
    ``synchronous_commit=off``) as user ``postgres`` with the caller's
    ``preexec_fn`` run as root before the privilege drop, waits for
    ``pg_isready`` and runs ``pgbench -i -s scale`` once. Needs root and the
    ``postgres`` user. :meth:`stop` is a fast shutdown (SIGINT) and deletes
    the cluster directory; the server log stays in the workdir.

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
    STOP_SIGNAL = signal.SIGINT  # fast shutdown

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.port: int | None = None
        self._pw: pwd.struct_passwd | None = None
        self.cluster_dir: Path | None = None
        super().__init__(workdir, **options)

    def _validate(self) -> None:
        o = self.options
        _check_int("pgbench", "clients", o["clients"], 1, 1000)
        _check_int("pgbench", "threads", o["threads"], 1, min(o["clients"], 256))
        _check_int("pgbench", "scale", o["scale"], 1, 100)
        self._adapter(1.0, port=5432).command()

    def _adapter(self, seconds: float, port: int | None = None) -> PgbenchAdapter:
        o = self.options
        return _make_adapter(
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
            self._pw = pwd.getpwnam("postgres")
        except KeyError as err:
            raise WorkloadError(
                "pgbench: no 'postgres' user to run the PostgreSQL cluster (Debian package: postgresql)"
            ) from err

    def _as_postgres(self, argv: list[str], what: str, timeout_s: float) -> None:
        assert self._pw is not None
        assert self.cluster_dir is not None
        env = _child_env(self.workdir)
        env.update(HOME=self._pw.pw_dir, USER="postgres", LOGNAME="postgres", TMPDIR=str(self.cluster_dir))
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
                cwd=self.cluster_dir, env=env, user=self._pw.pw_uid, group=self._pw.pw_gid, extra_groups=[],
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise WorkloadError(f"pgbench: {what} did not finish in {timeout_s:g} s; stderr: {_tail(err.stderr)}") from err
        except (OSError, subprocess.SubprocessError) as err:
            raise WorkloadError(f"pgbench: cannot run {what}: {err}") from err
        if proc.returncode != 0:
            raise WorkloadError(f"pgbench: {what} failed ({proc.returncode}); stderr: {_tail(proc.stderr or proc.stdout)}")

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        assert self._pw is not None
        bindir = self.pg_bindir()
        assert bindir is not None
        try:
            root = self.cluster_dir = Path(tempfile.mkdtemp(prefix="novatune-pg-"))  # 0700, fresh every start
            os.chown(root, self._pw.pw_uid, self._pw.pw_gid)
        except OSError as err:
            raise WorkloadError(f"pgbench: cannot prepare a cluster directory: {err}") from err
        data = root / "data"
        probe = subprocess.run(
            ["test", "-w", str(root)], user=self._pw.pw_uid, group=self._pw.pw_gid, extra_groups=[],
            cwd="/", check=False, timeout=10,
        )
        if probe.returncode != 0:
            raise WorkloadError(
                f"pgbench: user postgres cannot reach {root}: every parent directory of the system temp "
                "directory must be searchable by others (chmod o+x)"
            )
        self._as_postgres(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
             "-E", "UTF8", "--locale=C"],
            "initdb", _SETUP_TIMEOUT_S,
        )
        self.port = _free_port()
        argv = [
            str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", "",
            "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "logging_collector=off",
            "-c", f"max_connections={max(100, self.options['clients'] + 10)}",
        ]
        self._spawn_tuned(argv, preexec_fn, cwd=root, drop_to=self._pw, death_signal=signal.SIGINT)
        isready = [str(bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres"]
        self._wait(
            lambda: subprocess.run(isready, capture_output=True, timeout=10, check=False).returncode == 0,
            "PostgreSQL",
        )
        init = self._adapter(1.0).init_command()
        init[0] = _which_or_error("pgbench", init[0])
        try:
            proc = subprocess.run(
                init, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_SETUP_TIMEOUT_S,
                cwd=self.workdir, env=_child_env(self.workdir), check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise WorkloadError(f"pgbench -i did not finish in {_SETUP_TIMEOUT_S:g} s") from err
        if proc.returncode != 0:
            self._check_alive("during pgbench -i")
            raise WorkloadError(f"pgbench -i failed ({proc.returncode}); stderr: {_tail(proc.stderr)}")

    def scratch_dirs(self) -> list[Path]:
        """Directories outside the workdir that :meth:`stop` deletes (the cluster), for the crash journal."""
        return [self.cluster_dir] if self.cluster_dir is not None else []

    def stop(self) -> None:
        """Fast shutdown (SIGINT), reap every backend, then delete the throwaway cluster. Idempotent."""
        super().stop()
        self.port = None
        if self.cluster_dir is not None:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self.cluster_dir = None

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


class RedisBenchmarkWorkload(_ToolWorkload):
    """redis-benchmark against a throwaway ``redis-server`` (the tuned process) without persistence.

    The server listens on 127.0.0.1:<free port> with ``--save ''``,
    ``--appendonly no`` and its working directory in the workdir.

    Options (defaults): ``requests`` (5000): 1..1 000 000 per test; ``clients``
    (10): 1..1000; ``tests`` (("set", "get")): a non-empty subset of
    redis-benchmark's tests (ping_inline, ping_mbulk, set, get, incr, lpush,
    rpush, lpop, rpop, sadd, hset, spop, zadd, zpopmin, lrange, mset); a
    comma-separated string is accepted.

    Count-driven: ``requests`` bounds each window and ``measure_s`` is not
    used; the warm-up (when ``warmup_s`` > 0) is a run of ``requests // 10``
    (at least 100, discarded).

    Metrics: ``throughput`` (``ops/s``, aggregate over tests),
    ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``,
    ``latency_avg_ms`` (worst test), ``errors`` (redis-benchmark reports none:
    0), ``error_rate``, ``requests``. No timeline.
    """

    kind = "redis-benchmark"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"requests": 5000, "clients": 10, "tests": ("set", "get")}
    METRICS = ("throughput", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_avg_ms",
               "errors", "error_rate", "requests")
    BINARIES = ("redis-server", "redis-benchmark")

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.port: int | None = None
        super().__init__(workdir, **options)

    def _validate(self) -> None:
        o = self.options
        tests = o["tests"]
        if isinstance(tests, str):
            tests = tuple(t.strip() for t in tests.split(",") if t.strip())
        if not isinstance(tests, (list, tuple)) or not tests or any(t not in _REDIS_TESTS for t in tests):
            raise AdapterError(
                "redis-benchmark", f"tests must be a non-empty subset of {list(_REDIS_TESTS)}, got {o['tests']!r}"
            )
        o["tests"] = tuple(dict.fromkeys(tests))
        _check_int("redis-benchmark", "requests", o["requests"], 1, 1_000_000)
        _check_int("redis-benchmark", "clients", o["clients"], 1, 1000)
        self._adapter(o["requests"], port=6379).command()

    def _adapter(self, requests: int, port: int | None = None) -> RedisBenchmarkAdapter:
        o = self.options
        return _make_adapter(
            "redis-benchmark", RedisBenchmarkAdapter, port=port if port is not None else self.port,
            requests=requests, clients=o["clients"], tests=tuple(o["tests"]),
        )

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        self.port = _free_port()
        argv = self._adapter(1).server_command()
        argv[0] = _which_or_error(self.kind, argv[0])
        argv += ["--dir", str(self.workdir), "--logfile", "", "--protected-mode", "yes"]
        self._spawn_tuned(argv, preexec_fn)
        self._wait(self._pong, "redis-server")

    def _pong(self) -> bool:
        with socket.create_connection((LOOPBACK, self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        super().stop()
        self.port = None

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        requests = self.options["requests"]
        if warmup_s > 0:
            self._run(self._adapter(min(requests, max(100, requests // 10))))
        note = (
            f"redis-benchmark is count-driven: {requests} requests per test bound the window; "
            f"measure_s={measure_s:g} is not used"
        )
        notes = [note]
        return self._run(self._adapter(requests)), None, notes

    def _operations(self, result: AdapterResult) -> float:
        return float(self.options["requests"] * len(self.options["tests"]))

    def _metrics(self, result: AdapterResult) -> dict[str, float]:
        out = super()._metrics(result)
        out["requests"] = self._operations(result)
        return out


def _loopback_url(url: Any) -> str:
    """``url`` if it is http(s) to a loopback address (literal 127.0.0.0/8, ::1, or localhost); AdapterError otherwise."""
    if not isinstance(url, str) or not url:
        raise AdapterError("wrk", f"url must be an http(s):// URL string, got {url!r}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError as err:
        raise AdapterError("wrk", f"url {url!r} is malformed: {err}") from err
    if parts.scheme not in ("http", "https"):
        raise AdapterError("wrk", f"url must be http:// or https://, got {url!r}")
    if not host:
        raise AdapterError("wrk", f"url {url!r} has no host")
    if host != "localhost":
        try:
            addr = ipaddress.ip_address(host)
        except ValueError as err:
            raise AdapterError(
                "wrk", f"url host must be a literal loopback address (127.0.0.0/8, ::1) or localhost, got {host!r}"
            ) from err
        if not addr.is_loopback:
            raise AdapterError("wrk", f"url host must be a loopback address (127.0.0.0/8, ::1), got {host!r}")
    return url


class WrkWorkload(_ToolWorkload):
    """wrk against a built-in static HTTP server (the tuned process), or against a given loopback URL.

    Without ``url``, :meth:`start` writes ``<workdir>/www/index.html``
    (``file_bytes`` bytes) and starts :mod:`collectors.workloads._servers`
    (HTTP/1.1 keep-alive, threaded, no access log) on 127.0.0.1:<free port>.
    With ``url`` nothing is started and :meth:`pids` is ``[]``.

    Options (defaults): ``url`` (None): http(s) to 127.0.0.0/8, ::1 or
    localhost only; ``threads`` (1): 1..min(connections, 256); ``connections``
    (4): 1..10 000; ``file_bytes`` (1024): 1..16 MiB, size of the served file
    (built-in server only).

    A warm-up run of ``warmup_s`` (discarded) when > 0, then a run of
    ``measure_s`` (wrk takes whole seconds: rounded, >= 1).

    Metrics: ``throughput`` (``req/s``), ``latency_p50_ms``,
    ``latency_p75_ms``, ``latency_p90_ms``, ``latency_p99_ms``,
    ``latency_avg_ms``, ``latency_stddev_ms`` (wrk has no p95), ``errors``
    (socket errors + non-2xx/3xx), ``error_rate``, ``requests``. No timeline.
    """

    kind = "wrk"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"url": None, "threads": 1, "connections": 4, "file_bytes": 1024}
    METRICS = ("throughput", "latency_p50_ms", "latency_p75_ms", "latency_p90_ms", "latency_p99_ms",
               "latency_avg_ms", "latency_stddev_ms", "errors", "error_rate", "requests")
    BINARIES = ("wrk",)

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.url: str | None = None
        super().__init__(workdir, **options)

    def _validate(self) -> None:
        o = self.options
        if o["url"] is not None:
            _loopback_url(o["url"])
        _check_int("wrk", "connections", o["connections"], 1, 10_000)
        _check_int("wrk", "threads", o["threads"], 1, min(o["connections"], 256))
        _check_int("wrk", "file_bytes", o["file_bytes"], 1, 16 << 20)
        self._adapter(1.0, url=o["url"] or "http://127.0.0.1:1/").command()

    def _adapter(self, seconds: float, url: str | None = None) -> WrkAdapter:
        o = self.options
        return _make_adapter(
            "wrk", WrkAdapter, url=url or self.url, threads=o["threads"], connections=o["connections"],
            duration_s=seconds,
        )

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        if self.options["url"] is not None:
            self.url = self.options["url"]
            return
        www = self.workdir / "www"
        try:
            www.mkdir(exist_ok=True)
            body = (b"novatune " * (self.options["file_bytes"] // 9 + 1))[: self.options["file_bytes"]]
            (www / "index.html").write_bytes(body)
        except OSError as err:
            raise WorkloadError(f"wrk: cannot write the served file in {www}: {err}") from err
        argv = [sys.executable, "-m", "collectors.workloads._servers", "http", "--root", str(www),
                "--host", LOOPBACK, "--port", "0"]
        proc = self._spawn_tuned(argv, preexec_fn, stdout_pipe=True)
        port = self._read_ready(proc)
        self.url = f"http://{LOOPBACK}:{port}/index.html"

    def _read_ready(self, proc: subprocess.Popen[bytes]) -> int:
        assert proc.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkloadError(f"wrk: HTTP server not ready after {_START_TIMEOUT_S:g} s; "
                                        f"log tail:\n{self._log_tail()}")
                if not sel.select(timeout=min(left, 0.2)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait(timeout=_STOP_GRACE_S)
                    self._check_alive("during start-up")
                buf += chunk
        try:
            ready = json.loads(buf.split(b"\n", 1)[0])
            return int(ready["port"])
        except (ValueError, KeyError, TypeError) as err:
            raise WorkloadError(f"wrk: HTTP server printed an unexpected ready line: {buf[:200]!r}") from err

    def stop(self) -> None:
        super().stop()
        self.url = None

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        result, notes = self._warm_then_measure(warmup_s, measure_s)
        return result, None, notes

    def _operations(self, result: AdapterResult) -> float:
        return result.extra.get("requests", math.nan)


class Iperf3Workload(_ToolWorkload):
    """iperf3 TCP over loopback; a persistent ``iperf3 -s`` on 127.0.0.1:<free port> is the tuned process.

    Options (defaults): ``streams`` (1): 1..128 parallel streams (``-P``).

    A warm-up run of ``warmup_s`` (discarded) when > 0, then a run of
    ``measure_s`` (iperf3 reads ``-t`` as whole seconds: rounded, >= 1).

    Metrics: ``throughput`` (receiver ``bit/s``), ``errors`` (0: iperf3
    reports none; a failure fails the run), ``retransmits``,
    ``sender_bits_per_s``, ``bytes``. Timeline: the per-interval sums
    (``t_s`` = interval end -> ``bits_per_s``, ``retransmits``).
    """

    kind = "iperf3"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"streams": 1}
    METRICS = ("throughput", "errors", "retransmits", "sender_bits_per_s", "bytes")
    BINARIES = ("iperf3",)

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.port: int | None = None
        super().__init__(workdir, **options)

    def _validate(self) -> None:
        _check_int("iperf3", "streams", self.options["streams"], 1, 128)
        self._adapter(1.0, port=5201).command()

    def _adapter(self, seconds: float, port: int | None = None) -> Iperf3Adapter:
        return _make_adapter(
            "iperf3", Iperf3Adapter, port=port if port is not None else self.port, duration_s=seconds,
            streams=self.options["streams"],
        )

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        self.port = _free_port()
        argv = [_which_or_error(self.kind, "iperf3"), "-s", "-B", LOOPBACK, "-p", str(self.port)]
        self._spawn_tuned(argv, preexec_fn)
        port = self.port
        self._wait(lambda: self._listening(port), "iperf3 server")  # no connect: it would count as a test

    def stop(self) -> None:
        super().stop()
        self.port = None

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        result, notes = self._warm_then_measure(warmup_s, measure_s)
        rows = []
        for iv in result.raw.get("intervals") or []:
            s = iv.get("sum") if isinstance(iv, dict) else None
            if isinstance(s, dict) and "end" in s and "bits_per_second" in s:
                rows.append((float(s["end"]), float(s["bits_per_second"]), float(s.get("retransmits", math.nan))))
        timeline = (
            pd.DataFrame(rows, columns=["t_s", "bits_per_s", "retransmits"]).set_index("t_s") if rows else None
        )
        return result, timeline, notes


#: tool name -> workload class
TOOL_WORKLOADS: dict[str, type[_ToolWorkload]] = {
    "fio": FioWorkload,
    "pgbench": PgbenchWorkload,
    "redis-benchmark": RedisBenchmarkWorkload,
    "wrk": WrkWorkload,
    "iperf3": Iperf3Workload,
    "stress-ng": StressNgWorkload,
}
