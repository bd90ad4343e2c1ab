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
    "proc/sys/vm/dirty_expire_centisecs": "3000\n",
    "proc/sys/vm/dirty_writeback_centisecs": "500\n",
    "proc/sys/vm/vfs_cache_pressure": "100\n",
    "proc/sys/vm/min_free_kbytes": "67584\n",
    "proc/sys/vm/zone_reclaim_mode": "0\n",
    "proc/sys/vm/stat_interval": "1\n",
    "proc/meminfo": "MemTotal:       24684096 kB\nMemFree:        20000000 kB\n",
    "proc/sys/kernel/sched_autogroup_enabled": "1\n",
    "proc/sys/kernel/numa_balancing": "0\n",
    "proc/sys/kernel/timer_migration": "1\n",
    "proc/sys/net/core/somaxconn": "4096\n",
    "proc/sys/net/core/netdev_max_backlog": "1000\n",
    "proc/sys/net/core/rmem_max": "4194304\n",
    "proc/sys/net/core/wmem_max": "4194304\n",
    "proc/sys/net/core/busy_poll": "0\n",
    "proc/sys/net/core/busy_read": "0\n",
    "proc/sys/net/ipv4/tcp_rmem": "4096\t131072\t33554432\n",
    "proc/sys/net/ipv4/tcp_wmem": "4096\t16384\t4194304\n",
    "proc/sys/net/ipv4/tcp_congestion_control": "bbr\n",
    "proc/sys/net/ipv4/tcp_allowed_congestion_control": "reno bbr\n",
    "proc/sys/net/ipv4/tcp_slow_start_after_idle": "1\n",
    "proc/sys/net/ipv4/tcp_notsent_lowat": "4294967295\n",
    "proc/sys/net/ipv4/tcp_autocorking": "1\n",
    "proc/sys/net/ipv4/tcp_fastopen": "1\n",
    "sys/kernel/mm/ksm/run": "0\n",
    "proc/irq/default_smp_affinity": "3\n",
    "proc/irq/24/smp_affinity_list": "0-1\n",
    "proc/irq/24/smp_affinity": "3\n",
    "proc/irq/25/smp_affinity_list": "0-1\n",
    "sys/devices/system/cpu/online": "0-1\n",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "schedutil\n",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors":
        "conservative ondemand userspace powersave performance schedutil \n",
    "sys/devices/system/cpu/cpu0/cpufreq/energy_performance_preference": "balance_performance\n",
    "sys/devices/system/cpu/cpu0/cpufreq/energy_performance_available_preferences":
        "default performance balance_performance balance_power power \n",
    "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "schedutil\n",
    "sys/devices/system/cpu/cpu1/cpufreq/energy_performance_preference": "balance_performance\n",
    "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never\n",
    "sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never\n",
    "sys/devices/virtual/block/loop0/queue/scheduler": "[none] mq-deadline kyber bfq \n",
    "sys/devices/virtual/block/loop0/queue/read_ahead_kb": "128\n",
    "sys/devices/virtual/block/loop0/queue/nr_requests": "128\n",
    "sys/devices/virtual/block/loop0/queue/rq_affinity": "1\n",
    "sys/devices/virtual/block/loop0/queue/nomerges": "0\n",
    "sys/devices/virtual/block/loop0/queue/wbt_lat_usec": "2000\n",
    "sys/devices/pci0000:00/virtio1/block/vda/queue/scheduler": "none [mq-deadline] kyber bfq \n",
    "sys/devices/pci0000:00/virtio1/block/vda/queue/read_ahead_kb": "8192\n",
    "sys/devices/pci0000:00/virtio1/block/vda/queue/nr_requests": "256\n",
    "sys/devices/pci0000:00/virtio1/block/vda/queue/wbt_lat_usec": "75000\n",
    "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
    "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
    "sys/fs/cgroup/cpu/cgroup.procs": "1\n",
    "sys/fs/cgroup/cpu/cpu.shares": "1024\n",
    "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
    "sys/fs/cgroup/memory/cgroup.procs": "1\n",
    "sys/fs/cgroup/cpuset/cpuset.cpus": "0-1\n",
    "sys/fs/cgroup/cpuset/cpuset.mems": "0-1\n",
    "sys/fs/cgroup/cpuset/cgroup.procs": "1\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",  # a file no knob may reach
}

#: /sys/block entries are symlinks into /sys/devices, as on a real machine
FAKE_LINKS: dict[str, str] = {
    "sys/block/loop0": "../devices/virtual/block/loop0",
    "sys/block/vda": "../devices/pci0000:00/virtio1/block/vda",
}

#: what the fake "kernel" puts in a new cgroup v1 cpu directory
CGROUP_V1_FILES: dict[str, str] = {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n", "cgroup.procs": ""}
#: ... and in a new directory of each v1 hierarchy, for :func:`kernel_mkdir`
CGROUP_V1_NEW_DIR: dict[str, dict[str, str]] = {
    "cpu": {**CGROUP_V1_FILES, "cpu.shares": "1024\n"},
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.usage_in_bytes": f"{200 * 1024**2}\n",
        "memory.stat": f"cache 0\ntotal_inactive_file {40 * 1024**2}\n",
        "cgroup.procs": "",
    },
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n", "cgroup.procs": ""},
}


@pytest.fixture
def kernel_mkdir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Play the kernel: a new directory under a fake v1 hierarchy comes with that controller's files."""
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777, **kw):  # type: ignore[no-untyped-def]  # os.mkdir's own signature
        real_mkdir(path, mode, **kw)
        for name, text in CGROUP_V1_NEW_DIR.get(Path(path).parent.name, {}).items():
            (Path(path) / name).write_text(text)

    monkeypatch.setattr(os, "mkdir", mkdir)


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


def fake_target_cgroup(base: Path, cgroup: str, *, procs: str = "") -> None:
    """Play the kernel: a running target's cgroup ``cgroup`` (``/a/b``) in the fake v1 cpu, memory and cpuset
    hierarchies, with ``procs`` in each ``cgroup.procs``."""
    for ctl, files in CGROUP_V1_NEW_DIR.items():
        d = base / "sys/fs/cgroup" / ctl / cgroup.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (d / name).write_text(procs if name == "cgroup.procs" else text)
        if ctl == "cpuset":
            (d / "cpuset.cpus").write_text("0-1\n")
            (d / "cpuset.mems").write_text("0\n")


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
