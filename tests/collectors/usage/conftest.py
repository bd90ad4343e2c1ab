"""A real v1 cgroup of the test's own (cpu, cpuacct, memory; a unique name, removed afterwards) and bounded child
processes placed in it (always killed and reaped); a real Prometheus server on 127.0.0.1 that scrapes itself
(Debian's prometheus package, unpacked: PROMETHEUS=/path/to/prometheus, else PATH; outside CI a missing binary
skips, under CI it fails)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.usage.errors import PrometheusError, UsageError
from collectors.usage.promimport import query_range

CG = Path("/sys/fs/cgroup")
CPU_Q = "rate(process_cpu_seconds_total[5s])"
MEM_Q = "process_resident_memory_bytes"
CONTROLLERS = ("cpu", "cpuacct", "memory")

BUSY = """
import sys, time
frac, secs = float(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + secs
while time.monotonic() < end:
    t = time.monotonic()
    while time.monotonic() - t < 0.02 * frac:
        pass
    time.sleep(0.02 * (1 - frac))
"""
ALLOC = """
import sys, time
mib, secs = int(sys.argv[1]), float(sys.argv[2])
blocks = []
for _ in range(mib):
    b = bytearray(1 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    blocks.append(b)
print("ready", flush=True)
time.sleep(secs)
"""


class LiveCgroup:
    """``/sys/fs/cgroup/{cpu,cpuacct,memory}/<name>`` and the processes the test started in it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rel = f"/{name}"
        self.procs: list[subprocess.Popen[str]] = []

    def dir(self, controller: str) -> Path:
        return CG / controller / self.name

    def write(self, controller: str, leaf: str, value: str) -> None:
        (self.dir(controller) / leaf).write_text(value)

    def spawn(self, code: str, *args: object, wait_ready: bool = False, sub: str = "") -> subprocess.Popen[str]:
        """A python child running ``code`` moved into this cgroup (or its child cgroup ``sub``) before it starts
        (it waits on stdin)."""
        gate = "import sys; sys.stdin.readline()\n"
        p = subprocess.Popen([sys.executable, "-c", gate + code, *map(str, args)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        for c in CONTROLLERS:
            (self.dir(c) / sub / "cgroup.procs").write_text(str(p.pid))
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
        if wait_ready:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p

    def mkdir(self, sub: str = "") -> None:
        """Create the cgroup (or its child cgroup ``sub``) in every controller's hierarchy."""
        for c in CONTROLLERS:
            (self.dir(c) / sub).mkdir()

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        dirs = [Path(root) for c in CONTROLLERS if self.dir(c).is_dir()
                for root, _, _ in os.walk(self.dir(c), topdown=False)]  # children first
        for d in dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def _v1_available() -> bool:
    return os.geteuid() == 0 and all((CG / c / "cgroup.procs").is_file() for c in CONTROLLERS)


def make_live_cgroup() -> Iterator[LiveCgroup]:
    """A new cgroup (skips without root and v1 hierarchies), removed with its processes afterwards."""
    if not _v1_available():
        pytest.skip("needs root and cgroup v1 cpu, cpuacct and memory hierarchies")
    cg = LiveCgroup(f"nt-rs-c-{uuid.uuid4().hex[:12]}")
    try:
        cg.mkdir()
        yield cg
    finally:
        cg.cleanup()


@pytest.fixture
def live_cgroup() -> Iterator[LiveCgroup]:
    yield from make_live_cgroup()


def _binary() -> str | None:
    env = os.environ.get("PROMETHEUS")
    return env if env and os.access(env, os.X_OK) else shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_prometheus(d: Path) -> Iterator[str]:
    """A Prometheus server on 127.0.0.1 scraping itself every second, storing in ``d``; its base URL once it has
    samples; killed afterwards. Skips when the binary is missing, fails under CI."""
    binary = _binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("PROMETHEUS is not set and prometheus is not on PATH: .ci/run unpacks Debian's package")
        pytest.skip("prometheus not installed (Debian package 'prometheus' unpacked; or set PROMETHEUS)")
    port = free_port()
    (d / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: self\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    log = open(d / "log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=d)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (d / "log").read_text()[-2000:]
            try:
                now = time.time()
                t, _ = query_range(url, CPU_Q, start=now - 30, end=now, step=1)
                if len(t) >= 6:
                    break
            except (PrometheusError, UsageError):
                pass
            assert time.monotonic() < deadline, "prometheus gave no samples in 60 s: " + (d / "log").read_text()[-2000:]
            time.sleep(0.5)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
