"""wrk: a bounded HTTP load against 127.0.0.1 with ``--latency``; req/s and p50/p99."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from collectors.workloads.adapters._base import (
    AdapterError,
    AdapterResult,
    check_count,
    check_duration,
    duration_ms,
    to_float,
)

__all__ = ["WrkAdapter", "parse_wrk"]

TOOL = "wrk"
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_DIST = re.compile(r"^\s+(50|75|90|99)%\s+([0-9.]+(?:us|ms|s|m|h))\s*$", re.M)
_LAT = re.compile(r"^\s+Latency\s+([0-9.]+(?:us|ms|s|m|h))\s+([0-9.]+(?:us|ms|s|m|h))", re.M)
_TOTAL = re.compile(r"^\s+(\d+) requests in ([0-9.]+(?:us|ms|s|m|h))", re.M)
_SOCK = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True, kw_only=True)
class WrkAdapter:
    """``wrk -t threads -c connections -d duration_s --timeout 2s --latency url``."""

    url: str
    threads: int = 1
    connections: int = 4
    duration_s: float = 2.0
    tool: str = TOOL

    def max_runtime_s(self) -> float:
        return check_duration(TOOL, "duration_s", self.duration_s) + 10.0

    def command(self) -> list[str]:
        """Raises: AdapterError: an option out of range or a non-http URL."""
        t = check_duration(TOOL, "duration_s", self.duration_s)
        check_count(TOOL, "connections", self.connections, high=10_000)
        check_count(TOOL, "threads", self.threads, high=min(self.connections, 256))
        if not self.url.startswith(("http://", "https://")):
            raise AdapterError(TOOL, f"url must be http(s)://..., got {self.url!r}")
        return [
            "wrk", "-t", str(self.threads), "-c", str(self.connections), "-d", f"{max(1, round(t))}s",
            "--timeout", "2s", "--latency", self.url,
        ]

    def parse(self, text: str) -> AdapterResult:
        return parse_wrk(text)


def parse_wrk(text: str) -> AdapterResult:
    """Parse wrk's text report (run with ``--latency``).

    Throughput is ``Requests/sec`` (``req/s``). wrk's distribution has 50, 75,
    90 and 99 %: p50 and p99 are filled, p95 stays NaN (p75/p90 in ``extra``).
    ``errors`` = socket errors (connect+read+write+timeout) + non-2xx/3xx responses.

    Raises:
        AdapterError: no ``Requests/sec`` line, or ``--latency`` distribution missing.
    """
    m = _RPS.search(text)
    if not m:
        raise AdapterError(TOOL, f"no 'Requests/sec:' line in output: {text.strip()[-300:]!r}")
    dist = {int(p): duration_ms(TOOL, v) for p, v in _DIST.findall(text)}
    if 50 not in dist or 99 not in dist:
        raise AdapterError(TOOL, "no 'Latency Distribution' (run wrk with --latency)")
    lat = _LAT.search(text)
    sock = _SOCK.search(text)
    non2xx = _NON2XX.search(text)
    errors = (sum(int(x) for x in sock.groups()) if sock else 0) + (int(non2xx.group(1)) if non2xx else 0)
    total = _TOTAL.search(text)
    extra = {"latency_p75_ms": dist.get(75, math.nan), "latency_p90_ms": dist.get(90, math.nan)}
    if total:
        extra["requests"] = float(total.group(1))
    return AdapterResult(
        tool=TOOL,
        throughput=to_float(TOOL, "Requests/sec", m.group(1)),
        throughput_unit="req/s",
        latency_p50_ms=dist[50],
        latency_p99_ms=dist[99],
        latency_avg_ms=duration_ms(TOOL, lat.group(1)) if lat else math.nan,
        latency_stddev_ms=duration_ms(TOOL, lat.group(2)) if lat else math.nan,
        errors=errors,
        extra=extra,
        raw={"distribution_ms": dist, "text": text},
    )
