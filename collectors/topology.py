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
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Cache",
    "Cpu",
    "NumaNode",
    "BlockDevice",
    "Nic",
    "Topology",
    "read_topology",
    "parse_cpu_list",
    "parse_size",
]

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


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

    def distance_matrix(self) -> tuple[tuple[int, ...] | None, ...]:
        """One distance row per node, in node order."""
        return tuple(n.distances for n in self.nodes)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``"0-3,8,10-11"`` -> ``(0, 1, 2, 3, 8, 10, 11)``; an empty string is an empty tuple.

    Raises:
        ValueError: not a CPU list.
    """
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"bad cpu range {part!r}")
        out.extend(range(a, b + 1))
    return tuple(sorted(set(out)))


def parse_size(text: str) -> int:
    """``"48K"`` -> 49152, ``"2048K"``, ``"32M"``, ``"512"`` (binary units, as sysfs writes them).

    Raises:
        ValueError: not a size.
    """
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def _fmt_list(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus)) or "none"


def _num_suffix(name: str, prefix: str) -> int | None:
    rest = name[len(prefix):]
    return int(rest) if name.startswith(prefix) and rest.isdigit() else None


class _Reader:
    """Reads files under the root, recording every failure once in ``gaps``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gaps: list[str] = []

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def gap(self, rel: str, why: str) -> None:
        self.gaps.append(f"{rel}: {why}")

    def text(self, rel: str, *, optional: bool = False, einval_ok: bool = False) -> str | None:
        try:
            return self.path(rel).read_text(errors="replace").strip()
        except OSError as e:
            quiet = optional and isinstance(e, FileNotFoundError) or einval_ok and e.errno == errno.EINVAL
            if not quiet:
                self.gap(rel, e.strerror or type(e).__name__)
            return None

    def parsed(self, rel: str, parse, **kw: bool):  # noqa: ANN001, ANN202 - small internal helper
        raw = self.text(rel, **kw)
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError as e:
            self.gap(rel, f"unparsable {raw[:40]!r} ({e})")
            return None

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(rel)))
        except OSError as e:
            self.gap(rel, e.strerror or type(e).__name__)
            return []


def read_topology(*, root: str | os.PathLike[str] = "/") -> Topology:
    """Read CPUs, caches, NUMA nodes, block devices and NICs under ``root``.

    Never raises for missing or malformed files (see the module doc); only an
    unusable ``root`` is an error.

    Raises:
        CollectorError: ``root`` is not a directory.
    """
    from collectors.errors import CollectorError

    rootp = Path(root)
    if not rootp.is_dir():
        raise CollectorError(f"topology root {rootp}: not a directory")
    r = _Reader(rootp)
    online = r.parsed("sys/devices/system/cpu/online", parse_cpu_list) or ()
    cpus = tuple(_read_cpu(r, n) for n in online)
    return Topology(
        root=str(rootp),
        online=online,
        cpus=cpus,
        nodes=_read_nodes(r),
        disks=_read_disks(r),
        nics=_read_nics(r),
        gaps=tuple(r.gaps),
    )


def _read_cpu(r: _Reader, n: int) -> Cpu:
    base = f"sys/devices/system/cpu/cpu{n}"
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


def _meminfo_total(text: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        # "Node 0 MemTotal:       6121688 kB"
        if len(parts) >= 4 and parts[2] == "MemTotal:":
            return int(parts[3]) * (1024 if parts[-1] == "kB" else 1)
    raise ValueError("no MemTotal line")


def _read_nodes(r: _Reader) -> tuple[NumaNode, ...]:
    base = "sys/devices/system/node"
    if not r.path(base).is_dir():
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
            mem_total_bytes=r.parsed(f"{d}/meminfo", _meminfo_total),
            distances=r.parsed(f"{d}/distance", lambda s: tuple(int(x) for x in s.split())),
        ))
    return tuple(sorted(nodes, key=lambda x: x.node))


def _parse_schedulers(text: str) -> tuple[tuple[str, ...], str | None]:
    names, current = [], None
    for tok in text.split():
        if tok.startswith("[") and tok.endswith("]"):
            tok = tok[1:-1]
            current = tok
        names.append(tok)
    return tuple(names), current


def _read_disks(r: _Reader) -> tuple[BlockDevice, ...]:
    out = []
    for name in r.listdir("sys/block"):
        d = f"sys/block/{name}"
        rot = r.parsed(f"{d}/queue/rotational", int)
        sched = r.text(f"{d}/queue/scheduler", optional=True)  # zram and some others have none
        names, current = _parse_schedulers(sched) if sched is not None else (None, None)
        sectors = r.parsed(f"{d}/size", int)
        out.append(BlockDevice(
            name=name,
            nvme=name.startswith("nvme"),
            rotational=None if rot is None else bool(rot),
            model=r.text(f"{d}/device/model", optional=True) or None,
            size_bytes=None if sectors is None else sectors * 512,  # always 512-byte units
            schedulers=names,
            scheduler=current,
            read_ahead_kb=r.parsed(f"{d}/queue/read_ahead_kb", int),
        ))
    return tuple(out)


def _read_nics(r: _Reader) -> tuple[Nic, ...]:
    out = []
    for name in r.listdir("sys/class/net"):
        if name == "lo":
            continue
        d = f"sys/class/net/{name}"
        if not r.path(d).is_dir():  # e.g. the bonding_masters file
            continue
        speed = r.parsed(f"{d}/speed", int, einval_ok=True, optional=True)
        try:
            driver: str | None = os.path.basename(os.readlink(r.path(f"{d}/device/driver")))
        except OSError:
            driver = None  # virtual interfaces have no device: normal, not a gap
        queues = r.listdir(f"{d}/queues") if r.path(f"{d}/queues").is_dir() else None
        out.append(Nic(
            name=name,
            speed_mbps=speed if speed is not None and speed >= 0 else None,
            driver=driver,
            rx_queues=None if queues is None else sum(q.startswith("rx-") for q in queues),
            tx_queues=None if queues is None else sum(q.startswith("tx-") for q in queues),
            mtu=r.parsed(f"{d}/mtu", int),
            operstate=r.text(f"{d}/operstate"),
        ))
    return tuple(out)
