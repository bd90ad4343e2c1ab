"""A real running target for the rightsize tests: a cgroup of our own (cgroup v1 cpu, cpuacct, memory, cpuset)
holding a bounded child process that spins, or holds and grows memory on request. Always removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BASE = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "cpuacct", "memory", "cpuset")
#: the child: spins (``busy``) or idles, for at most 120 s; ``grow N`` on stdin allocates N MiB more
CHILD = """
import select, sys, time
end = time.monotonic() + 120
busy = sys.argv[1] == "busy"
held = []
print("up", flush=True)
while time.monotonic() < end:
    if busy:
        t = time.monotonic()
        while time.monotonic() - t < 0.05:
            pass
    r, _, _ = select.select([sys.stdin], [], [], 0 if busy else 0.1)
    if r:
        line = sys.stdin.readline()
        if not line:
            break
        held.append(bytearray(b"\\x01") * (int(line.split()[1]) << 20))
        print("grown", flush=True)
"""


def need_v1() -> None:
    """Skip unless root on a cgroup v1 host with the cpu, cpuacct, memory and cpuset hierarchies."""
    if os.geteuid() != 0:
        pytest.skip("needs root (writes cgroup files)")
    mounted = all((BASE / c / "cgroup.procs").exists() for c in CONTROLLERS)
    if not mounted or not (BASE / "cpu/cpu.cfs_quota_us").exists():
        pytest.skip("needs the cgroup v1 cpu, cpuacct, memory and cpuset hierarchies")


@dataclass
class RealTarget:
    """``cgroup``: the path inside the hierarchies (``/rs-d-...``); ``dirs``: controller -> directory."""

    cgroup: str
    dirs: dict[str, Path]
    child: subprocess.Popen[str]

    def file(self, controller: str, leaf: str) -> Path:
        return self.dirs[controller] / leaf

    def grow(self, mib: int) -> None:
        """Ask the child to allocate ``mib`` MiB more (it may be OOM-killed doing so)."""
        assert self.child.stdin is not None
        try:
            self.child.stdin.write(f"grow {mib}\n")
            self.child.stdin.flush()
        except BrokenPipeError:
            pass


def _rmdir(d: Path) -> None:
    deadline = time.monotonic() + 5
    while d.exists():
        try:
            d.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def real_target(kind: str = "busy") -> Iterator[RealTarget]:
    """A fresh cgroup ``/rs-d-<hex>`` in each v1 hierarchy with a child of ``kind`` (``busy`` | ``idle``) in it."""
    need_v1()
    name = f"/rs-d-{uuid.uuid4().hex[:8]}"
    dirs: dict[str, Path] = {}
    child: subprocess.Popen[str] | None = None
    try:
        for c in CONTROLLERS:
            d = BASE / c / name.lstrip("/")
            d.mkdir()
            dirs[c] = d
        for f in ("cpuset.cpus", "cpuset.mems"):
            (dirs["cpuset"] / f).write_text((BASE / "cpuset" / f).read_text().strip())
        child = subprocess.Popen([sys.executable, "-c", CHILD, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        for d in dirs.values():
            (d / "cgroup.procs").write_text(str(child.pid))
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        yield RealTarget(name, dirs, child)
    finally:
        if child is not None:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()
        for d in reversed(list(dirs.values())):
            _rmdir(d)


def own_memory_cgroup() -> str | None:
    """The memory cgroup this process is in, when it is not a hierarchy's root."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctl, path = line.split(":", 2)
        if "memory" in ctl.split(",") and path != "/":
            return path
    return None
