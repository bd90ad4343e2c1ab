"""OltpWorkload against the real loopback server, and the load-generator output parser."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from collectors.errors import WorkloadError
from collectors.workloads.oltp import OltpWorkload, WorkloadResult, parse_loadgen_output

DATA = Path(__file__).parent / "data"


def _gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def workload(tmp_path: Path):
    wl = OltpWorkload(tmp_path / "oltp", workers=2, clients=4, rows=2_000)
    yield wl
    wl.stop()


def test_measure_real_server_and_stop_leaves_nothing(workload: OltpWorkload) -> None:
    pids = workload.start()
    assert len(pids) == 3  # parent + 2 workers
    assert workload.pids() == pids
    res = workload.measure(warmup_s=1, measure_s=2)
    assert isinstance(res, WorkloadResult)
    assert res.requests > 0 and res.errors == 0
    assert 0 < res.latency_p50_ms <= res.latency_p95_ms <= res.latency_p99_ms
    assert res.duration_s == pytest.approx(2.0, abs=0.05)
    assert res.throughput_rps == pytest.approx(res.requests / res.duration_s, rel=1e-3)
    tl = res.timeline
    assert list(tl.columns) == ["rps", "p95_ms", "errors", "phase"]
    assert list(tl["phase"]) == ["warmup", "measure", "measure"]
    assert (tl["rps"] > 0).all()
    workload.stop()
    assert workload.pids() == []
    assert _gone(pids)
    workload.stop()  # idempotent


def test_preexec_runs_in_server_before_workers(tmp_path: Path) -> None:
    marker = tmp_path / "preexec.pid"

    def hook() -> None:
        marker.write_text(str(os.getpid()))

    wl = OltpWorkload(tmp_path / "oltp", workers=2, clients=2, rows=500)
    try:
        pids = wl.start(preexec_fn=hook)
        assert int(marker.read_text()) == pids[0]
        with pytest.raises(WorkloadError, match="already started"):
            wl.start()
    finally:
        wl.stop()
    assert _gone(pids)


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with OltpWorkload(tmp_path / "oltp", workers=1, clients=1, rows=200) as wl:
        pids = wl.pids()
        assert len(pids) == 2
    assert _gone(pids)


def test_server_vanishing_mid_window_is_an_error_not_a_hang(workload: OltpWorkload) -> None:
    pids = workload.start()

    def kill_later() -> None:
        time.sleep(0.7)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    killer = threading.Thread(target=kill_later)
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(WorkloadError, match="exited during the measurement"):
        workload.measure(warmup_s=0.2, measure_s=1.5)
    killer.join()
    assert time.monotonic() - t0 < 10
    with pytest.raises(WorkloadError, match="not running"):
        workload.measure(warmup_s=0, measure_s=0.5)


def test_measure_before_start_and_bad_windows(tmp_path: Path) -> None:
    wl = OltpWorkload(tmp_path, rows=100)
    with pytest.raises(WorkloadError, match="not started"):
        wl.measure(warmup_s=0, measure_s=1)
    with pytest.raises(ValueError):
        wl.measure(warmup_s=-1, measure_s=1)
    with pytest.raises(ValueError):
        OltpWorkload(tmp_path, workers=0)


def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    wl = OltpWorkload(tmp_path / "a", workers=1, clients=1, rows=100)
    wl.start()
    try:
        other = OltpWorkload(tmp_path / "b", workers=1, clients=1, rows=100, port=wl.port or 0)
        with pytest.raises(WorkloadError, match="in use"):
            other.start()
        assert other.pids() == []
    finally:
        wl.stop()


# ---------------------------------------------------------------------------- parser


def test_parser_on_recorded_output() -> None:
    text = (DATA / "loadgen-sample.json").read_text()
    res = parse_loadgen_output(text)
    raw = json.loads(text)
    assert res.requests == raw["requests"] and res.errors == 0
    assert res.throughput_rps == pytest.approx(raw["throughput_rps"])
    assert res.latency_p50_ms <= res.latency_p95_ms <= res.latency_p99_ms
    assert len(res.timeline) == len(raw["timeline"])
    assert (res.timeline["phase"] == "warmup").sum() == 1
    assert res.metrics()["latency_p95_ms"] == pytest.approx(raw["latency_p95_ms"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "printed nothing"),
        ("Traceback (most recent call last):", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"requests": 1}', "lacks field 'errors'"),
        ('{"requests": "x", "errors": 0}', "'requests' must be int"),
        ('{"requests": -1, "errors": 0}', "negative"),
    ],
)
def test_parser_rejects_malformed_output(text: str, match: str) -> None:
    with pytest.raises(WorkloadError, match=match):
        parse_loadgen_output(text)


def test_parser_checks_percentiles_and_timeline() -> None:
    good = json.loads((DATA / "loadgen-sample.json").read_text())
    bad = dict(good, latency_p50_ms=good["latency_p99_ms"] + 1)
    with pytest.raises(WorkloadError, match="not ordered"):
        parse_loadgen_output(json.dumps(bad))
    bad = dict(good, timeline=[{"t": 0, "rps": 1.0, "p95_ms": 1.0, "phase": "cooldown"}])
    with pytest.raises(WorkloadError, match="phase"):
        parse_loadgen_output(json.dumps(bad))
    no_req = dict(good, requests=0, latency_p50_ms=None, latency_p95_ms=None, latency_p99_ms=None)
    assert math.isnan(parse_loadgen_output(json.dumps(no_req)).latency_p95_ms)
