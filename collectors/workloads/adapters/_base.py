"""Shared pieces of the tool adapters: the result type, the error, bounds, the runner."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Protocol

from collectors.errors import WorkloadError

__all__ = [
    "DEBIAN_PACKAGES",
    "MAX_DURATION_S",
    "AdapterError",
    "AdapterResult",
    "Adapter",
    "run_adapter",
    "check_duration",
    "check_count",
    "to_float",
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
    """What every adapter offers."""

    tool: str

    def command(self) -> list[str]: ...

    def parse(self, text: str) -> AdapterResult: ...

    def max_runtime_s(self) -> float: ...


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
        val = float(text)  # type: ignore[arg-type]
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


def _tail(text: str | bytes | None, n: int = 1500) -> str:
    if not text:
        return "(empty)"
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def run_adapter(adapter: Adapter, *, timeout_s: float | None = None, cwd: str | None = None) -> AdapterResult:
    """Run ``adapter.command()`` (no shell), wait at most ``timeout_s`` and parse stdout.

    Adapters with ``merge_stderr = True`` get stderr merged into stdout; those
    with a ``collect(stdout) -> str`` method parse what it returns (a report file).

    ``timeout_s`` defaults to the adapter's own bound plus 30 s. The child is
    killed on timeout.

    Raises:
        AdapterError: binary missing (names the Debian package), timeout,
            non-zero exit (with the stderr tail), or unparsable output.
    """
    argv = adapter.command()
    binary = argv[0]
    exe = argv[argv.index("--") + 1] if binary == "runuser" and "--" in argv else binary
    if shutil.which(binary) is None or shutil.which(exe) is None:
        missing = binary if shutil.which(binary) is None else exe
        pkg = DEBIAN_PACKAGES.get(missing.rsplit("/", 1)[-1], "?")
        raise AdapterError(adapter.tool, f"{missing} not found (Debian package: {pkg})")
    limit = timeout_s if timeout_s is not None else adapter.max_runtime_s() + 30.0
    try:
        merge = bool(getattr(adapter, "merge_stderr", False))  # e.g. pgbench -P writes progress to stderr
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            text=True, timeout=limit, cwd=cwd, check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise AdapterError(adapter.tool, f"timed out after {limit:g} s; stderr: {_tail(err.stderr)}") from err
    except OSError as err:
        raise AdapterError(adapter.tool, f"cannot run {argv[0]}: {err}") from err
    if proc.returncode != 0:
        raise AdapterError(
            adapter.tool,
            f"exited with {proc.returncode}; stderr: {_tail(proc.stderr)}; stdout: {_tail(proc.stdout, 500)}",
        )
    collect = getattr(adapter, "collect", None)
    text = collect(proc.stdout) if callable(collect) else proc.stdout
    return adapter.parse(text)
