"""Run every tool adapter for real against a server this test starts on 127.0.0.1.

Each test bounds the load in time/count, stops the server it started (and
waits for it), and skips only when a binary is missing, naming the Debian
package that provides it. Nothing here touches a kernel setting.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from collectors.workloads.tools.adapter import DEBIAN_PACKAGES, AdapterResult, run_adapter
from collectors.workloads.tools.fio import FioAdapter
from collectors.workloads.tools.iperf3 import Iperf3Adapter
from collectors.workloads.tools.pgbench import PgbenchAdapter
from collectors.workloads.tools.redis_benchmark import RedisBenchmarkAdapter
from collectors.workloads.tools.stress_ng import StressNgAdapter
from collectors.workloads.tools.wrk import WrkAdapter

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LOOPBACK = "127.0.0.1"


def need(*binaries: str) -> None:
    for b in binaries:
        if shutil.which(b) is None and not Path(b).exists():
            name = Path(b).name
            pytest.skip(f"{name} not installed (Debian package: {DEBIAN_PACKAGES.get(name, '?')})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, *, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {LOOPBACK}:{port} after {timeout_s} s")


def wait_listening(port: int, proc: subprocess.Popen, *, timeout_s: float = 15.0) -> None:
    """Wait until ``proc`` listens on ``port`` without connecting (a connect would use up ``iperf3 -s -1``)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        conns = psutil.Process(proc.pid).net_connections(kind="tcp")
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listening on {LOOPBACK}:{port} after {timeout_s} s")


@contextmanager
def server(argv: list[str], *, stop_signal: int = signal.SIGTERM, **kw) -> Iterator[subprocess.Popen]:
    """Start ``argv``; on exit signal it (by pid), wait, and SIGKILL it if it lingers."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        assert proc.returncode is not None


def sane(r: AdapterResult) -> None:
    assert r.throughput > 0 and math.isfinite(r.throughput)
    p = [v for v in (r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms) if not math.isnan(v)]
    assert all(v >= 0 for v in p) and p == sorted(p), p
    assert r.errors == 0


def test_fio_real(tmp_path: Path) -> None:
    need("fio")
    r = run_adapter(FioAdapter(filename=str(tmp_path / "fio.dat"), size="32M", runtime_s=2), timeout_s=60)
    sane(r)
    assert 0 < r.latency_p50_ms <= r.latency_p95_ms <= r.latency_p99_ms


def test_stress_ng_real(tmp_path: Path) -> None:
    need("stress-ng")
    r = run_adapter(StressNgAdapter(yaml_path=str(tmp_path / "m.yaml"), timeout_s=2), timeout_s=30)
    sane(r)
    assert r.extra["bogo_ops"] > 0


def test_redis_benchmark_real(tmp_path: Path) -> None:
    need("redis-server", "redis-benchmark")
    port = free_port()
    ad = RedisBenchmarkAdapter(port=port, requests=5000)
    with server(ad.server_command(), cwd=tmp_path) as srv:
        wait_port(port, srv)
        r = run_adapter(ad, timeout_s=60)
    sane(r)
    assert set(r.raw["tests"]) == {"SET", "GET"}
    assert 0 < r.latency_p50_ms <= r.latency_p95_ms <= r.latency_p99_ms
    assert not list(tmp_path.glob("*.rdb")) and not list(tmp_path.glob("appendonly*"))


def test_wrk_real(tmp_path: Path) -> None:
    need("wrk")
    (tmp_path / "index.html").write_text("hello\n")
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", LOOPBACK, "--directory", str(tmp_path)]
    with server(argv) as srv:
        wait_port(port, srv)
        r = run_adapter(WrkAdapter(url=f"http://{LOOPBACK}:{port}/index.html", duration_s=2), timeout_s=30)
    sane(r)
    assert 0 < r.latency_p50_ms <= r.extra["latency_p90_ms"] <= r.latency_p99_ms


def test_iperf3_real() -> None:
    need("iperf3")
    port = free_port()
    ad = Iperf3Adapter(port=port, duration_s=2)
    with server(ad.server_command()) as srv:
        wait_listening(port, srv)
        r = run_adapter(ad, timeout_s=30)
        srv.wait(timeout=10)  # -1: the server exits after one test
    sane(r)
    assert "retransmits" in r.extra and r.extra["bytes"] > 0


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def test_pgbench_real() -> None:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("initdb not installed (Debian package: postgresql)")
    need("pgbench", "runuser")
    if os.geteuid() != 0:
        pytest.skip("starts PostgreSQL as user postgres: needs root")
    try:
        import pwd

        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no 'postgres' user (Debian package: postgresql)")
    # pytest's tmp_path is 0700 root; user postgres needs a directory it can reach
    base = Path(tempfile.mkdtemp(prefix="novatune-pg-"))
    try:
        os.chmod(base, 0o700)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        _pgbench_in(base, bindir, pw)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _pgbench_in(base: Path, bindir: Path, pw) -> None:
    data = base / "data"
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
         "--no-sync"], check=True, capture_output=True, timeout=120,
    )
    port = free_port()
    argv = [str(bindir / "postgres"), "-D", str(data), "-c", f"listen_addresses={LOOPBACK}", "-p", str(port),
            "-k", str(base), "-c", "fsync=off"]
    # a direct child (not pg_ctl's daemon) so that we can wait for it; SIGINT = fast shutdown
    with server(argv, stop_signal=signal.SIGINT, user=pw.pw_uid, group=pw.pw_gid, cwd=base) as srv:
        wait_port(port, srv)
        for _ in range(50):
            ready = subprocess.run([str(bindir / "pg_isready"), "-h", LOOPBACK, "-p", str(port)],
                                   capture_output=True, timeout=10)
            if ready.returncode == 0:
                break
            time.sleep(0.2)
        ad = PgbenchAdapter(port=port, run_as="postgres", duration_s=3, scale=1)
        subprocess.run(ad.init_command(), check=True, capture_output=True, timeout=120)
        r = run_adapter(ad, timeout_s=60)
    assert srv.returncode == 0
    sane(r)
    assert r.latency_avg_ms > 0 and r.latency_stddev_ms >= 0 and len(r.raw["progress"]) >= 2
