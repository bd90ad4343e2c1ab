"""The load generator on its own: bounded against a dead port, percentile maths."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from collectors.workloads.loadgen import LoadSpec, percentile, run


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_no_server_counts_errors_and_stays_bounded() -> None:
    t0 = time.monotonic()
    out = run(LoadSpec(port=_dead_port(), clients=3, warmup_s=0.2, measure_s=0.6, timeout_s=0.5))
    assert time.monotonic() - t0 < 3
    assert out["requests"] == 0 and out["errors"] > 0
    assert out["latency_p95_ms"] is None and out["throughput_rps"] == 0
    assert "ConnectionRefused" in out["last_error"]
    assert [e["phase"] for e in out["timeline"]] == ["warmup"]  # one partial second, starting in the warm-up


def test_request_cap_bounds_the_run() -> None:
    out = run(LoadSpec(port=_dead_port(), clients=2, warmup_s=0, measure_s=5, max_requests=5))
    assert out["capped"] is True
    assert out["errors"] <= 5


@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = sorted(float(v) for v in np.random.default_rng(3).exponential(5, 101))
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))
