"""Tool-specific behaviour of the tool workloads, for real on 127.0.0.1.

The contract every workload shares (start, measure, stop, nothing left behind,
a failing preexec) runs over all of them in
``tests/collectors/test_workload_contract.py``; this file keeps what only some
tools do: holder attributes copied into the tool runs, the caller's preexec in
each run, a dead server reported with its log tail, wrk against a given URL,
pgbench's cluster outside an unreachable workdir. Loads are bounded; skips only
when a binary is missing, naming the Debian package. Nothing here touches a
kernel setting.
"""

from __future__ import annotations

import os
import pwd
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
from collectors.workloads.registry import TOOL_WORKLOADS
from collectors.workloads.tools.adapter import DEBIAN_PACKAGES
from collectors.workloads.tools.pgbench import PgbenchWorkload
from collectors.workloads.tools.redis_benchmark import RedisBenchmarkWorkload
from collectors.workloads.tools.wrk import WrkWorkload

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

OPTIONS = {"fio": {"size": "16M"}, "stress-ng": {"stressor": "cpu"}}
BINARIES = {
    "fio": ("fio",), "pgbench": ("pgbench",), "redis-benchmark": ("redis-server", "redis-benchmark"),
    "wrk": ("wrk",), "iperf3": ("iperf3",), "stress-ng": ("stress-ng",),
}
HOLDER_TOOLS = ("fio", "stress-ng")


def need(tool: str) -> None:
    for b in BINARIES[tool]:
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed (Debian package: {DEBIAN_PACKAGES.get(b, '?')})")
    if tool == "pgbench":
        if PgbenchWorkload.pg_bindir() is None:
            pytest.skip("initdb not installed (Debian package: postgresql)")
        if os.geteuid() != 0:
            pytest.skip("starts PostgreSQL as user postgres: needs root")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
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
        st = cluster.stat()  # novatune's, only postgres may pass; the data in home/, postgres's own
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o710)
        home = (cluster / "home").stat()
        assert (home.st_uid, home.st_mode & 0o777) == (pwd.getpwnam("postgres").pw_uid, 0o700)
        m = wl.measure(warmup_s=0, measure_s=1)
        assert m.metrics["throughput"] > 0
    finally:
        wl.stop()
    assert not cluster.exists() and wl.pids() == [] and my_children() == []
