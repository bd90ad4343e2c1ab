"""redis-benchmark: the adapter (a bounded request count against 127.0.0.1 or a unix socket with ``--csv``
output) and :class:`RedisBenchmarkWorkload`, which starts the throwaway ``redis-server`` it measures
(unprivileged, on a unix socket in its private directory)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import psutil

from collectors.workloads.tools.adapter import (
    AdapterBase,
    AdapterError,
    AdapterResult,
    check_count,
    to_float,
    which_or_error,
)
from collectors.workloads.tools.workload import ToolWorkload, check_int, make_adapter

__all__ = ["TESTS", "RedisBenchmarkAdapter", "RedisBenchmarkWorkload", "parse_redis_benchmark"]

TOOL = "redis-benchmark"
TESTS = ("ping_inline", "ping_mbulk", "set", "get", "incr", "lpush", "rpush", "lpop", "rpop",
          "sadd", "hset", "spop", "zadd", "zpopmin", "lrange", "mset")
_LAT = {"latency_p50_ms": "p50_latency_ms", "latency_p95_ms": "p95_latency_ms", "latency_p99_ms": "p99_latency_ms",
        "latency_avg_ms": "avg_latency_ms"}


@dataclass(frozen=True, kw_only=True)
class RedisBenchmarkAdapter(AdapterBase):
    """``redis-benchmark -h host -p port -n requests -c clients -t tests --csv`` (``-s socket`` instead of
    host and port when ``socket`` is given).

    The count ``requests`` (per test) bounds the run.
    """

    port: int | None = None
    socket: str | None = None
    host: str = "127.0.0.1"
    requests: int = 5000
    clients: int = 10
    tests: tuple[str, ...] = ("set", "get")
    tool: str = TOOL

    def max_runtime_s(self) -> float:
        return 60.0

    def command(self) -> list[str]:
        """Raises: AdapterError: an option out of range or an unknown test."""
        target = self._target()
        check_count(TOOL, "requests", self.requests, high=1_000_000)
        check_count(TOOL, "clients", self.clients, high=1000)
        bad = [t for t in self.tests if t not in TESTS]
        if not self.tests or bad:
            raise AdapterError(TOOL, f"tests must be a non-empty subset of {list(TESTS)}, got {list(self.tests)}")
        return [
            "redis-benchmark", *target, "-n", str(self.requests),
            "-c", str(self.clients), "-t", ",".join(self.tests), "--csv",
        ]

    def _target(self) -> list[str]:
        if self.socket is not None:
            if not self.socket or "\0" in self.socket:
                raise AdapterError(TOOL, f"socket must be a path, got {self.socket!r}")
            return ["-s", self.socket]
        if self.port is None:
            raise AdapterError(TOOL, "give a port or a socket")
        return ["-h", self.host, "-p", str(check_count(TOOL, "port", self.port, high=65535))]

    def server_command(self) -> list[str]:
        """A throwaway redis-server without persistence: on ``host:port``, or (``socket``) on that unix
        socket only (``--port 0``, socket mode 0700). Raises: AdapterError: bad port or socket."""
        target = self._target()
        where = (["--port", "0", "--unixsocket", target[1], "--unixsocketperm", "700"] if self.socket is not None
                 else ["--port", str(self.port)])
        return ["redis-server", "--bind", self.host, *where, "--save", "", "--appendonly", "no", "--daemonize", "no"]

    def parse(self, text: str) -> AdapterResult:
        return parse_redis_benchmark(text)


def parse_redis_benchmark(text: str) -> AdapterResult:
    """Parse ``redis-benchmark --csv`` (redis >= 6.2 header with latency columns; older rps-only also accepted).

    Every test runs the same request count one after another, so throughput
    (``ops/s``) is the aggregate rate: ``len(tests) / sum(1 / rps)``.
    Latencies are the worst (max) over tests; per-test rows are in
    ``raw["tests"]``.

    Raises:
        AdapterError: no CSV rows, no ``rps`` column or a non-numeric field.
    """
    rows = [r for r in csv.reader(io.StringIO(text.strip())) if r]
    if rows and rows[0][:2] == ["test", "rps"]:
        header, body = rows[0], rows[1:]
    else:  # old format: "SET","12345.67" with no header
        header, body = ["test", "rps"], rows
    if not body:
        raise AdapterError(TOOL, f"no CSV result rows in output: {text.strip()[:200]!r}")
    tests: dict[str, dict[str, float]] = {}
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise AdapterError(TOOL, f"CSV row {i + 1} has {len(row)} fields, header has {len(header)}: {row!r}")
        rec = dict(zip(header, row, strict=True))
        tests[rec["test"]] = {k: to_float(TOOL, f"{rec['test']}.{k}", v) for k, v in rec.items() if k != "test"}
    if any(t["rps"] <= 0 for t in tests.values()):
        raise AdapterError(TOOL, f"non-positive rps in {tests}")
    lat = {
        key: max(t[col] for t in tests.values()) if all(col in t for t in tests.values()) else math.nan
        for key, col in _LAT.items()
    }
    throughput = len(tests) / sum(1.0 / t["rps"] for t in tests.values())
    return AdapterResult(
        tool=TOOL, throughput=throughput, throughput_unit="ops/s", raw={"tests": tests},
        latency_p50_ms=lat["latency_p50_ms"], latency_p95_ms=lat["latency_p95_ms"],
        latency_p99_ms=lat["latency_p99_ms"], latency_avg_ms=lat["latency_avg_ms"],
    )


class RedisBenchmarkWorkload(ToolWorkload):
    """redis-benchmark against a throwaway ``redis-server`` (the tuned process) without persistence.

    The server runs as user ``redis`` (else ``nobody``) in its private directory (see
    :mod:`collectors.workloads.tools.private`) and listens on a unix socket there only (mode 0700, no
    TCP: ``--port 0``), with ``--save ''`` and ``--appendonly no``; redis-benchmark runs as that user
    too (the socket's directory is the server account's). No other local user can reach it.

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
    SERVER_USERS = ("redis", "nobody")

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.socket: Path | None = None
        super().__init__(workdir, **options)

    def _validate(self) -> None:
        o = self.options
        tests = o["tests"]
        if isinstance(tests, str):
            tests = tuple(t.strip() for t in tests.split(",") if t.strip())
        if not isinstance(tests, (list, tuple)) or not tests or any(t not in TESTS for t in tests):
            raise AdapterError(
                "redis-benchmark", f"tests must be a non-empty subset of {list(TESTS)}, got {o['tests']!r}"
            )
        o["tests"] = tuple(dict.fromkeys(tests))
        check_int("redis-benchmark", "requests", o["requests"], 1, 1_000_000)
        check_int("redis-benchmark", "clients", o["clients"], 1, 1000)
        self._bench_adapter(o["requests"], port=6379).command()

    def _bench_adapter(self, requests: int, port: int | None = None) -> RedisBenchmarkAdapter:
        o = self.options
        where: dict[str, Any] = {"port": port} if port is not None else {"socket": str(self.socket)}
        return make_adapter(
            "redis-benchmark", RedisBenchmarkAdapter, **where,
            requests=requests, clients=o["clients"], tests=tuple(o["tests"]),
        )

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        private = self._server_dir()
        private.open_to()
        self.socket = private.home / "redis.sock"
        argv = self._bench_adapter(1).server_command()
        argv[0] = which_or_error(self.kind, argv[0])
        argv += ["--dir", str(private.home), "--logfile", "", "--protected-mode", "yes"]
        self._spawn_tuned(argv, preexec_fn, private=private)
        self._wait(self._serving, "redis-server")

    def _serving(self) -> bool:
        """The server holds its unix socket (read from /proc: novatune never connects through the account's
        directory as root)."""
        sock = str(self.socket)
        return any(c.laddr == sock for p in self.pids() for c in psutil.Process(p).net_connections(kind="unix"))

    def _run_client(self, requests: int) -> AdapterResult:
        """One redis-benchmark run, as the server's account (it owns the socket's directory)."""
        return self._run(self._bench_adapter(requests), run_as=self._private.account if self._private else None)

    def stop(self) -> None:
        super().stop()
        self.socket = None

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        requests = self.options["requests"]
        if warmup_s > 0:
            self._run_client(min(requests, max(100, requests // 10)))
        note = (
            f"redis-benchmark is count-driven: {requests} requests per test bound the window; "
            f"measure_s={measure_s:g} is not used"
        )
        notes = [note]
        return self._run_client(requests), None, notes

    def _operations(self, result: AdapterResult) -> float:
        return float(self.options["requests"] * len(self.options["tests"]))

    def _metrics(self, result: AdapterResult) -> dict[str, float]:
        out = super()._metrics(result)
        out["requests"] = self._operations(result)
        return out
