"""Record the /proc and /sys files collectors.metrics reads into fixture trees.

Usage (from the repository root)::

    python tests/collectors/data/record_proc.py PID [--gap 1.0]

writes ``tests/collectors/data/proc-t0/`` and ``proc-t1/`` (two snapshots
``--gap`` seconds apart, each a tree with ``proc/`` and ``sys/``), plus the
real gap in ``proc-t*/RECORDED``. PID's ``stat``, ``status``, ``io`` and its
main thread's ``children`` are recorded, as are the v1 ``cpu``/``cpuacct`` root
cgroup files. Files that do not exist here are skipped.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

HOST_FILES = [
    "proc/stat", "proc/loadavg", "proc/meminfo", "proc/vmstat", "proc/diskstats",
    "proc/net/dev", "proc/net/snmp", "proc/net/tcp", "proc/net/tcp6",
    "proc/pressure/cpu", "proc/pressure/memory", "proc/pressure/io",
    "sys/fs/cgroup/cpu/cpu.stat", "sys/fs/cgroup/cpu/cgroup.procs", "sys/fs/cgroup/cpu/tasks",
    "sys/fs/cgroup/cpuacct/cpuacct.usage",
]


def record(dest: Path, pid: int) -> None:
    files = HOST_FILES + [f"proc/{pid}/stat", f"proc/{pid}/status", f"proc/{pid}/io", f"proc/{pid}/task/{pid}/children"]
    for rel in files:
        src = Path("/") / rel
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            out.write_bytes(src.read_bytes())
        except OSError as err:
            print(f"skipped {src}: {err.strerror}")
    (dest / "RECORDED").write_text(f"{time.monotonic():.6f}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("--gap", type=float, default=1.0)
    args = ap.parse_args()
    here = Path(__file__).resolve().parent
    for i in range(2):
        dest = here / f"proc-t{i}"
        shutil.rmtree(dest, ignore_errors=True)
        if i:
            time.sleep(args.gap)
        record(dest, args.pid)
        print(f"recorded {dest}")


if __name__ == "__main__":
    main()
