"""Record the /sys files collectors.topology reads into a fixture tree.

Usage (from the repository root)::

    python tests/collectors/data/record_topology.py [DEST]

writes ``tests/collectors/data/topo-vm/`` by default. Only the files
:func:`collectors.topology.read_topology` reads are copied, as regular files at
their logical paths (``sys/block/X`` and ``sys/class/net/X`` become real
directories); a NIC's ``device/driver`` link is recreated as a dangling
symlink with the same target. Files that are missing or unreadable here (a
virtual NIC's ``speed`` gives EINVAL) are skipped. Read-only on the live side.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

CPU_FILES = ("topology/physical_package_id", "topology/die_id", "topology/core_id", "topology/thread_siblings_list")
CACHE_FILES = ("level", "type", "size", "shared_cpu_list")
NODE_FILES = ("cpulist", "meminfo", "distance")
DISK_FILES = ("queue/rotational", "queue/scheduler", "queue/read_ahead_kb", "size", "device/model")
NIC_FILES = ("speed", "mtu", "operstate")


def _copy(src: Path, dest: Path, rel: str) -> None:
    try:
        data = (src / rel).read_bytes()
    except OSError:
        return
    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    (dest / rel).write_bytes(data)


def record(dest: Path, src: Path = Path("/")) -> None:
    """Copy the topology files from ``src`` into a fresh ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    cpu = "sys/devices/system/cpu"
    _copy(src, dest, f"{cpu}/online")
    for name in os.listdir(src / cpu):
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        for f in CPU_FILES:
            _copy(src, dest, f"{cpu}/{name}/{f}")
        cache = src / cpu / name / "cache"
        for idx in os.listdir(cache) if cache.is_dir() else ():
            if idx.startswith("index"):
                for f in CACHE_FILES:
                    _copy(src, dest, f"{cpu}/{name}/cache/{idx}/{f}")
    node = "sys/devices/system/node"
    for name in os.listdir(src / node) if (src / node).is_dir() else ():
        if name.startswith("node") and name[4:].isdigit():
            for f in NODE_FILES:
                _copy(src, dest, f"{node}/{name}/{f}")
    for name in os.listdir(src / "sys/block"):
        for f in DISK_FILES:
            _copy(src, dest, f"sys/block/{name}/{f}")
    for name in os.listdir(src / "sys/class/net"):
        d = f"sys/class/net/{name}"
        if name == "lo" or not (src / d).is_dir():
            continue
        for f in NIC_FILES:
            _copy(src, dest, f"{d}/{f}")
        for q in os.listdir(src / d / "queues"):
            (dest / d / "queues" / q).mkdir(parents=True, exist_ok=True)
            (dest / d / "queues" / q / ".keep").touch()  # git keeps no empty directories
        try:
            target = os.readlink(src / d / "device" / "driver")
        except OSError:
            continue
        (dest / d / "device").mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest / d / "device" / "driver")


if __name__ == "__main__":
    record(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "topo-vm"))
