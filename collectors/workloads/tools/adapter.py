"""What every tool adapter shares: the result, the error, bounds, checks, the runner, the adapter table.

An *adapter* turns one tool into an argument list and a pure output parser: a
frozen dataclass with ``command() -> list[str]`` (bounded in time and count,
aimed at 127.0.0.1 by default), ``max_runtime_s()`` and ``parse(text) ->
AdapterResult``; :class:`AdapterBase` gives the optional members
(``merge_stderr``, ``collect``) their defaults. Parsers never run anything;
:func:`run_adapter` runs the command with a hard timeout through the one
process runner (:func:`collectors.workloads.process.run_bounded`) and parses
what it printed. The tool workloads run their tools through it too.

Tools and the Debian packages that provide them: fio (``fio``), pgbench
(``postgresql-contrib`` / ``postgresql-client``; the server also needs
``postgresql``), redis-benchmark (``redis-tools``; server ``redis-server``), wrk
(``wrk``), iperf3 (``iperf3``), stress-ng (``stress-ng``).

This module imports neither pandas nor any tool module: :func:`get_adapter`
imports the adapter's module on demand.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from collectors.errors import WorkloadError
from collectors.workloads.process import run_bounded, tail

__all__ = [
    "ADAPTERS",
    "DEBIAN_PACKAGES",
    "MAX_COUNT",
    "MAX_DURATION_S",
    "Adapter",
    "AdapterBase",
    "AdapterError",
    "AdapterResult",
    "check_count",
    "check_duration",
    "duration_ms",
    "get_adapter",
    "run_adapter",
    "to_float",
    "which_or_error",
]

#: Hard cap on any adapter's run time (seconds) and request/transaction count.
MAX_DURATION_S = 600.0
MAX_COUNT = 10_000_000

#: binary -> Debian package that provides it (Debian 12 "bookworm").
DEBIAN_PACKAGES: dict[str, str] = {
    "fio": "fio",
    "pgbench": "postgresql-contrib",
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_isready": "postgresql",
    "redis-benchmark": "redis-tools",
    "redis-server": "redis-server",
    "wrk": "wrk",
    "iperf3": "iperf3",
    "stress-ng": "stress-ng",
    "sleep": "coreutils",
    "test": "coreutils",
}

_NAN = math.nan


class AdapterError(WorkloadError):
    """A tool's output could not be parsed, or its command could not be built or run.

    ``tool`` names the tool; the message starts with it.
    """

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool


@dataclass(frozen=True)
class AdapterResult:
    """What one run of a tool measured.

    ``throughput`` is the tool's main figure in ``throughput_unit`` (e.g.
    ``"ops/s"``, ``"tx/s"``, ``"req/s"``, ``"bit/s"``, ``"bogo-ops/s"``).
    Latencies are milliseconds, NaN where the tool does not report them.
    ``errors`` counts failed operations/requests the tool reported.
    ``extra`` holds further tool-specific scalars (e.g. iperf3 ``retransmits``);
    ``raw`` is the parsed output as the tool gave it.
    """

    tool: str
    throughput: float
    throughput_unit: str
    latency_p50_ms: float = _NAN
    latency_p95_ms: float = _NAN
    latency_p99_ms: float = _NAN
    latency_avg_ms: float = _NAN
    latency_stddev_ms: float = _NAN
    errors: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def metrics(self) -> dict[str, float]:
        """The scalar figures as a flat ``{name: float}`` dict (NaN where unknown)."""
        out = {
            "throughput": float(self.throughput),
            "latency_p50_ms": float(self.latency_p50_ms),
            "latency_p95_ms": float(self.latency_p95_ms),
            "latency_p99_ms": float(self.latency_p99_ms),
            "latency_avg_ms": float(self.latency_avg_ms),
            "latency_stddev_ms": float(self.latency_stddev_ms),
            "errors": float(self.errors),
        }
        out.update({k: float(v) for k, v in self.extra.items()})
        return out


class Adapter(Protocol):
    """What every adapter offers (:class:`AdapterBase` gives ``merge_stderr`` and ``collect`` their defaults)."""

    @property
    def tool(self) -> str:
        """The tool's name (the prefix of every :class:`AdapterError` it raises)."""
        ...

    #: whether the tool's stderr is part of what :meth:`parse` reads (e.g. pgbench ``-P`` progress lines)
    merge_stderr: ClassVar[bool]

    def command(self) -> list[str]:
        """The argument list (``argv[0]`` a binary name). Raises: AdapterError: an option out of range."""
        ...

    def parse(self, text: str) -> AdapterResult:
        """What one run measured. Raises: AdapterError: the text is not the tool's output."""
        ...

    def max_runtime_s(self) -> float:
        """The longest one run may take (seconds, before the runner's own margin)."""
        ...

    def collect(self, stdout: str) -> str:
        """The text to parse, given what the run printed (a report file for some tools). Raises: AdapterError."""
        ...


class AdapterBase:
    """Defaults of an adapter's optional members: stderr kept apart, stdout parsed as printed."""

    merge_stderr: ClassVar[bool] = False

    def collect(self, stdout: str) -> str:
        """What :meth:`parse` reads: by default what the run printed on stdout."""
        return stdout


