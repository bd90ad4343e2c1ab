"""Fixtures of the actuators tests: a fake /proc + /sys tree shaped like the real files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actuators import Journal, SysRoot

#: relative path -> content, copied from the format of the real files
FAKE_FILES: dict[str, str] = {
    "proc/sys/vm/swappiness": "60\n",
    "proc/sys/vm/dirty_ratio": "20\n",
    "proc/sys/vm/dirty_background_ratio": "10\n",
    "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never\n",
    "sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never\n",
    "sys/devices/virtual/block/loop0/queue/scheduler": "[none] mq-deadline kyber bfq \n",
    "sys/devices/virtual/block/loop0/queue/read_ahead_kb": "128\n",
    "sys/devices/pci0000:00/virtio1/block/vda/queue/scheduler": "none [mq-deadline] kyber bfq \n",
    "sys/devices/pci0000:00/virtio1/block/vda/queue/read_ahead_kb": "8192\n",
    "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
    "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
    "sys/fs/cgroup/cpu/cgroup.procs": "1\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",  # a file no knob may reach
}

#: /sys/block entries are symlinks into /sys/devices, as on a real machine
FAKE_LINKS: dict[str, str] = {
    "sys/block/loop0": "../devices/virtual/block/loop0",
    "sys/block/vda": "../devices/pci0000:00/virtio1/block/vda",
}

#: what the fake "kernel" puts in a new cgroup v1 cpu directory
CGROUP_V1_FILES: dict[str, str] = {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n", "cgroup.procs": ""}


def build_fake_tree(base: Path) -> Path:
    """Create the fake tree under ``base`` and return it."""
    for rel, content in FAKE_FILES.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode())
    for rel, target in FAKE_LINKS.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, base / rel)
    return base


def fake_cgroup_files(path: Path) -> None:
    """Play the kernel: populate a freshly made v1 cpu cgroup directory."""
    for name, content in CGROUP_V1_FILES.items():
        (path / name).write_text(content)


def tree_bytes(base: Path) -> dict[str, bytes | str]:
    """Every file's bytes (and every dir/link) under ``base``: equal means byte-identical trees."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for d in dirnames:
            p = Path(dirpath, d)
            out[str(p.relative_to(base))] = "link:" + os.readlink(p) if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath, f)
            out[str(p.relative_to(base))] = p.read_bytes()
    return out


@pytest.fixture
def fake_root(tmp_path: Path) -> SysRoot:
    """A SysRoot on a fresh fake tree."""
    return SysRoot(build_fake_tree(tmp_path / "root"))


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "state" / "journal.jsonl")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process (our own, so changing it is safe), killed at the end."""
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


PYTHON = sys.executable
REPO = str(Path(__file__).resolve().parents[2])
