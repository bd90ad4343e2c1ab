"""OLTP workload (``kind: oltp``): a real loopback service plus a separate load generator.

:class:`OltpService` is the :class:`~collectors.workloads.base.Workload` the
trial loop drives; it wraps :class:`OltpWorkload`, which starts the pre-forked server
(:mod:`collectors.workloads.oltp_server`) and measures it with the closed-loop
load generator (:mod:`collectors.workloads.loadgen`), which runs as its own
process so that it is never inside the server's cgroup or CPU affinity. The
load generator's output is parsed by :func:`parse_loadgen_output`, separate from
the runner so that it can be tested on recorded output. The load generator
runs through the one process runner (:func:`collectors.workloads.process.run_bounded`).

Example::

    with OltpWorkload(workdir, workers=2, clients=8) as wl:
        result = wl.measure(warmup_s=1, measure_s=5)
        print(result.throughput_rps, result.latency_p95_ms)
"""

from __future__ import annotations

import json
import math
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from collectors.errors import WorkloadError
from collectors.safepath import PathRefused, WriteRoots
from collectors.workloads.base import Measurement, Workload, process_tree
from collectors.workloads.oltp_server import DEFAULT_CPU_ITERATIONS, DEFAULT_ROWS
from collectors.workloads.process import child_env, run_bounded, stop_process, tail

__all__ = ["OltpService", "OltpWorkload", "WorkloadError", "WorkloadResult", "parse_loadgen_output"]

_TAIL_CHARS = 2000
_STOP_GRACE_S = 5.0
_REQUIRED_INT = ("requests", "errors")
_REQUIRED_FLOAT = ("duration_s", "throughput_rps")
_LATENCY_KEYS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
_TIMELINE_KEYS = ("t", "rps", "p95_ms", "phase")
_PHASES = ("warmup", "measure")


@dataclass(frozen=True)
class WorkloadResult:
    """One measurement of the OLTP service.

    Totals cover the measurement window only (warm-up excluded). ``requests``
    counts successful requests and ``errors`` failed ones (connection errors,
    error responses and timeouts; ``timeouts`` is that subset). Latencies are
    over successful requests, in milliseconds, NaN when there was none.
    ``timeline`` has one row per second of the whole run, indexed by ``t_s``
    (seconds since the load started), columns ``rps``, ``p95_ms``, ``errors``
    and ``phase`` (``"warmup"`` | ``"measure"``).
    """

    throughput_rps: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    errors: int
    requests: int
    duration_s: float
    timeline: pd.DataFrame = field(compare=False, repr=False)
    timeouts: int = 0
    capped: bool = False
    last_error: str = ""

    def metrics(self) -> dict[str, float]:
        """The scalar figures as a flat ``{name: float}`` dict (for tracking/objectives)."""
        return {
            "throughput_rps": float(self.throughput_rps),
            "latency_p50_ms": float(self.latency_p50_ms),
            "latency_p95_ms": float(self.latency_p95_ms),
            "latency_p99_ms": float(self.latency_p99_ms),
            "errors": float(self.errors),
            "timeouts": float(self.timeouts),
            "requests": float(self.requests),
            "duration_s": float(self.duration_s),
        }


def _num(obj: dict[str, Any], key: str, *, kind: type, nullable: bool = False) -> float | int:
    if key not in obj:
        raise WorkloadError(f"load generator output lacks field {key!r}")
    val = obj[key]
    if val is None and nullable:
        return math.nan
    if isinstance(val, bool) or not isinstance(val, (int, float)) or (kind is int and not isinstance(val, int)):
        raise WorkloadError(f"load generator output field {key!r} must be {kind.__name__}, got {val!r}")
    if val < 0:
        raise WorkloadError(f"load generator output field {key!r} is negative: {val!r}")
    return kind(val)


