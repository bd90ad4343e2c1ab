"""Every tool workload for real on 127.0.0.1: start, measure, stop, nothing left behind.

Loads are bounded (a 0.5 s warm-up and a 1.5 s window, rounded up by the
tools that take whole seconds; redis-benchmark by its request count). Skips
only when a binary is missing, naming the Debian package. Nothing here touches
a kernel setting.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from collectors.errors import WorkloadError
from collectors.workloads.adapters import DEBIAN_PACKAGES
from collectors.workloads.base import Measurement, Workload
from collectors.workloads.tools import (
    TOOL_WORKLOADS,
    PgbenchWorkload,
    RedisBenchmarkWorkload,
    WrkWorkload,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {
    "fio": {"size": "16M"},
    "pgbench": {"clients": 2, "scale": 1},
    "redis-benchmark": {"requests": 3000},
    "wrk": {},
    "iperf3": {},
    "stress-ng": {"stressor": "cpu"},
}
UNITS = {"fio": "ops/s", "pgbench": "tx/s", "redis-benchmark": "ops/s", "wrk": "req/s", "iperf3": "bit/s",
         "stress-ng": "bogo-ops/s"}
BINARIES = {
    "fio": ("fio",), "pgbench": ("pgbench",), "redis-benchmark": ("redis-server", "redis-benchmark"),
    "wrk": ("wrk",), "iperf3": ("iperf3",), "stress-ng": ("stress-ng",),
}
HOLDER_TOOLS = ("fio", "stress-ng")
# what a tool could leave outside its workdir if it were misconfigured
_LEFTOVER = re.compile(r"^(iperf3\.|fio|stress-ng|dump\.rdb|appendonly|\.s\.PGSQL|index\.html)")
_OUTSIDE_DIRS = (Path(tempfile.gettempdir()), Path("/dev/shm"), Path("/var/run/postgresql"), REPO)


def need(tool: str) -> None:
    for b in BINARIES[tool]:
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed (Debian package: {DEBIAN_PACKAGES.get(b, '?')})")
    if tool == "pgbench":
        if PgbenchWorkload.pg_bindir() is None:
            pytest.skip("initdb not installed (Debian package: postgresql)")
        if os.geteuid() != 0:
            pytest.skip("starts PostgreSQL as user postgres: needs root")


def outside_files() -> set[str]:
    found = set()
    for d in _OUTSIDE_DIRS:
        try:
            found |= {str(d / n) for n in os.listdir(d) if _LEFTOVER.match(n)}
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def all_gone(pids: list[int], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def my_children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if alive(c.pid)]


@pytest.fixture
def workdir() -> Iterator[Path]:
    # not pytest's tmp_path: user postgres must be able to reach the workdir (its parents are 0700)
    base = Path(tempfile.mkdtemp(prefix="novatune-tw-"))
    os.chmod(base, 0o755)
    try:
        yield base / "w"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def marker_pids(marker: Path) -> list[int]:
    return [int(x) for x in marker.read_text().split()] if marker.exists() else []


def sane(tool: str, m: Measurement, names: tuple[str, ...]) -> None:
    assert set(m.metrics) == set(names)
    assert m.units["throughput"] == UNITS[tool]
    assert m.metrics["throughput"] > 0 and math.isfinite(m.metrics["throughput"])
    pct = [m.metrics[k] for k in ("latency_p50_ms", "latency_p75_ms", "latency_p90_ms", "latency_p95_ms",
                                   "latency_p99_ms") if k in m.metrics]
    assert all(v > 0 for v in pct) and pct == sorted(pct), pct
    assert m.metrics["errors"] == 0
    if "error_rate" in m.metrics:
        assert m.metrics["error_rate"] == 0
    if "latency_avg_ms" in m.metrics:
        assert m.metrics["latency_avg_ms"] > 0


@pytest.mark.parametrize("tool", sorted(TOOL_WORKLOADS))
def test_tool_workload_round_trip(tool: str, workdir: Path, tmp_path: Path) -> None:
    need(tool)
    before = outside_files()
    marker = tmp_path / "preexec.pids"

    def preexec() -> None:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")

    wl = TOOL_WORKLOADS[tool](workdir, **OPTIONS[tool])
    assert isinstance(wl, Workload)
    try:
        pids = wl.start(preexec_fn=preexec)
        assert pids and alive(pids[0])  # the server (its children may include a backend that just exited)
        assert wl.pids()[0] == pids[0]
        assert marker_pids(marker) == [pids[0]]  # the caller's preexec ran in the tuned process
        with pytest.raises(WorkloadError, match="already started"):
            wl.start()
        t0 = time.monotonic()
        m = wl.measure(warmup_s=0.5, measure_s=1.5)
        assert time.monotonic() - t0 < 60
        sane(tool, m, wl.metric_names())
        ran = marker_pids(marker)
        if tool in HOLDER_TOOLS:
            # the tool runs went through the caller's preexec too, in processes other than the holder
            assert len(ran) >= 2 and pids[0] not in ran[1:], ran
        else:
            assert ran == [pids[0]]  # the client ran outside
        if tool in ("pgbench", "iperf3"):
            assert m.timeline is not None and len(m.timeline) >= 1 and m.timeline.index.name == "t_s"
        else:
            assert m.timeline is None
        assert wl.pids()[0] == pids[0] and alive(pids[0])
        every = wl.pids()
    finally:
        wl.stop()
    assert wl.pids() == []
    assert all_gone(every), [p for p in every if alive(p)]
    wl.stop()  # idempotent
    assert my_children() == []
    assert outside_files() - before == set()


@pytest.mark.parametrize("tool", HOLDER_TOOLS)
def test_tool_runs_inherit_holder_affinity_and_nice(tool: str, workdir: Path) -> None:
    need(tool)
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs to tell an inherited affinity apart")
    wl = TOOL_WORKLOADS[tool](workdir, **OPTIONS[tool])
    seen: list[tuple[str, list[int], int]] = []
    try:
        holder = wl.start()[0]
        os.sched_setaffinity(holder, {0})  # what affinity.cpus / sched.nice do to the tuned pid
        os.setpriority(os.PRIO_PROCESS, holder, 5)
        result: dict[str, object] = {}

        def run() -> None:
            try:
                result["m"] = wl.measure(warmup_s=0, measure_s=2)
            except BaseException as err:  # noqa: BLE001 - reported by the main thread
                result["err"] = err

        th = threading.Thread(target=run)
        th.start()
        while th.is_alive():
            for c in my_children():
                try:
                    if c.pid != holder and c.name().startswith(tool):
                        seen.append((c.name(), c.cpu_affinity(), c.nice()))
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.05)
        th.join()
        assert "err" not in result, result.get("err")
    finally:
        wl.stop()
    assert seen, f"never saw a {tool} process"
    assert all(aff == [0] and nice == 5 for _, aff, nice in seen), seen
    assert my_children() == []


def test_caller_preexec_runs_once_in_the_holder_and_once_per_tool_run(workdir: Path, tmp_path: Path) -> None:
    """The caller's preexec (cgroup placement) runs in each tool run, before the holder's affinity is copied."""
    need("stress-ng")
    record = tmp_path / "affinity"
    wl = TOOL_WORKLOADS["stress-ng"](workdir)

    def preexec() -> None:
        with open(record, "a") as f:
            f.write(f"{os.getpid()} {sorted(os.sched_getaffinity(0))}\n")

    try:
        holder = wl.start(preexec_fn=preexec)[0]
        os.sched_setaffinity(holder, {1})
        wl.measure(warmup_s=0, measure_s=1)
        lines = record.read_text().splitlines()
        assert len(lines) == 2 and lines[0].startswith(f"{holder} ")
        tool_pid = int(lines[1].split()[0])
        assert tool_pid != holder
    finally:
        wl.stop()


def test_server_death_is_reported_with_log_tail(workdir: Path) -> None:
    need("redis-benchmark")
    wl = RedisBenchmarkWorkload(workdir, requests=500)
    try:
        pid = wl.start()[0]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while wl.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(WorkloadError, match=r"server exited .*log tail"):
            wl.measure(warmup_s=0, measure_s=1)
    finally:
        wl.stop()
    assert my_children() == []


def test_wrk_with_url_starts_nothing(workdir: Path) -> None:
    need("wrk")
    server = WrkWorkload(workdir / "server")
    try:
        server.start()
        assert server.url is not None
        client = WrkWorkload(workdir / "client", url=server.url)
        try:
            assert client.start() == [] and client.pids() == []
            m = client.measure(warmup_s=0, measure_s=1)
            assert m.metrics["throughput"] > 0 and m.metrics["requests"] > 0
        finally:
            client.stop()
        assert server.pids(), "stopping the URL client must not touch the server"
    finally:
        server.stop()
    assert my_children() == []


@pytest.mark.parametrize("tool", ["stress-ng", "redis-benchmark"])
def test_failing_preexec_is_a_workload_error_and_leaves_nothing(tool: str, workdir: Path) -> None:
    need(tool)

    def boom() -> None:
        raise OSError("cannot join the cgroup")

    wl = TOOL_WORKLOADS[tool](workdir)
    with pytest.raises(WorkloadError, match="preexec_fn"):
        wl.start(preexec_fn=boom)
    assert wl.pids() == []
    wl.stop()
    assert my_children() == []


def test_pgbench_runs_from_a_workdir_postgres_cannot_enter_and_removes_its_cluster(tmp_path: Path) -> None:
    """The default data directory of root is under /root (0700): the cluster must live elsewhere."""
    need("pgbench")
    if os.geteuid() != 0:
        pytest.skip("starts PostgreSQL as user postgres: needs root")
    wl = PgbenchWorkload(tmp_path / "w")  # pytest's tmp_path: parents are 0700 root
    try:
        wl.start()
        cluster = wl.cluster_dir
        assert cluster is not None and cluster.is_dir() and not cluster.is_relative_to(tmp_path)
        assert cluster.stat().st_mode & 0o777 == 0o700
        m = wl.measure(warmup_s=0, measure_s=1)
        assert m.metrics["throughput"] > 0
    finally:
        wl.stop()
    assert not cluster.exists() and wl.pids() == [] and my_children() == []
