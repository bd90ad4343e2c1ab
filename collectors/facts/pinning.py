"""CPU-pinning facts for :mod:`optimizer.advisors.pinning`: topology, process CPU use, IRQs per CPU.

Usage::

    facts = read()                              # this machine, CPU use averaged over each process's life
    facts = read(pids=[1234, 1240], sample_s=2)  # these processes, CPU use over 2 s
    facts = read(root="tests/.../tree")

Reads the CPU topology through :func:`collectors.topology.read_topology` (SMT siblings, the L3's
``shared_cpu_list``, packages, nodes), per process ``proc/PID/{stat,status}`` (CPU time, allowed CPUs,
last CPU, context switches), ``proc/interrupts`` (deliveries per CPU of each numbered IRQ) with
``proc/irq/N/smp_affinity_list`` and ``proc/irq/default_smp_affinity``. ``sample_s`` > 0 reads the
processes twice that far apart (bounded to 60 s); 0 averages over each process's lifetime
(``proc/uptime``). Never raises for a missing file: it is a line in ``notes``. The dataclasses live in
:mod:`optimizer.advisors.pinning`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from collectors.facts.procinfo import ProcInfo, list_pids, read_proc_info, top_pids
from collectors.kernelfiles import parse_cpu_list, parse_cpu_mask
from collectors.rootfs import RootReader
from collectors.topology import Topology, read_topology
from optimizer.advisors.pinning import CpuFacts, IrqFacts, PinningFacts, PinProcessFacts

__all__ = ["MAX_SAMPLE_S", "read"]

MAX_SAMPLE_S = 60.0


def _clk_tck() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (ValueError, OSError):
        return 100


def _text(fs: RootReader, rel: str) -> str | None:
    try:
        return fs.read(rel)
    except (OSError, fs.unsafe_error, UnicodeDecodeError):
        return None


def _cpus(topo: Topology) -> tuple[CpuFacts, ...]:
    node_of = {c: n.node for n in topo.nodes for c in (n.cpus or ())}
    out = []
    for c in topo.cpus:
        llc = max((k for k in c.caches if k.shared_cpus and k.type in ("Unified", None)),
                  key=lambda k: k.level or 0, default=None)
        out.append(CpuFacts(cpu=c.cpu, package=c.package, core=c.core, siblings=c.siblings or (c.cpu,),
                            l3=llc.shared_cpus if llc is not None and llc.shared_cpus else (), node=node_of.get(c.cpu)))
    return tuple(out)


def _irqs(fs: RootReader, notes: list[str]) -> tuple[IrqFacts, ...]:
    raw = _text(fs, "proc/interrupts")
    if raw is None:
        notes.append("proc/interrupts: not readable")
        return ()
    lines = raw.splitlines()
    if not lines:
        return ()
    cols = [int(h[3:]) for h in lines[0].split() if h.startswith("CPU") and h[3:].isdigit()]
    out = []
    for line in lines[1:]:
        head, _, rest = line.partition(":")
        irq = head.strip()
        if not irq.isdigit():
            continue
        parts = rest.split()
        counts = {cpu: int(v) for cpu, v in zip(cols, parts[:len(cols)]) if v.isdigit()}
        aff_raw = _text(fs, f"proc/irq/{irq}/smp_affinity_list")
        try:
            affinity = parse_cpu_list(aff_raw) if aff_raw else None
        except ValueError:
            affinity = None
        out.append(IrqFacts(irq=irq, name=" ".join(parts[len(cols):]), counts=counts, affinity=affinity))
    return tuple(out)


def _infos(fs: RootReader, pids: Iterable[int] | None, notes: list[str]) -> list[ProcInfo]:
    wanted = list(pids) if pids is not None else list_pids(fs)
    infos = [i for p in wanted if (i := read_proc_info(fs, int(p))) is not None]
    if pids is None:
        return top_pids(infos)
    if len(infos) < len(wanted):
        notes.append(f"processes not found: {sorted(set(map(int, wanted)) - {i.pid for i in infos})}")
    return infos


def _processes(fs: RootReader, pids: Iterable[int] | None, sample_s: float,
               notes: list[str]) -> tuple[PinProcessFacts, ...]:
    tck = _clk_tck()
    first = _infos(fs, pids, notes)
    if sample_s > 0:
        t0 = time.monotonic()
        time.sleep(min(sample_s, MAX_SAMPLE_S))
        span = {i.pid: time.monotonic() - t0 for i in first}
        later = {i.pid: i for p in first if (i := read_proc_info(fs, p.pid)) is not None}
        pairs = [(a, later[a.pid], span[a.pid]) for a in first if a.pid in later]
    else:
        up = (_text(fs, "proc/uptime") or "0").split()
        uptime = float(up[0]) if up else 0.0
        pairs = [(ProcInfo(pid=i.pid), i, max(uptime - i.start_ticks / tck, 1e-3)) for i in first]
        if not uptime:
            notes.append("proc/uptime: not readable; CPU use unknown")
    out = []
    for a, b, dt in pairs:
        out.append(PinProcessFacts(
            pid=b.pid, name=b.name, cpu_share=round(max(b.cpu_ticks - a.cpu_ticks, 0) / tck / dt, 4),
            allowed_cpus=b.allowed_cpus, last_cpu=b.last_cpu, threads=b.threads,
            voluntary_per_s=round(max(b.voluntary_switches - a.voluntary_switches, 0) / dt, 2),
            involuntary_per_s=round(max(b.involuntary_switches - a.involuntary_switches, 0) / dt, 2)))
    return tuple(out)


def read(*, root: str | os.PathLike[str] = "/", pids: Iterable[int] | None = None,
         sample_s: float = 0.0) -> PinningFacts:
    """The pinning facts under ``root`` (see the module doc).

    Raises:
        CollectorError: ``root`` is not a directory.
    """
    topo = read_topology(root=root)
    fs = RootReader(root)
    notes = [g for g in topo.gaps if "cpu" in g]
    default_raw = _text(fs, "proc/irq/default_smp_affinity")
    try:
        default = parse_cpu_mask(default_raw) if default_raw else None
    except ValueError:
        default = None
    if not topo.cpus:
        notes.append("sys/devices/system/cpu: no online CPU could be read: nothing to partition")
    return PinningFacts(cpus=_cpus(topo), processes=_processes(fs, pids, sample_s, notes), irqs=_irqs(fs, notes),
                        default_irq_affinity=default, sample_s=min(sample_s, MAX_SAMPLE_S), notes=tuple(notes),
                        source=str(root))