def parse_loadgen_output(text: str) -> WorkloadResult:
    """Parse the JSON object printed by :mod:`collectors.workloads.loadgen`.

    Raises:
        WorkloadError: the text is not one JSON object with the expected
            fields and types (the message names the first problem found).
    """
    stripped = text.strip()
    if not stripped:
        raise WorkloadError("load generator printed nothing")
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as err:
        raise WorkloadError(f"load generator output is not JSON ({err}): {stripped[:200]!r}") from err
    if not isinstance(obj, dict):
        raise WorkloadError(f"load generator output must be a JSON object, got {type(obj).__name__}")
    ints = {k: _num(obj, k, kind=int) for k in _REQUIRED_INT}
    floats = {k: _num(obj, k, kind=float) for k in _REQUIRED_FLOAT}
    lats = {k: _num(obj, k, kind=float, nullable=True) for k in _LATENCY_KEYS}
    if ints["requests"] > 0 and any(math.isnan(v) for v in lats.values()):
        raise WorkloadError("load generator output has requests but no latency percentiles")
    p50, p95, p99 = (lats[k] for k in _LATENCY_KEYS)
    if not (math.isnan(p50) or p50 <= p95 <= p99):
        raise WorkloadError(f"load generator latency percentiles are not ordered: p50={p50} p95={p95} p99={p99}")

    raw_tl = obj.get("timeline")
    if not isinstance(raw_tl, list):
        raise WorkloadError("load generator output lacks a 'timeline' list")
    rows = []
    for i, entry in enumerate(raw_tl):
        if not isinstance(entry, dict) or any(k not in entry for k in _TIMELINE_KEYS):
            raise WorkloadError(f"load generator timeline entry {i} must be an object with {list(_TIMELINE_KEYS)}")
        if entry["phase"] not in _PHASES:
            raise WorkloadError(f"load generator timeline entry {i}: phase {entry['phase']!r} not in {list(_PHASES)}")
        rows.append(
            (
                float(_num(entry, "t", kind=float)),
                float(_num(entry, "rps", kind=float)),
                float(_num(entry, "p95_ms", kind=float, nullable=True)),
                int(_num(entry, "errors", kind=int)) if "errors" in entry else 0,
                entry["phase"],
            )
        )
    timeline = pd.DataFrame(rows, columns=["t_s", "rps", "p95_ms", "errors", "phase"]).set_index("t_s")
    timeline["phase"] = pd.Categorical(timeline["phase"], categories=list(_PHASES))
    timeouts = obj.get("timeouts", 0)
    return WorkloadResult(
        throughput_rps=floats["throughput_rps"],
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        errors=int(ints["errors"]),
        requests=int(ints["requests"]),
        duration_s=floats["duration_s"],
        timeline=timeline,
        timeouts=int(timeouts) if isinstance(timeouts, int) else 0,
        capped=bool(obj.get("capped", False)),
        last_error=str(obj.get("last_error", "")),
    )


