"""Per-process facts the NUMA and pinning readers share: ``/proc/PID/{stat,status,numa_maps}`` under a root.

Read-only and never raising for a process that vanished or a file that is missing: a field it could not
read stays at its default (a process whose ``stat`` cannot be read is skipped). The root is swappable
(``root="tests/.../tree"``) like :func:`collectors.topology.read_topology`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from collectors.kernelfiles import parse_cpu_list
from collectors.rootfs import RootReader

__all__ = ["ProcInfo", "list_pids", "numa_pages", "read_proc_info", "top_pids"]

#: processes considered when none are given (the largest by RSS plus the busiest by CPU time)
DEFAULT_TOP = 8
_NODE = re.compile(r"\bN(\d+)=(\d+)\b")


@dataclass(frozen=True)
class ProcInfo:
    """One process as ``/proc`` shows it. ``cpu_ticks``: utime + stime (clock ticks); ``last_cpu``: field 39."""

    pid: int
    name: str = ""
    state: str = ""
    cpu_ticks: int = 0
    start_ticks: int = 0
    last_cpu: int | None = None
    allowed_cpus: tuple[int, ...] = ()
    rss_bytes: int = 0
    shmem_bytes: int = 0
    threads: int = 1
    voluntary_switches: int = 0
    involuntary_switches: int = 0
    kernel_thread: bool = False
    cgroup: str | None = None
    notes: tuple[str, ...] = field(default=())


def _text(fs: RootReader, rel: str) -> str | None:
    try:
        return fs.read(rel)
    except (OSError, fs.unsafe_error, UnicodeDecodeError):
        return None


def list_pids(fs: RootReader) -> list[int]:
    """Numbered entries of ``<root>/proc``, sorted (``[]`` when it cannot be listed)."""
    try:
        return sorted(int(d) for d in fs.listdir("proc") if d.isdigit())
    except (OSError, fs.unsafe_error):
        return []


def _parse_stat(raw: str) -> tuple[str, str, int, int | None, int, int] | None:
    """``(comm, state, utime+stime, processor, flags, starttime)`` from ``/proc/PID/stat``; None when malformed."""
    open_, close = raw.find("("), raw.rfind(")")
    if open_ < 0 or close < open_:
        return None
    rest = raw[close + 1:].split()
    try:  # rest[0] is field 3 (state); field N is rest[N - 3]
        ticks = int(rest[11]) + int(rest[12])
        cpu = int(rest[36]) if len(rest) > 36 else None
        return raw[open_ + 1:close], rest[0], ticks, cpu, int(rest[6]), int(rest[19])
    except (IndexError, ValueError):
        return None


def _status_fields(raw: str) -> dict[str, str]:
    out = {}
    for line in raw.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _int(fields: dict[str, str], key: str, default: int) -> int:
    value = fields.get(key, "")
    return int(value) if value.isdigit() else default


def _kb(value: str | None) -> int:
    try:
        return int((value or "0").split()[0]) * 1024
    except (ValueError, IndexError):
        return 0


def read_proc_info(fs: RootReader, pid: int) -> ProcInfo | None:
    """What ``<root>/proc/PID`` shows; None when the process is gone or its ``stat`` is unreadable."""
    stat = _text(fs, f"proc/{pid}/stat")
    parsed = _parse_stat(stat) if stat is not None else None
    if parsed is None:
        return None
    comm, state, ticks, last_cpu, flags, start = parsed
    st = _status_fields(_text(fs, f"proc/{pid}/status") or "")
    notes = []
    try:
        allowed = parse_cpu_list(st.get("Cpus_allowed_list", ""))
    except ValueError:
        allowed = ()
        notes.append(f"proc/{pid}/status: unparsable Cpus_allowed_list")
    cg = _text(fs, f"proc/{pid}/cgroup")
    return ProcInfo(
        pid=pid, name=st.get("Name", comm), state=state, cpu_ticks=ticks, start_ticks=start, last_cpu=last_cpu,
        allowed_cpus=allowed, rss_bytes=_kb(st.get("VmRSS")), shmem_bytes=_kb(st.get("RssShmem")),
        threads=_int(st, "Threads", 1), voluntary_switches=_int(st, "voluntary_ctxt_switches", 0),
        involuntary_switches=_int(st, "nonvoluntary_ctxt_switches", 0),
        kernel_thread=bool(flags & 0x00200000),  # PF_KTHREAD
        cgroup=_cgroup_path(cg) if cg else None, notes=tuple(notes),
    )


def _cgroup_path(raw: str) -> str | None:
    """The cpuset (v1) or unified (v2) path of ``/proc/PID/cgroup``."""
    unified = None
    for line in raw.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "cpuset" in parts[1].split(","):
            return parts[2]
        if len(parts) == 3 and parts[0] == "0":
            unified = parts[2]
    return unified


def numa_pages(fs: RootReader, pid: int) -> dict[int, int] | None:
    """Pages per node summed over ``<root>/proc/PID/numa_maps`` (``N0=12 N1=3``); None when unreadable."""
    raw = _text(fs, f"proc/{pid}/numa_maps")
    if raw is None:
        return None
    pages: dict[int, int] = {}
    for node, count in _NODE.findall(raw):
        pages[int(node)] = pages.get(int(node), 0) + int(count)
    return pages


def top_pids(infos: list[ProcInfo], *, limit: int = DEFAULT_TOP) -> list[ProcInfo]:
    """The ``limit`` largest user processes by RSS merged with the ``limit`` busiest by CPU time (each once,
    at most ``2 * limit``); kernel threads excluded."""
    users = [i for i in infos if not i.kernel_thread and i.rss_bytes > 0]
    by_rss = sorted(users, key=lambda i: (-i.rss_bytes, i.pid))[:limit]
    by_cpu = sorted(users, key=lambda i: (-i.cpu_ticks, i.pid))[:limit]
    seen: dict[int, ProcInfo] = {}
    for i in by_rss + by_cpu:
        seen.setdefault(i.pid, i)
    return sorted(seen.values(), key=lambda i: i.pid)
