"""redis-benchmark: a bounded request count against 127.0.0.1 with ``--csv`` output."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from collectors.workloads.adapters._base import AdapterError, AdapterResult, check_count, to_float

__all__ = ["TESTS", "RedisBenchmarkAdapter", "parse_redis_benchmark"]

TOOL = "redis-benchmark"
TESTS = ("ping_inline", "ping_mbulk", "set", "get", "incr", "lpush", "rpush", "lpop", "rpop",
          "sadd", "hset", "spop", "zadd", "zpopmin", "lrange", "mset")
_LAT = {"latency_p50_ms": "p50_latency_ms", "latency_p95_ms": "p95_latency_ms", "latency_p99_ms": "p99_latency_ms",
        "latency_avg_ms": "avg_latency_ms"}


@dataclass(frozen=True, kw_only=True)
class RedisBenchmarkAdapter:
    """``redis-benchmark -h host -p port -n requests -c clients -t tests --csv``.

    The count ``requests`` (per test) bounds the run.
    """

    port: int
    host: str = "127.0.0.1"
    requests: int = 5000
    clients: int = 10
    tests: tuple[str, ...] = ("set", "get")
    tool: str = TOOL

    def max_runtime_s(self) -> float:
        return 60.0

    def command(self) -> list[str]:
        """Raises: AdapterError: an option out of range or an unknown test."""
        check_count(TOOL, "port", self.port, high=65535)
        check_count(TOOL, "requests", self.requests, high=1_000_000)
        check_count(TOOL, "clients", self.clients, high=1000)
        bad = [t for t in self.tests if t not in TESTS]
        if not self.tests or bad:
            raise AdapterError(TOOL, f"tests must be a non-empty subset of {list(TESTS)}, got {list(self.tests)}")
        return [
            "redis-benchmark", "-h", self.host, "-p", str(self.port), "-n", str(self.requests),
            "-c", str(self.clients), "-t", ",".join(self.tests), "--csv",
        ]

    def server_command(self) -> list[str]:
        """A throwaway redis-server on ``host:port``: no persistence. Raises: AdapterError: bad port."""
        check_count(TOOL, "port", self.port, high=65535)
        return ["redis-server", "--bind", self.host, "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--daemonize", "no"]

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
    return AdapterResult(tool=TOOL, throughput=throughput, throughput_unit="ops/s", raw={"tests": tests}, **lat)