class OltpWorkload:
    """A pre-forked SQLite-backed TCP service on 127.0.0.1 and its load generator.

    Args:
        workdir: scratch directory (database, ``server.log``); created if needed.
        workers: server worker processes (forked after the server binds).
        clients: concurrent closed-loop connections of the load generator.
        port: TCP port on 127.0.0.1; 0 picks a free one.
        cpu_iterations: PBKDF2 rounds of CPU work per request (sets the cost of
            a request, hence how CPU-bound the service is).
        rows: rows seeded into the table at start.
        request_timeout_s: per-request timeout of the load generator.
        max_requests: hard cap on requests per :meth:`measure` (None: 10 000 per
            client-second of the run, far above what this service can do).
        start_timeout_s: how long :meth:`start` waits for the server.

    The server process receives SIGTERM if the thread that called
    :meth:`start` exits (``PR_SET_PDEATHSIG`` is per thread): start it from a
    thread that outlives it, usually the main thread.
    """

    #: the server process (None until started; also when __init__ refused the arguments)
    _proc: subprocess.Popen[bytes] | None = None

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        workers: int = 2,
        clients: int = 8,
        port: int = 0,
        cpu_iterations: int = DEFAULT_CPU_ITERATIONS,
        rows: int = DEFAULT_ROWS,
        request_timeout_s: float = 2.0,
        max_requests: int | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        if workers < 1 or clients < 1:
            raise ValueError(f"workers and clients must be >= 1, got workers={workers} clients={clients}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if request_timeout_s <= 0 or start_timeout_s <= 0:
            raise ValueError("request_timeout_s and start_timeout_s must be > 0")
        self.workdir = Path(workdir)
        self.workers = workers
        self.clients = clients
        self.cpu_iterations = cpu_iterations
        self.rows = rows
        self.request_timeout_s = request_timeout_s
        self.max_requests = max_requests
        self.start_timeout_s = start_timeout_s
        self._requested_port = port
        self.port: int | None = None
        self._proc = None
        self._log: IO[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def log_path(self) -> Path:
        """Where the server's stderr goes."""
        return self.workdir / "server.log"

    def _log_tail(self) -> str:
        try:
            return tail(self.log_path.read_bytes(), _TAIL_CHARS)
        except OSError:
            return "(no server log)"

    def start(self, *, preexec_fn: Callable[[], None] | None = None) -> list[int]:
        """Start the server and wait until it answers a PING.

        Args:
            preexec_fn: run in the server process before exec, hence before it
                forks its workers (e.g. write ``os.getpid()`` into a cgroup's
                ``cgroup.procs``); the workers inherit what it sets.

        Returns:
            The pids of the server (parent first, then its workers).

        Raises:
            WorkloadError: already started, the process could not be spawned,
                preexec_fn failed, or the server did not become ready within
                ``start_timeout_s`` (the message carries the server log tail).
        """
        if self._proc is not None:
            raise WorkloadError("OltpWorkload already started; call stop() first")
        self.prepare_paths()
        cmd = [
            sys.executable,
            "-m",
            "collectors.workloads.oltp_server",
            "--workdir",
            str(self.workdir),
            "--port",
            str(self._requested_port),
            "--workers",
            str(self.workers),
            "--rows",
            str(self.rows),
            "--cpu-iterations",
            str(self.cpu_iterations),
            "--parent-pid",
            str(os.getpid()),
        ]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env=child_env(),
                preexec_fn=preexec_fn,  # noqa: PLW1509 - the contract: join a cgroup before forking workers
            )
        except (OSError, subprocess.SubprocessError) as err:
            self._close_log()
            raise WorkloadError(f"cannot start the OLTP server: {err}") from err
        try:
            ready = self._wait_ready()
            self.port = int(ready["port"])
            self._ping()
        except BaseException:
            self.stop()
            raise
        return self.pids()

    def prepare_paths(self) -> None:
        """Make the workdir a private directory (0700; refused when a symlink, another user's or writable
        by others: the server creates its database in it by path) and open the server log, emptied,
        through :class:`collectors.safepath.WriteRoots`. Starts nothing; undone by :meth:`stop`.

        Raises:
            WorkloadError: the workdir or the log is refused or cannot be made.
        """
        if self._log is not None:
            return
        roots = WriteRoots.of(self.workdir)
        try:
            roots.ensure_dir(".")
            log = roots.open_file(self.log_path.name)
        except PathRefused as err:
            raise WorkloadError(f"cannot prepare workdir {self.workdir}: {err}") from None
        os.close(log.dir_fd)
        os.ftruncate(log.fd, 0)
        self._log = os.fdopen(log.fd, "wb")

    def _wait_ready(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkloadError(
                        f"OLTP server not ready after {self.start_timeout_s:g} s; log tail:\n{self._log_tail()}"
                    )
                if not sel.select(timeout=min(left, 0.2)):
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 4096)
                if not chunk:
                    status = self._proc.wait(timeout=_STOP_GRACE_S)
                    raise WorkloadError(
                        f"OLTP server exited during start-up (status {status}); log tail:\n{self._log_tail()}"
                    )
                buf += chunk
        line = buf.split(b"\n", 1)[0]
        try:
            ready = json.loads(line)
            if ready.get("event") != "ready" or not isinstance(ready.get("port"), int):
                raise ValueError("not a ready event")
        except (ValueError, AttributeError) as err:
            raise WorkloadError(f"OLTP server printed an unexpected ready line: {line[:200]!r}") from err
        return ready

    def _ping(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=self.request_timeout_s * 2) as s:
                s.sendall(b"PING\n")
                answer = s.makefile("rb").readline()
        except OSError as err:
            raise WorkloadError(f"OLTP server on 127.0.0.1:{self.port} does not answer: {err}") from err
        if answer.strip() != b"PONG":
            raise WorkloadError(f"OLTP server answered {answer[:80]!r} to PING")

    def pids(self) -> list[int]:
        """Every live process of the server: the parent first, then its workers ([] if not running)."""
        return process_tree(self._proc)

    def measure(self, *, warmup_s: float, measure_s: float) -> WorkloadResult:
        """Run the load generator for ``warmup_s + measure_s`` and return its result.

        Bounded: the load generator stops sending at the end of the window and
        is killed if it has not finished ``request_timeout_s + 15`` s later.

        Raises:
            ValueError: warmup_s < 0 or measure_s <= 0.
            WorkloadError: the server is not running or died during the
                window, or the load generator failed, hung or printed
                malformed output (the message carries its stderr tail).
        """
        if warmup_s < 0 or measure_s <= 0:
            raise ValueError(f"need warmup_s >= 0 and measure_s > 0, got {warmup_s}, {measure_s}")
        if self._proc is None or self.port is None:
            raise WorkloadError("OltpWorkload is not started")
        if self._proc.poll() is not None:
            raise WorkloadError(
                f"OLTP server is not running (status {self._proc.returncode}); log tail:\n{self._log_tail()}"
            )
        run_s = warmup_s + measure_s
        cap = self.max_requests or int(10_000 * self.clients * max(1.0, run_s))
        cmd = [
            sys.executable,
            "-m",
            "collectors.workloads.loadgen",
            "--port",
            str(self.port),
            "--clients",
            str(self.clients),
            "--warmup-s",
            repr(float(warmup_s)),
            "--measure-s",
            repr(float(measure_s)),
            "--timeout-s",
            repr(float(self.request_timeout_s)),
            "--max-requests",
            str(cap),
            "--parent-pid",
            str(os.getpid()),
        ]
        limit = run_s + self.request_timeout_s + 15.0
        try:
            gen = run_bounded(cmd, timeout_s=limit, env=child_env(), new_group=False)
        except subprocess.TimeoutExpired as err:
            raise WorkloadError(
                f"load generator did not finish within {limit:g} s; stderr tail:\n{tail(err.stderr, _TAIL_CHARS)}"
            ) from err
        except (OSError, subprocess.SubprocessError) as err:
            raise WorkloadError(f"cannot run the load generator: {err}") from err
        if gen.returncode != 0:
            raise WorkloadError(
                f"load generator failed (status {gen.returncode}); stderr tail:\n{tail(gen.stderr, _TAIL_CHARS)}"
            )
        try:
            result = parse_loadgen_output(gen.stdout)
        except WorkloadError as err:
            raise WorkloadError(f"{err}; stderr tail:\n{tail(gen.stderr, _TAIL_CHARS)}") from err
        if self._proc.poll() is not None:
            raise WorkloadError(
                f"OLTP server exited during the measurement (status {self._proc.returncode}; "
                f"{result.requests} requests, {result.errors} errors); log tail:\n{self._log_tail()}"
            )
        return result

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after a grace period). Idempotent.

        Every process of the server, workers included, is gone when this returns.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, signal.SIGTERM, grace_s=_STOP_GRACE_S)
        self.port = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> OltpWorkload:
        """Start the server unless already started; return self."""
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; stop() is the contract
        if self._proc is not None:
            try:
                self.stop()
            except Exception:  # noqa: BLE001 - never raise from a finaliser
                pass