def check_duration(tool: str, name: str, value: float) -> float:
    """Validate a run time in seconds: finite, > 0 and <= :data:`MAX_DURATION_S`.

    Raises:
        AdapterError: out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= MAX_DURATION_S):
        raise AdapterError(tool, f"{name} must be in (0, {MAX_DURATION_S:g}] seconds, got {value!r}")
    return float(value)


def check_count(tool: str, name: str, value: int, *, low: int = 1, high: int = MAX_COUNT) -> int:
    """Validate an integer count in ``[low, high]``.

    Raises:
        AdapterError: not an int or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
        raise AdapterError(tool, f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def to_float(tool: str, what: str, text: str | float | int | None) -> float:
    """``float(text)`` or an :class:`AdapterError` naming the tool and the field.

    Raises:
        AdapterError: not a finite number.
    """
    try:
        if text is None:
            raise TypeError("None")
        val = float(text)
    except (TypeError, ValueError) as err:
        raise AdapterError(tool, f"{what} is not a number: {text!r}") from err
    if not math.isfinite(val):
        raise AdapterError(tool, f"{what} is not finite: {text!r}")
    return val


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def duration_ms(tool: str, text: str) -> float:
    """``"782.59us"`` / ``"2.29ms"`` / ``"1.01s"`` -> milliseconds.

    Raises:
        AdapterError: not a number with a known unit.
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|m|h)\s*", text)
    if not m:
        raise AdapterError(tool, f"cannot read duration {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def which_or_error(tool: str, binary: str) -> str:
    """Absolute path of ``binary`` (a name on ``PATH`` or an absolute path).

    Raises:
        AdapterError: not found or not executable; the message names the
            Debian package that provides it.
    """
    found = binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else shutil.which(binary)
    if not found:
        name = binary.rsplit("/", 1)[-1]
        raise AdapterError(tool, f"{name} not found (Debian package: {DEBIAN_PACKAGES.get(name, '?')})")
    return found


def _resolved_argv(adapter: Adapter, extra_args: tuple[str, ...]) -> list[str]:
    """``adapter.command() + extra_args`` with ``argv[0]`` made absolute (and ``runuser -- exe`` checked)."""
    argv = [*adapter.command(), *extra_args]
    argv[0] = which_or_error(adapter.tool, argv[0])
    if os.path.basename(argv[0]) == "runuser" and "--" in argv[:-1]:
        which_or_error(adapter.tool, argv[argv.index("--") + 1])
    return argv


def run_adapter(
    adapter: Adapter,
    *,
    timeout_s: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    extra_args: tuple[str, ...] = (),
    on_failure: Callable[[], None] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> AdapterResult:
    """Run ``adapter.command() + extra_args`` (no shell), wait at most ``timeout_s`` and parse the output.

    ``adapter.merge_stderr`` merges stderr into the parsed text;
    ``adapter.collect(stdout)`` supplies the text to parse. The tool leads its
    own process group, which is SIGKILLed on timeout. ``timeout_s`` defaults
    to the adapter's own bound plus 30 s. ``preexec_fn`` runs in the child
    before ``exec``. ``on_failure`` is called before a non-zero exit or an
    unparsable output is reported (a tool workload raises there instead when
    its server died meanwhile). ``pass_fds`` are descriptors the tool inherits
    (fio's file, opened safely by novatune, named ``/proc/self/fd/N``).

    Raises:
        AdapterError: binary missing (names the Debian package), the preexec
            failed, timeout (with the stderr tail), non-zero exit (with the
            stderr tail), or unparsable output.
    """
    argv = _resolved_argv(adapter, extra_args)
    limit = timeout_s if timeout_s is not None else adapter.max_runtime_s() + 30.0
    merge = adapter.merge_stderr
    try:
        proc = run_bounded(argv, timeout_s=limit, cwd=cwd, env=env, preexec_fn=preexec_fn, merge_stderr=merge,
                           pass_fds=pass_fds)
    except subprocess.TimeoutExpired as err:
        raise AdapterError(adapter.tool, f"timed out after {limit:g} s; stderr: {tail(err.stderr)}") from None
    except subprocess.SubprocessError as err:
        raise AdapterError(
            adapter.tool, f"cannot start {argv[0]}: the preexec (preexec_fn, or copying the holder's "
            f"affinity/policy/nice/ioprio) failed in the child: {err}"
        ) from err
    except OSError as err:
        raise AdapterError(adapter.tool, f"cannot run {argv[0]}: {err}") from err
    if proc.returncode != 0:
        if on_failure is not None:
            on_failure()
        raise AdapterError(
            adapter.tool,
            f"exited with {proc.returncode}; stderr: {tail(proc.stdout if merge else proc.stderr)}; "
            f"stdout: {tail(proc.stdout, 500)}",
        )
    try:
        return adapter.parse(adapter.collect(proc.stdout))
    except AdapterError:
        if on_failure is not None:
            on_failure()
        raise


#: tool name -> (module, class name) of its adapter; resolved on demand by :func:`get_adapter`
ADAPTERS: dict[str, tuple[str, str]] = {
    "fio": ("collectors.workloads.tools.fio", "FioAdapter"),
    "pgbench": ("collectors.workloads.tools.pgbench", "PgbenchAdapter"),
    "redis-benchmark": ("collectors.workloads.tools.redis_benchmark", "RedisBenchmarkAdapter"),
    "wrk": ("collectors.workloads.tools.wrk", "WrkAdapter"),
    "iperf3": ("collectors.workloads.tools.iperf3", "Iperf3Adapter"),
    "stress-ng": ("collectors.workloads.tools.stress_ng", "StressNgAdapter"),
}


def get_adapter(tool: str) -> type:
    """The adapter class for ``tool`` (a key of :data:`ADAPTERS`).

    Raises:
        AdapterError: unknown tool (the message lists the known ones).
    """
    if tool not in ADAPTERS:
        raise AdapterError(tool, f"unknown tool; known: {sorted(ADAPTERS)}")
    module, cls = ADAPTERS[tool]
    klass: type = getattr(importlib.import_module(module), cls)
    return klass
