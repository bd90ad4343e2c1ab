"""Closed-loop load generator for the OLTP service (runs as its own process).

Run as ``python -m collectors.workloads.loadgen --port P [--clients 8]
[--warmup-s 1] [--measure-s 5]``. Standard library only.

``clients`` connections each send one request, wait for its response (or the
per-request timeout), then send the next: a closed loop. The run is bounded in
time (``warmup_s + measure_s``, plus at most one request timeout for requests
in flight) AND in count (``--max-requests``). A failed or timed-out request is
counted as an error and its connection is reopened (after a short back-off, so
a dead server does not become a busy loop).

Output: ONE JSON object on stdout (see :func:`summarise`). Totals cover the
measurement window only (requests completing in ``[warmup_s, warmup_s +
measure_s)``); the per-second ``timeline`` covers the whole run, each second
marked ``"warmup"`` or ``"measure"``. Latency percentiles are over successful
requests; ``requests`` counts successful requests, ``errors`` failed ones
(``timeouts`` is the subset that timed out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field

from collectors.workloads._proc import set_parent_death_signal

__all__ = ["LoadSpec", "run", "summarise", "percentile", "main", "OUTPUT_VERSION"]

OUTPUT_VERSION = 1
_RECONNECT_BACKOFF_S = 0.05
# op mix: 70 % point reads, 20 % read-modify-write, 10 % inserts
_OPS = (b"R", b"W", b"I")
_WEIGHTS = (70, 20, 10)


@dataclass(frozen=True)
class LoadSpec:
    """What to run. All bounds are hard bounds."""

    host: str = "127.0.0.1"
    port: int = 0
    clients: int = 8
    warmup_s: float = 1.0
    measure_s: float = 5.0
    timeout_s: float = 2.0
    max_requests: int = 1_000_000
    seed: int = 1


@dataclass
class _Records:
    """Raw per-request records: completion time and latency (ns, perf_counter based)."""

    ok_end_ns: list[int] = field(default_factory=list)
    ok_latency_ns: list[int] = field(default_factory=list)
    err_end_ns: list[int] = field(default_factory=list)
    err_timeout: list[bool] = field(default_factory=list)
    sent: int = 0
    last_error: str = ""


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values; NaN if empty."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


async def _client(idx: int, spec: LoadSpec, t0: int, deadline: int, rec: _Records) -> None:
    rng = random.Random(spec.seed * 1_000_003 + idx)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    timeout_ns = int(spec.timeout_s * 1e9)

    async def drop() -> None:
        nonlocal reader, writer
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 0.1)
            except (TimeoutError, OSError):
                pass
        reader = writer = None

    try:
        while time.perf_counter_ns() < deadline and rec.sent < spec.max_requests:
            rec.sent += 1
            start = time.perf_counter_ns()
            budget_s = max(0.001, min(timeout_ns, deadline + timeout_ns - start) / 1e9)
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(spec.host, spec.port), budget_s)
                op = rng.choices(_OPS, _WEIGHTS)[0]
                # opened just above when None (drop() rebinds them through nonlocal: mypy cannot narrow)
                assert reader is not None and writer is not None
                writer.write(b"%s %d\n" % (op, rng.randrange(1 << 30)))
                remaining = budget_s - (time.perf_counter_ns() - start) / 1e9
                line = await asyncio.wait_for(reader.readline(), max(0.001, remaining))
                if not line.startswith(b"OK"):
                    raise ConnectionError(line.decode(errors="replace").strip() or "connection closed by server")
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError) as err:
                end = time.perf_counter_ns()
                rec.err_end_ns.append(end - t0)
                rec.err_timeout.append(isinstance(err, asyncio.TimeoutError))
                rec.last_error = f"{type(err).__name__}: {err}"
                await drop()
                await asyncio.sleep(min(_RECONNECT_BACKOFF_S, max(0.0, (deadline - end) / 1e9)))
                continue
            end = time.perf_counter_ns()
            rec.ok_end_ns.append(end - t0)
            rec.ok_latency_ns.append(end - start)
    finally:
        await drop()


async def _run(spec: LoadSpec) -> tuple[_Records, int]:
    rec = _Records()
    t0 = time.perf_counter_ns()
    deadline = t0 + int((spec.warmup_s + spec.measure_s) * 1e9)
    tasks = [asyncio.create_task(_client(i, spec, t0, deadline, rec)) for i in range(spec.clients)]
    await asyncio.gather(*tasks)
    return rec, time.perf_counter_ns() - t0


def run(spec: LoadSpec) -> dict:
    """Drive the service as ``spec`` says and return the summary (see :func:`summarise`)."""
    rec, elapsed_ns = asyncio.run(_run(spec))
    return summarise(rec, spec, elapsed_ns=elapsed_ns)


def _finite_or_none(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def summarise(rec: _Records, spec: LoadSpec, *, elapsed_ns: int) -> dict:
    """Reduce raw records to the output object.

    Keys: ``version``, ``requests``, ``errors``, ``timeouts``, ``duration_s``,
    ``throughput_rps``, ``latency_p50_ms``, ``latency_p95_ms``,
    ``latency_p99_ms`` (null when there was no successful request),
    ``clients``, ``warmup_s``, ``measure_s``, ``capped`` (the request cap was
    hit), ``last_error``, ``timeline`` (list of ``{t, rps, p95_ms, errors,
    phase}``, one per started second of the run).
    """
    w0 = int(spec.warmup_s * 1e9)
    # the window ends at the deadline, or earlier if the count cap stopped the run
    w1 = min(int((spec.warmup_s + spec.measure_s) * 1e9), elapsed_ns)
    lat_ms = sorted(
        lat / 1e6 for end, lat in zip(rec.ok_end_ns, rec.ok_latency_ns, strict=True) if w0 <= end < w1
    )
    err_in = [to for end, to in zip(rec.err_end_ns, rec.err_timeout, strict=True) if w0 <= end < w1]
    duration_s = max(0.0, (w1 - w0) / 1e9)

    n_seconds = max(1, math.ceil((spec.warmup_s + spec.measure_s) - 1e-9))
    per_sec_lat: list[list[float]] = [[] for _ in range(n_seconds)]
    per_sec_err = [0] * n_seconds
    for end, lat in zip(rec.ok_end_ns, rec.ok_latency_ns, strict=True):
        b = int(end // 1_000_000_000)
        if b < n_seconds:
            per_sec_lat[b].append(lat / 1e6)
    for end in rec.err_end_ns:
        b = int(end // 1_000_000_000)
        if b < n_seconds:
            per_sec_err[b] += 1
    timeline = []
    for b in range(n_seconds):
        span = min(1.0, spec.warmup_s + spec.measure_s - b)
        lats = sorted(per_sec_lat[b])
        timeline.append(
            {
                "t": b,
                "rps": round(len(lats) / span, 3) if span > 0 else 0.0,
                "p95_ms": _finite_or_none(percentile(lats, 95)),
                "errors": per_sec_err[b],
                "phase": "warmup" if b < spec.warmup_s else "measure",
            }
        )
    return {
        "version": OUTPUT_VERSION,
        "requests": len(lat_ms),
        "errors": len(err_in),
        "timeouts": sum(err_in),
        "duration_s": round(duration_s, 6),
        "throughput_rps": round(len(lat_ms) / duration_s, 4) if duration_s > 0 else 0.0,
        "latency_p50_ms": _finite_or_none(percentile(lat_ms, 50)),
        "latency_p95_ms": _finite_or_none(percentile(lat_ms, 95)),
        "latency_p99_ms": _finite_or_none(percentile(lat_ms, 99)),
        "clients": spec.clients,
        "warmup_s": spec.warmup_s,
        "measure_s": spec.measure_s,
        "capped": rec.sent >= spec.max_requests,
        "last_error": rec.last_error,
        "timeline": timeline,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, run, print the JSON summary; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m collectors.workloads.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--measure-s", type=float, default=5.0)
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--parent-pid", type=int, default=None, help="die at once if this is no longer our parent")
    a = p.parse_args(argv)
    if a.clients < 1 or a.max_requests < 1 or a.warmup_s < 0 or a.measure_s <= 0 or a.timeout_s <= 0:
        p.error("need clients >= 1, max-requests >= 1, warmup-s >= 0, measure-s > 0, timeout-s > 0")
    if not 1 <= a.port <= 65535:
        p.error("port must be in 1..65535")
    set_parent_death_signal(expected_parent=a.parent_pid)
    spec = LoadSpec(
        host=a.host,
        port=a.port,
        clients=a.clients,
        warmup_s=a.warmup_s,
        measure_s=a.measure_s,
        timeout_s=a.timeout_s,
        max_requests=a.max_requests,
        seed=a.seed,
    )
    print(json.dumps(run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