_OLTP_METRICS = ("throughput", "throughput_rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                 "errors", "error_rate", "throughput_cv")


class OltpService(Workload):
    """:class:`OltpWorkload` behind the :class:`~collectors.workloads.base.Workload` protocol (``kind: oltp``).

    Reports ``throughput`` and its historical name ``throughput_rps`` (requests/s,
    the same number), latency percentiles, ``errors``, ``error_rate`` and
    ``throughput_cv``: the coefficient of variation of the per-second request
    rate over the measurement window (how steady the window was; NaN with
    fewer than two seconds measured).

    Raises:
        ValueError: ``workers`` or ``clients`` < 1 (from :class:`OltpWorkload`).
    """

    kind = "oltp"

    def __init__(self, workdir: Path, *, workers: int = 2, clients: int = 8) -> None:
        self.inner = OltpWorkload(workdir, workers=workers, clients=clients)

    def metric_names(self) -> tuple[str, ...]:
        """Every metric :meth:`measure` reports."""
        return _OLTP_METRICS

    def start(self, *, preexec_fn: Callable[[], None] | None = None) -> list[int]:
        """Start the server (``preexec_fn`` runs in it before its workers fork). Raises: WorkloadError."""
        return self.inner.start(preexec_fn=preexec_fn)

    def prepare_paths(self) -> None:
        """The private workdir and the server log (see :meth:`OltpWorkload.prepare_paths`). Raises: WorkloadError."""
        self.inner.prepare_paths()

    def pids(self) -> list[int]:
        """The server and its workers ([] when not running)."""
        return self.inner.pids()

    def measure(self, *, warmup_s: float, measure_s: float) -> Measurement:
        """One window of the load generator. Raises: ValueError (bad window), WorkloadError."""
        res = self.inner.measure(warmup_s=warmup_s, measure_s=measure_s)
        total = res.requests + res.errors
        tl = res.timeline
        cv = math.nan
        if tl is not None and len(tl) and "rps" in tl:
            rps = tl.loc[tl["phase"] == "measure", "rps"].astype(float)
            if len(rps) >= 2 and rps.mean() > 0:
                cv = float(rps.std(ddof=1) / rps.mean())
        metrics = {
            "throughput": res.throughput_rps,
            "throughput_rps": res.throughput_rps,
            "latency_p50_ms": res.latency_p50_ms,
            "latency_p95_ms": res.latency_p95_ms,
            "latency_p99_ms": res.latency_p99_ms,
            "errors": float(res.errors),
            "error_rate": res.errors / total if total else 1.0,
            "throughput_cv": cv,
        }
        notes = (f"request cap reached: {res.requests} requests",) if res.capped else ()
        return Measurement(metrics, {"throughput": "req/s", "throughput_rps": "req/s"}, tl, notes)

    def stop(self) -> None:
        """Stop the server and its workers; idempotent."""
        self.inner.stop()
