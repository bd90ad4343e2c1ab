"""NUMA facts for :mod:`optimizer.advisors.numa`: nodes, distances, numastat, balancing, per-process pages.

Usage::

    facts = read()                          # this machine
    facts = read(root="tests/.../2node")     # a fixture tree
    facts = read(pids=[1234])                # only these processes

Reads ``sys/devices/system/node/node*/{cpulist,meminfo,distance,numastat}``,
``proc/sys/kernel/numa_balancing`` and, per process, ``proc/PID/{stat,status,numa_maps}`` under
``root``. The processes are ``pids`` (those that exist), else the largest by RSS and the busiest by CPU
time (bounded: :data:`collectors.facts.procinfo.DEFAULT_TOP` of each). Never raises for a missing feature
or file: what could not be read is a line in ``notes`` (a machine with one node says so there, and the
advisor then advises nothing). The facts' dataclasses live in :mod:`optimizer.advisors.numa` (pure
plain data; collectors may import the optimizer, never the reverse).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from collectors.errors import CollectorError
from collectors.facts.procinfo import list_pids, numa_pages, read_proc_info, top_pids
from collectors.kernelfiles import parse_cpu_list, parse_meminfo
from collectors.rootfs import RootReader
from optimizer.advisors.numa import NumaFacts, NumaNodeFacts, NumaProcessFacts

__all__ = ["read"]

_NODES = "sys/devices/system/node"


def _text(fs: RootReader, rel: str, notes: list[str], *, quiet: bool = False) -> str | None:
    try:
        return fs.read(rel)
    except (OSError, fs.unsafe_error, UnicodeDecodeError) as e:
        if not quiet:
            notes.append(f"{rel}: {getattr(e, 'strerror', None) or type(e).__name__}")
        return None


def _node(fs: RootReader, n: int, notes: list[str]) -> NumaNodeFacts:
    d = f"{_NODES}/node{n}"
    cpus: tuple[int, ...] = ()
    raw = _text(fs, f"{d}/cpulist", notes)
    try:
        cpus = parse_cpu_list(raw or "")
    except ValueError:
        notes.append(f"{d}/cpulist: unparsable")
    mem = parse_meminfo(_text(fs, f"{d}/meminfo", notes) or "")
    dist_raw = (_text(fs, f"{d}/distance", notes) or "").split()
    distances = tuple(int(x) for x in dist_raw if x.isdigit())
    stat: dict[str, int] = {}
    for line in (_text(fs, f"{d}/numastat", notes) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stat[key] = int(value)
    return NumaNodeFacts(node=n, cpus=cpus, mem_total_bytes=mem.get("MemTotal"), mem_free_bytes=mem.get("MemFree"),
                         distances=distances, numastat=stat)


def _nodes(fs: RootReader, notes: list[str]) -> tuple[NumaNodeFacts, ...]:
    try:
        names = fs.listdir(_NODES, strict=True)
    except (OSError, fs.unsafe_error):
        notes.append(f"{_NODES}: not readable (kernel without CONFIG_NUMA?): treated as one node")
        return ()
    numbers = sorted(int(x[4:]) for x in names if x.startswith("node") and x[4:].isdigit())
    return tuple(_node(fs, n, notes) for n in numbers)


def _processes(fs: RootReader, pids: Iterable[int] | None, notes: list[str]) -> tuple[NumaProcessFacts, ...]:
    wanted = list(pids) if pids is not None else list_pids(fs)
    infos = [i for p in wanted if (i := read_proc_info(fs, int(p))) is not None]
    if pids is None:
        infos = top_pids(infos)
    elif len(infos) < len(wanted):
        notes.append(f"processes not found: {sorted(set(map(int, wanted)) - {i.pid for i in infos})}")
    out = []
    for i in infos:
        pages = numa_pages(fs, i.pid)
        if pages is None:
            notes.append(f"proc/{i.pid}/numa_maps: not readable")
        out.append(NumaProcessFacts(
            pid=i.pid, name=i.name, pages_by_node=pages or {}, allowed_cpus=i.allowed_cpus, last_cpu=i.last_cpu,
            rss_bytes=i.rss_bytes, shmem_bytes=i.shmem_bytes, threads=i.threads, cgroup=i.cgroup))
    return tuple(out)


def read(*, root: str | os.PathLike[str] = "/", pids: Iterable[int] | None = None) -> NumaFacts:
    """The NUMA facts under ``root`` (see the module doc).

    Raises:
        CollectorError: ``root`` is not a directory.
    """
    fs = RootReader(root)
    if not fs.root.is_dir():
        raise CollectorError(f"facts root {root}: not a directory")
    notes: list[str] = []
    nodes = _nodes(fs, notes)
    bal_raw = _text(fs, "proc/sys/kernel/numa_balancing", notes, quiet=True)
    balancing = int(bal_raw.strip()) if bal_raw and bal_raw.strip().isdigit() else None
    if balancing is None:
        notes.append("proc/sys/kernel/numa_balancing: not present (kernel without NUMA balancing)")
    if len(nodes) < 2:
        notes.append(f"{len(nodes) or 1} NUMA node: every access is local, there is no NUMA advice to give")
        return NumaFacts(nodes=nodes, numa_balancing=balancing, processes=(), notes=tuple(notes), source=str(root))
    procs = _processes(fs, pids, notes)
    return NumaFacts(nodes=nodes, numa_balancing=balancing, processes=procs, notes=tuple(notes), source=str(root))
