"""The CPU-pinning advisor: dedicated, shared and mixed CPU pools, housekeeping CPUs and IRQ steering.

Pure (no I/O). :mod:`collectors.facts.pinning` reads :class:`PinningFacts` (topology, processes with
their CPU use and context switches, IRQ counts and affinities); :func:`plan` lays out the pools and
:func:`advise` turns the plan into :class:`optimizer.advice.Advice`:

* **housekeeping**: CPU 0 and its SMT siblings are never dedicated (timers, IRQs, the system).
* **dedicated pools** (1:1): each busy latency-sensitive process gets whole cores (every SMT sibling of
  each core, so no neighbour shares its L1/L2), one CPU per CPU it uses (at least one core), inside one
  shared-L3 group, taken from the high end of the machine.
* **shared pool**: every other busy process shares what is left (housekeeping included); its
  overcommit (CPU demand / pool CPUs) is kept at most :data:`MAX_OVERCOMMIT` (2x): a dedicated pool that
  would push it above is not made (the plan stays mixed or shared, and says so).
* **IRQ steering**: IRQs delivered to dedicated CPUs are moved to the shared pool (``irq.N.affinity``),
  and ``irq.default_affinity`` excludes the dedicated CPUs.

Roles: a process is latency-sensitive when its CPU bursts are short and end in a voluntary sleep (a
server waiting for the next request: at least :data:`LATENCY_WAKEUPS_PER_CPU_S` voluntary context
switches per CPU-second it uses), batch when it computes until preempted -- unless the caller names them
(``latency_pids``, ``batch_pids``). Involuntary switches are not the sign: under contention a server is
preempted as often as a batch job.

The ``affinity.cpus`` knob is a CPU *count* laid out from the lowest CPUs (``affinity.placement``
``compact``); a pool it can express (a prefix of the online CPUs) becomes a knob change bound to
``pid:N``, any other pool a ``manual`` ``taskset`` action.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from optimizer.advice import Advice, Change, Evidence
from optimizer.advisors.numa import cpu_list
from optimizer.placement import layout

__all__ = [
    "MAX_OVERCOMMIT",
    "CpuFacts",
    "IrqFacts",
    "PinPlan",
    "PinProcessFacts",
    "PinningFacts",
    "advise",
    "plan",
    "role",
]

#: a shared pool's CPU demand may be at most this many times its CPUs
MAX_OVERCOMMIT = 2.0
#: below this CPU use (CPUs) a process needs no pool of its own
MIN_BUSY = 0.05
#: a process that sleeps voluntarily at least this often per CPU-second it uses (mean CPU burst <= 20 ms
#: before it blocks again) serves requests; fewer sleeps: it computes until preempted (batch)
LATENCY_WAKEUPS_PER_CPU_S = 50.0


@dataclass(frozen=True)
class CpuFacts:
    """One online CPU: package, core, SMT siblings (itself included), the CPUs sharing its last-level
    cache (``l3``) and its NUMA node."""

    cpu: int
    package: int | None = None
    core: int | None = None
    siblings: tuple[int, ...] = ()
    l3: tuple[int, ...] = ()
    node: int | None = None


@dataclass(frozen=True)
class PinProcessFacts:
    """A process: ``cpu_share`` in CPUs (1.0 = one CPU busy) over the sample (or its lifetime), its
    allowed CPUs, last CPU, threads, and context switches per second (voluntary / involuntary)."""

    pid: int
    name: str = ""
    cpu_share: float = 0.0
    allowed_cpus: tuple[int, ...] = ()
    last_cpu: int | None = None
    threads: int = 1
    voluntary_per_s: float = 0.0
    involuntary_per_s: float = 0.0


@dataclass(frozen=True)
class IrqFacts:
    """An IRQ (``irq`` as in ``/proc/irq``), its name, deliveries per CPU and affinity (None: unreadable)."""

    irq: str
    name: str = ""
    counts: Mapping[int, int] = field(default_factory=dict)
    affinity: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PinningFacts:
    """What the pinning advisor reads (``sample_s`` 0: CPU use averaged over each process's lifetime)."""

    cpus: tuple[CpuFacts, ...] = ()
    processes: tuple[PinProcessFacts, ...] = ()
    irqs: tuple[IrqFacts, ...] = ()
    default_irq_affinity: tuple[int, ...] | None = None
    sample_s: float = 0.0
    notes: tuple[str, ...] = ()
    source: str = "/"

    @property
    def online(self) -> tuple[int, ...]:
        return tuple(sorted(c.cpu for c in self.cpus))


@dataclass(frozen=True)
class PinPlan:
    """The pools: ``kind`` is ``dedicated`` (only dedicated pools and housekeeping), ``shared``, ``mixed``
    or ``none``; ``dedicated`` pid -> its CPUs; ``overcommit`` the shared pool's demand / CPUs."""

    kind: str
    housekeeping: tuple[int, ...]
    dedicated: Mapping[int, tuple[int, ...]]
    shared: tuple[int, ...]
    shared_pids: tuple[int, ...]
    overcommit: float | None
    notes: tuple[str, ...] = ()


def role(p: PinProcessFacts) -> str:
    """``latency`` (short CPU bursts ending in a sleep), ``batch`` (long bursts) or ``idle`` (below
    :data:`MIN_BUSY`)."""
    if p.cpu_share < MIN_BUSY:
        return "idle"
    if p.voluntary_per_s >= LATENCY_WAKEUPS_PER_CPU_S * p.cpu_share:
        return "latency"
    return "batch"


def _cores(facts: PinningFacts) -> list[tuple[int, ...]]:
    """Physical cores as sibling groups, sorted by their lowest CPU."""
    online = set(facts.online)
    groups = {tuple(sorted(set(c.siblings or (c.cpu,)) & online)) or (c.cpu,) for c in facts.cpus}
    return sorted(groups)


def _l3_groups(facts: PinningFacts) -> list[tuple[int, ...]]:
    online = set(facts.online)
    groups = {tuple(sorted(set(c.l3 or facts.online) & online)) for c in facts.cpus}
    return sorted(groups)


def _pick_cores(need: int, cores: list[tuple[int, ...]], taken: set[int], l3s: list[tuple[int, ...]],
                prefer: int | None) -> tuple[int, ...] | None:
    """``need`` free whole cores inside one L3 group (the one of ``prefer`` first, then the one with the most
    free cores), highest-numbered first; None when no group has that many."""
    def free_in(group: tuple[int, ...]) -> list[tuple[int, ...]]:
        return [c for c in cores if set(c) <= set(group) and not set(c) & taken]

    order = sorted(l3s, key=lambda g: (prefer not in g, -len(free_in(g)), -g[0]))
    for g in order:
        free = free_in(g)
        if len(free) >= need:
            chosen = sorted(free, key=lambda c: -c[0])[:need]
            return tuple(sorted(c for core in chosen for c in core))
    return None


def plan(facts: PinningFacts, *, latency_pids: Collection[int] = (), batch_pids: Collection[int] = ()) -> PinPlan:
    """Lay out the pools (see the module doc). ``latency_pids`` / ``batch_pids`` override :func:`role`."""
    online = facts.online
    cores = _cores(facts)
    if len(online) < 2 or len(cores) < 2:
        return PinPlan("none", online, {}, online, (), None, ("fewer than two cores: nothing to partition",))
    housekeeping = next(c for c in cores if online[0] in c)
    roles = {p.pid: role(p) for p in facts.processes}
    roles.update({pid: "latency" for pid in latency_pids})
    roles.update({pid: "batch" for pid in batch_pids})
    busy = [p for p in facts.processes if roles[p.pid] != "idle" or p.pid in latency_pids or p.pid in batch_pids]
    latency = sorted((p for p in busy if roles[p.pid] == "latency"), key=lambda p: (-p.cpu_share, p.pid))
    notes: list[str] = []
    demand = sum(p.cpu_share for p in busy if roles[p.pid] != "latency")
    taken = set(housekeeping)
    dedicated: dict[int, tuple[int, ...]] = {}
    l3s = _l3_groups(facts)
    per_core = max(len(c) for c in cores)
    for p in latency:
        need = max(1, math.ceil(math.ceil(max(p.cpu_share, 1e-9)) / per_core))
        chosen = _pick_cores(need, cores, taken, l3s, p.last_cpu)
        left = len(online) - len(taken - set(housekeeping)) - len(chosen or ())  # the shared pool after
        if chosen is None:
            notes.append(f"pid {p.pid}: no L3 group has {need} free whole core(s): left in the shared pool")
        elif demand / max(left, 1) > MAX_OVERCOMMIT:
            notes.append(f"pid {p.pid}: dedicating {cpu_list(chosen)} would overcommit the shared pool beyond "
                         f"{MAX_OVERCOMMIT:g}x ({demand:.2f} CPUs on {left}): left shared")
        else:
            dedicated[p.pid] = chosen
            taken |= set(chosen)
            continue
        demand += p.cpu_share
    shared = tuple(c for c in online if c not in taken or c in housekeeping)
    shared_pids = tuple(p.pid for p in busy if p.pid not in dedicated)
    overcommit = round(demand / len(shared), 3) if shared else None
    if overcommit is not None and overcommit > MAX_OVERCOMMIT:
        notes.append(f"the shared pool is overcommitted {overcommit:g}x: more busy work than the cores can hold")
    kind = "mixed" if dedicated and shared_pids else "dedicated" if dedicated else "shared"
    return PinPlan(kind, housekeeping, dedicated, shared, shared_pids, overcommit, tuple(notes))


def _affinity_changes(facts: PinningFacts, cpus: tuple[int, ...]) -> tuple[Change, ...]:
    online = list(facts.online)
    if cpus and layout(len(cpus), "compact", online, {}) == sorted(cpus):
        return (Change("affinity.cpus", len(cpus)), Change("affinity.placement", "compact"))
    return ()


def _contention(facts: PinningFacts, p: PinProcessFacts) -> float:
    """CPU use of the other processes on ``p``'s allowed CPUs, per allowed CPU."""
    mine = set(p.allowed_cpus or facts.online)
    others = sum(o.cpu_share * len(mine & set(o.allowed_cpus or facts.online)) / max(len(o.allowed_cpus or
                 facts.online), 1) for o in facts.processes if o.pid != p.pid)
    return others / max(len(mine), 1)


def _topology_evidence(facts: PinningFacts, pl: PinPlan) -> tuple[Evidence, ...]:
    return (
        Evidence("SMT sibling groups", [cpu_list(c) for c in _cores(facts)], "",
                 "sys/devices/system/cpu/cpu*/topology/thread_siblings_list"),
        Evidence("shared-L3 groups", [cpu_list(g) for g in _l3_groups(facts)], "",
                 "sys/devices/system/cpu/cpu*/cache/index3/shared_cpu_list"),
        Evidence("housekeeping CPUs", cpu_list(pl.housekeeping), "", "CPU 0 and its SMT siblings"),
        Evidence("shared pool", cpu_list(pl.shared), "", f"overcommit {pl.overcommit}x"),
    )


def _proc_evidence(facts: PinningFacts, p: PinProcessFacts, kind: str) -> tuple[Evidence, ...]:
    src = f"{facts.source.rstrip('/')}/proc/{p.pid}"
    over = f"over {facts.sample_s:g} s" if facts.sample_s else "over its lifetime"
    return (
        Evidence(f"CPU use of pid {p.pid} ({p.name})", round(p.cpu_share, 3), "CPUs", f"{src}/stat {over}"),
        Evidence(f"role of pid {p.pid}", kind, "", f"{src}/status context switches: "
                 f"{p.voluntary_per_s:.0f}/s voluntary, {p.involuntary_per_s:.0f}/s involuntary"),
        Evidence(f"allowed CPUs of pid {p.pid}", cpu_list(p.allowed_cpus), "", f"{src}/status Cpus_allowed_list"),
        Evidence(f"others' CPU use on its CPUs (per CPU) of pid {p.pid}", round(_contention(facts, p), 3), "CPUs",
                 "/proc/*/stat"),
    )


def _pool_advice(facts: PinningFacts, pl: PinPlan, p: PinProcessFacts, cpus: tuple[int, ...],
                 dedicated: bool) -> Advice:
    changes = _affinity_changes(facts, cpus)
    contention = _contention(facts, p)
    kind = "latency" if dedicated else "batch"
    if dedicated:
        title = f"dedicate CPUs {cpu_list(cpus)} (whole cores, one L3 group) to pid {p.pid} ({p.name})"
        why = (f"it is latency-sensitive and shares its CPUs with {contention:.2f} CPUs of other work per CPU; "
               f"a dedicated pool of whole cores removes the run-queue wait and the SMT neighbour")
        impact, risk = min(0.5, 0.4 * min(contention, 1.0)), 1.0
    else:
        title = f"confine pid {p.pid} ({p.name}) to the shared pool CPUs {cpu_list(cpus)}"
        why = (f"it is CPU-bound ({p.cpu_share:.2f} CPUs) and runs on the CPUs of latency-sensitive work; the "
               f"shared pool keeps it off the dedicated CPUs (overcommit {pl.overcommit}x)")
        impact, risk = min(0.5, 0.4 * min(p.cpu_share / max(len(p.allowed_cpus or facts.online), 1), 1.0)), 1.5
    return Advice(
        advisor="pinning", title=title, why=why, changes=changes, metric="p99_latency_ms",
        expected_impact=round(impact, 4), confidence=0.5, risk=risk,
        evidence=_proc_evidence(facts, p, kind) + _topology_evidence(facts, pl), target=f"pid:{p.pid}",
        manual=None if changes else f"taskset -a -cp {cpu_list(cpus)} {p.pid} (systemd: CPUAffinity={cpu_list(cpus)}"
                                    f"; the affinity.cpus knob lays CPU counts out from CPU {facts.online[0]})")


def _irq_advice(facts: PinningFacts, pl: PinPlan) -> Advice | None:
    ded = {c for cpus in pl.dedicated.values() for c in cpus}
    if not ded:
        return None
    to = tuple(pl.shared)
    changes, ev = [], []
    total = on_ded = 0
    for q in facts.irqs:
        hits = sum(n for c, n in q.counts.items() if c in ded)
        total += sum(q.counts.values())
        on_ded += hits
        if hits and q.affinity is not None and set(q.affinity) & ded:  # the idle ones follow the default
            changes.append(Change(f"irq.{q.irq}.affinity", cpu_list(to), cpu_list(q.affinity)))
            ev.append(Evidence(f"IRQ {q.irq} ({q.name}) on dedicated CPUs", hits, "interrupts", "proc/interrupts"))
    if facts.default_irq_affinity is not None and set(facts.default_irq_affinity) & ded:
        changes.append(Change("irq.default_affinity", cpu_list(to), cpu_list(facts.default_irq_affinity)))
    if not changes:
        return None
    share = on_ded / total if total else 0.0
    ev.append(Evidence("share of device interrupts on dedicated CPUs", round(share, 3), "", "proc/interrupts"))
    return Advice(
        advisor="pinning", title=f"steer IRQs off the dedicated CPUs {cpu_list(sorted(ded))} to {cpu_list(to)}",
        why="device interrupts on a dedicated CPU preempt the latency-sensitive work it was dedicated to",
        changes=tuple(changes), metric="p99_latency_ms", expected_impact=round(0.02 + 0.1 * share, 4),
        confidence=0.4, risk=2.0, evidence=tuple(ev) + _topology_evidence(facts, pl))


def advise(facts: PinningFacts, *, latency_pids: Collection[int] = (),
           batch_pids: Collection[int] = ()) -> list[Advice]:
    """Pinning recommendations: one per process whose pool differs from where it may run now, and one IRQ
    steering advice when there are dedicated CPUs; ``[]`` when only one kind of work is busy or the machine
    has fewer than two cores."""
    pl = plan(facts, latency_pids=latency_pids, batch_pids=batch_pids)
    if pl.kind in ("none", "shared"):
        return []
    by_pid = {p.pid: p for p in facts.processes}
    out = [_pool_advice(facts, pl, by_pid[pid], cpus, True) for pid, cpus in sorted(pl.dedicated.items())
           if set(by_pid[pid].allowed_cpus) != set(cpus)]
    out += [_pool_advice(facts, pl, by_pid[pid], pl.shared, False) for pid in pl.shared_pids
            if set(by_pid[pid].allowed_cpus) & {c for cs in pl.dedicated.values() for c in cs}]
    irq = _irq_advice(facts, pl)
    if irq is not None:
        out.append(irq)
    return out
