"""pgbench: a bounded TPC-B-like run against PostgreSQL on 127.0.0.1; tps and latency avg/stddev."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from collectors.workloads.adapters._base import AdapterError, AdapterResult, check_count, check_duration, to_float

__all__ = ["PgbenchAdapter", "parse_pgbench"]

TOOL = "pgbench"
_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding) initial connection", re.M)
_TPS_ANY = re.compile(r"^tps = ([0-9.]+)", re.M)
_AVG = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_STD = re.compile(r"^latency stddev = ([0-9.]+) ms", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_PROGRESS = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps, lat ([0-9.]+) ms stddev ([0-9.]+|NaN)", re.M)


@dataclass(frozen=True, kw_only=True)
class PgbenchAdapter:
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
