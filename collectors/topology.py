"""Static hardware topology read straight from ``/sys``: CPUs, caches, NUMA, disks, NICs.

Usage::

    topo = read_topology()              # or read_topology(root="tests/collectors/data/topo-vm")
    len(topo.cpus), topo.packages()     # 2, (0,)
    topo.nodes[0].distances             # (10,)
    topo.as_dict()                      # plain JSON-ready dict
    topo.gaps                           # ("cpu1/cache: ... No such file or directory", ...)

Read-only: nothing under the root is ever written. The root (default ``/``) is
swappable, like :class:`collectors.metrics.MetricsSampler`, so tests feed
recorded or generated trees.

A file that is missing or unreadable leaves its field ``None`` and adds one
line to :attr:`Topology.gaps`; it never raises. Exceptions to that rule, which
are normal and therefore not gaps: a NIC ``speed`` the kernel refuses with
``EINVAL`` or reports as ``-1`` (virtual and down links) is ``None`` (unknown);
a disk ``model`` is only present for some devices; ``lo`` is skipped.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from collectors.errors import CollectorError
from collectors.kernelfiles import bracketed, parse_cpu_list, parse_meminfo, parse_size, selector_words
from collectors.rootfs import RootReader

__all__ = [
    "Cache",
    "Cpu",
    "NumaNode",
    "BlockDevice",
    "Nic",
    "Topology",
    "online_cpus",
    "read_cpu_topology",
    "read_topology",
]

T = TypeVar("T")

_CPU_DIR = "sys/devices/system/cpu"
_ONLINE = f"{_CPU_DIR}/online"


@dataclass(frozen=True)
class Cache:
    """One cache (``cpuN/cache/indexM``): ``type`` is ``"Data" | "Instruction" | "Unified"``."""

    index: int
    level: int | None
    type: str | None
    size_bytes: int | None
    shared_cpus: tuple[int, ...] | None


@dataclass(frozen=True)
class Cpu:
    """One online logical CPU; ``siblings`` come from ``thread_siblings_list`` (itself included)."""

    cpu: int
    package: int | None
    die: int | None
    core: int | None
    siblings: tuple[int, ...] | None
    caches: tuple[Cache, ...] = ()


@dataclass(frozen=True)
class NumaNode:
    """One NUMA node: its CPUs, ``MemTotal`` in bytes, and its row of the distance matrix."""

    node: int
    cpus: tuple[int, ...] | None
    mem_total_bytes: int | None
    distances: tuple[int, ...] | None


@dataclass(frozen=True)
class BlockDevice:
    """One ``/sys/block`` entry; ``scheduler`` is the bracketed one of ``schedulers``
    (``None`` when the queue has no elevator file, e.g. zram)."""

    name: str
    nvme: bool
    rotational: bool | None
    model: str | None
    size_bytes: int | None
    schedulers: tuple[str, ...] | None
    scheduler: str | None
    read_ahead_kb: int | None


@dataclass(frozen=True)
class Nic:
    """One network interface (``lo`` excluded); ``speed_mbps`` ``None`` means unknown."""

    name: str
    speed_mbps: int | None
    driver: str | None
    rx_queues: int | None
    tx_queues: int | None
    mtu: int | None
    operstate: str | None


@dataclass(frozen=True)
class Topology:
    """Everything :func:`read_topology` found, plus ``gaps`` (what could not be read, and why)."""

    root: str
    online: tuple[int, ...]
    cpus: tuple[Cpu, ...]
    nodes: tuple[NumaNode, ...]
    disks: tuple[BlockDevice, ...]
    nics: tuple[Nic, ...]
    gaps: tuple[str, ...] = field(default=())

    def cpu(self, n: int) -> Cpu:
        """The CPU numbered ``n``.

        Raises:
            KeyError: ``n`` is not an online CPU.
        """
        for c in self.cpus:
            if c.cpu == n:
                return c
        raise KeyError(f"cpu{n} is not online (online: {_fmt_list(self.online)})")

    def packages(self) -> tuple[int, ...]:
        """Distinct package ids, sorted."""
        return tuple(sorted({c.package for c in self.cpus if c.package is not None}))

    def cores(self) -> tuple[tuple[int, int], ...]:
        """Distinct physical cores as ``(package, core)``, sorted."""
        return tuple(sorted({(c.package, c.core) for c in self.cpus if c.package is not None and c.core is not None}))

    def core_map(self) -> dict[int, tuple[int, int]]:
        """CPU -> ``(package, core)`` for every CPU whose package and core are known (plain data for placement)."""
        return {c.cpu: (c.package, c.core) for c in self.cpus if c.package is not None and c.core is not None}

    def distance_matrix(self) -> tuple[tuple[int, ...] | None, ...]:
        """One distance row per node, in node order."""
        return tuple(n.distances for n in self.nodes)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)


def _fmt_list(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus)) or "none"


def _num_suffix(name: str, prefix: str) -> int | None:
    rest = name[len(prefix):]
    return int(rest) if name.startswith(prefix) and rest.isdigit() else None


class _Reader:
    """Reads files through a :class:`RootReader`, recording every failure once in ``gaps``.

    A refused path (one that leaves the root through a symlink) is a gap like a missing file.
    """

    def __init__(self, fs: RootReader) -> None:
        self.fs = fs
        self.gaps: list[str] = []

    def gap(self, rel: str, why: str) -> None:
        self.gaps.append(f"{rel}: {why}")

    def is_dir(self, rel: str) -> bool:
        try:
            return self.fs.is_dir(rel)
        except self.fs.unsafe_error:
            return False

    def text(self, rel: str, *, optional: bool = False, einval_ok: bool = False) -> str | None:
        try:
            return self.fs.read_bytes(rel).decode("utf-8", "replace").strip()
        except OSError as e:
            quiet = optional and isinstance(e, FileNotFoundError) or einval_ok and e.errno == errno.EINVAL
            if not quiet:
                self.gap(rel, e.strerror or type(e).__name__)
            return None
        except self.fs.unsafe_error as e:
            self.gap(rel, str(e))
            return None

    def parsed(self, rel: str, parse: Callable[[str], T], *, optional: bool = False,
               einval_ok: bool = False) -> T | None:
        raw = self.text(rel, optional=optional, einval_ok=einval_ok)
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError as e:
            self.gap(rel, f"unparsable {raw[:40]!r} ({e})")
            return None

    def listdir(self, rel: str) -> list[str]:
        try:
            return self.fs.listdir(rel, strict=True)
        except OSError as e:
            self.gap(rel, e.strerror or type(e).__name__)
            return []
        except self.fs.unsafe_error as e:
            self.gap(rel, str(e))
            return []

    def readlink(self, rel: str) -> str | None:
        try:
            return self.fs.readlink(rel)
        except (OSError, self.fs.unsafe_error):
            return None


def _open_root(root: str | os.PathLike[str] | RootReader) -> tuple[RootReader, str]:
    """The reader for ``root`` and how the topology names it.

    Raises:
        CollectorError: ``root`` is not a directory.
    """
    if isinstance(root, RootReader):
        fs, shown = root, str(root.root)
    else:
        fs, shown = RootReader(root), str(Path(root))
    if not fs.root.is_dir():
        raise CollectorError(f"topology root {shown}: not a directory")
    return fs, shown


def online_cpus(root: str | os.PathLike[str] | RootReader = "/") -> tuple[int, ...]:
    """The online CPUs (``sys/devices/system/cpu/online``); ``()`` when it cannot be read."""
    fs = root if isinstance(root, RootReader) else RootReader(root)
    try:
        return parse_cpu_list(fs.read_bytes(_ONLINE).decode("utf-8", "replace"))
    except (OSError, ValueError, fs.unsafe_error):
        return ()


def read_cpu_topology(*, root: str | os.PathLike[str] | RootReader = "/") -> Topology:
    """Only the CPU part of :func:`read_topology` (online CPUs, packages, cores, SMT siblings, caches).

    ``nodes``, ``disks`` and ``nics`` are empty. ``root`` may be a path or a
    :class:`RootReader` (e.g. an :class:`actuators.SysRoot`).

    Raises:
        CollectorError: ``root`` is not a directory.
    """
    fs, shown = _open_root(root)
    r = _Reader(fs)
    online, cpus = _read_cpus(r)
    return Topology(root=shown, online=online, cpus=cpus, nodes=(), disks=(), nics=(), gaps=tuple(r.gaps))


def read_topology(*, root: str | os.PathLike[str] | RootReader = "/") -> Topology:
    """Read CPUs, caches, NUMA nodes, block devices and NICs under ``root``.

    Never raises for missing or malformed files (see the module doc); only an
    unusable ``root`` is an error. ``root`` may be a path or a :class:`RootReader`.

    Raises:
        CollectorError: ``root`` is not a directory.
    """
    fs, shown = _open_root(root)
    r = _Reader(fs)
    online, cpus = _read_cpus(r)
    return Topology(
        root=shown,
        online=online,
        cpus=cpus,
        nodes=_read_nodes(r),
        disks=_read_disks(r),
        nics=_read_nics(r),
        gaps=tuple(r.gaps),
    )


def _read_cpus(r: _Reader) -> tuple[tuple[int, ...], tuple[Cpu, ...]]:
    online = r.parsed(_ONLINE, parse_cpu_list) or ()
    return online, tuple(_read_cpu(r, n) for n in online)


def _read_cpu(r: _Reader, n: int) -> Cpu:
    base = f"{_CPU_DIR}/cpu{n}"
    caches: list[Cache] = []
    for name in r.listdir(f"{base}/cache"):
        idx = _num_suffix(name, "index")
        if idx is None:
            continue
        d = f"{base}/cache/{name}"
        caches.append(Cache(
            index=idx,
            level=r.parsed(f"{d}/level", int),
            type=r.text(f"{d}/type"),
            size_bytes=r.parsed(f"{d}/size", parse_size),
            shared_cpus=r.parsed(f"{d}/shared_cpu_list", parse_cpu_list),
        ))
    caches.sort(key=lambda c: c.index)
    return Cpu(
        cpu=n,
        package=r.parsed(f"{base}/topology/physical_package_id", int),
        die=r.parsed(f"{base}/topology/die_id", int, optional=True),  # absent before Linux 5.2
        core=r.parsed(f"{base}/topology/core_id", int),
        siblings=r.parsed(f"{base}/topology/thread_siblings_list", parse_cpu_list),
        caches=tuple(caches),
    )


def _node_mem_total(text: str) -> int:
    """``MemTotal`` of a node's ``meminfo`` (``Node 0 MemTotal:       6121688 kB``), in bytes.

    Raises:
        ValueError: no MemTotal line.
    """
    mem = parse_meminfo(text)
    if "MemTotal" not in mem:
        raise ValueError("no MemTotal line")
    return mem["MemTotal"]


def _read_nodes(r: _Reader) -> tuple[NumaNode, ...]:
    base = "sys/devices/system/node"
    if not r.is_dir(base):
        r.gap(base, "no NUMA information (kernel without CONFIG_NUMA?)")
        return ()
    nodes = []
    for name in r.listdir(base):
        n = _num_suffix(name, "node")
        if n is None:
            continue
        d = f"{base}/{name}"
        nodes.append(NumaNode(
            node=n,
            cpus=r.parsed(f"{d}/cpulist", parse_cpu_list),
            mem_total_bytes=r.parsed(f"{d}/meminfo", _node_mem_total),
            distances=r.parsed(f"{d}/distance", lambda s: tuple(int(x) for x in s.split())),
        ))
    return tuple(sorted(nodes, key=lambda x: x.node))


def _read_disks(r: _Reader) -> tuple[BlockDevice, ...]:
    out = []
    for name in r.listdir("sys/block"):
        d = f"sys/block/{name}"
        rot = r.parsed(f"{d}/queue/rotational", int)
        sched = r.text(f"{d}/queue/scheduler", optional=True)  # zram and some others have none
        sectors = r.parsed(f"{d}/size", int)
        out.append(BlockDevice(
            name=name,
            nvme=name.startswith("nvme"),
            rotational=None if rot is None else bool(rot),
            model=r.text(f"{d}/device/model", optional=True) or None,
            size_bytes=None if sectors is None else sectors * 512,  # always 512-byte units
            schedulers=None if sched is None else selector_words(sched),
            scheduler=None if sched is None else bracketed(sched),
            read_ahead_kb=r.parsed(f"{d}/queue/read_ahead_kb", int),
        ))
    return tuple(out)


def _read_nics(r: _Reader) -> tuple[Nic, ...]:
    out = []
    for name in r.listdir("sys/class/net"):
        if name == "lo":
            continue
        d = f"sys/class/net/{name}"
        if not r.is_dir(d):  # e.g. the bonding_masters file
            continue
        speed = r.parsed(f"{d}/speed", int, einval_ok=True, optional=True)
        link = r.readlink(f"{d}/device/driver")  # virtual interfaces have no device: normal, not a gap
        queues = r.listdir(f"{d}/queues") if r.is_dir(f"{d}/queues") else None
        out.append(Nic(
            name=name,
            speed_mbps=speed if speed is not None and speed >= 0 else None,
            driver=None if link is None else os.path.basename(link),
            rx_queues=None if queues is None else sum(q.startswith("rx-") for q in queues),
            tx_queues=None if queues is None else sum(q.startswith("tx-") for q in queues),
            mtu=r.parsed(f"{d}/mtu", int),
            operstate=r.text(f"{d}/operstate"),
        ))
    return tuple(out)
