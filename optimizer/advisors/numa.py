"""The NUMA advisor: bind, preferred and interleave plans and ``kernel.numa_balancing``, from plain facts.

Pure (no I/O). :mod:`collectors.facts.numa` reads the facts (:class:`NumaFacts`) from ``/sys`` and
``/proc``; :func:`advise` turns them into :class:`optimizer.advice.Advice`:

* **bind** -- a process whose memory and threads fit one node but whose pages are largely on another
  node than the CPUs it runs on: its CPUs and memory on that node. The CPU half goes through the
  ``affinity.cpus`` knob (process scope, bound to ``pid:N``) when that knob's layout can express the
  node's CPUs; memory binding has no knob for a running process, so it is a ``manual`` action
  (``numactl --cpunodebind=N --membind=N`` at start, ``migratepages`` for the running one).
* **preferred** -- the same, but the process would fill the node (memory above
  :data:`BIND_FILL` of what the node can hold): ``numactl --preferred=N`` falls back instead of
  swapping or OOM.
* **interleave** -- a large process spanning nodes (more memory or threads than one node holds) with
  its pages piled on one node: ``numactl --interleave=all`` spreads the bandwidth.
* ``kernel.numa_balancing`` -- off when every large process is bound to one node (the scanner only
  costs then), on when unbound multi-node processes show a high remote share.

On a machine with one node there is nothing to advise: :func:`advise` returns ``[]`` and the facts say so
in their ``notes``.

Estimates (``expected_impact``): a remote access costs ``distance ratio`` (remote/local distance from the
SLIT, 21/10 on a typical two-socket machine) times a local one, so a remote share ``r`` stretches memory
time by ``1 + r * (ratio - 1)``; moving it local saves ``r (ratio-1) / (1 + r (ratio-1))`` of memory time,
of which :data:`MEMORY_BOUND` (an assumed share of run time spent waiting on memory) is the gain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from optimizer.advice import Advice, Change, Evidence
from optimizer.placement import layout

__all__ = [
    "BIND_FILL",
    "MEMORY_BOUND",
    "MIN_PROCESS_BYTES",
    "NumaFacts",
    "NumaNodeFacts",
    "NumaProcessFacts",
    "advise",
    "cpu_list",
]

#: assumed share of a memory-heavy process's time spent waiting on memory (scales every estimate)
MEMORY_BOUND = 0.3
#: a process smaller than this is not worth an advice
MIN_PROCESS_BYTES = 64 * 1024**2
#: bind only while the process takes at most this share of what its node can hold; above it, preferred
BIND_FILL = 0.8
#: remote share above which a process is worth moving
REMOTE_SHARE_MIN = 0.2
#: node-wide cross-node share (numastat other_node) above which balancing is worth turning on
NODE_REMOTE_MIN = 0.2
_PAGE = 4096


@dataclass(frozen=True)
class NumaNodeFacts:
    """One node: its CPUs, memory (bytes), distance row and ``numastat`` counters (pages)."""

    node: int
    cpus: tuple[int, ...] = ()
    mem_total_bytes: int | None = None
    mem_free_bytes: int | None = None
    distances: tuple[int, ...] = ()
    numastat: Mapping[str, int] = field(default_factory=dict)

    @property
    def remote_share(self) -> float | None:
        """Share of this node's allocations served for processes on another node
        (``other_node / (local_node + other_node)``); None when numastat was not read."""
        local, other = self.numastat.get("local_node"), self.numastat.get("other_node")
        if local is None or other is None or local + other <= 0:
            return None
        return other / (local + other)


@dataclass(frozen=True)
class NumaProcessFacts:
    """One process: where its pages are (``pages_by_node``, from ``numa_maps`` ``N<node>=<pages>``), the
    CPUs it may run on (``Cpus_allowed_list``), the CPU it last ran on (``/proc/PID/stat`` field 39), its RSS,
    shared memory (``RssShmem``) and thread count."""

    pid: int
    name: str = ""
    pages_by_node: Mapping[int, int] = field(default_factory=dict)
    allowed_cpus: tuple[int, ...] = ()
    last_cpu: int | None = None
    rss_bytes: int = 0
    shmem_bytes: int = 0
    threads: int = 1
    cgroup: str | None = None

    @property
    def pages(self) -> int:
        return sum(self.pages_by_node.values())


@dataclass(frozen=True)
class NumaFacts:
    """What the NUMA advisor reads: nodes, ``kernel.numa_balancing`` (None: not readable), processes, and
    ``notes`` (what could not be read or why nothing can be advised)."""

    nodes: tuple[NumaNodeFacts, ...] = ()
    numa_balancing: int | None = None
    processes: tuple[NumaProcessFacts, ...] = ()
    notes: tuple[str, ...] = ()
    source: str = "/"

    def node_of_cpu(self, cpu: int | None) -> int | None:
        """The node whose CPU list holds ``cpu`` (None: unknown)."""
        for n in self.nodes:
            if cpu is not None and cpu in n.cpus:
                return n.node
        return None

    def node(self, node: int) -> NumaNodeFacts | None:
        return next((n for n in self.nodes if n.node == node), None)


def cpu_list(cpus: tuple[int, ...] | list[int] | set[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (the kernel's CPU-list form)."""
    runs: list[list[int]] = []
    for c in sorted(set(cpus)):
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _distance_ratio(facts: NumaFacts, home: int, others: list[int]) -> float:
    """Mean remote distance from ``home`` to ``others`` over the local one (2.1 for 21/10); 2.0 unknown."""
    node = facts.node(home)
    if node is None or not node.distances or home >= len(node.distances) or node.distances[home] <= 0:
        return 2.0
    far = [node.distances[o] for o in others if o < len(node.distances)]
    return (sum(far) / len(far) if far else node.distances[home]) / node.distances[home]


def _gain(remote: float, ratio: float) -> float:
    stretch = remote * max(ratio - 1.0, 0.0)
    return round(MEMORY_BOUND * stretch / (1.0 + stretch), 4)


def _home(facts: NumaFacts, p: NumaProcessFacts) -> int | None:
    """The node the process runs on: its last CPU's node, else the node holding most of its allowed CPUs."""
    node = facts.node_of_cpu(p.last_cpu)
    if node is not None:
        return node
    counts = {n.node: len(set(n.cpus) & set(p.allowed_cpus)) for n in facts.nodes}
    best = max(counts.items(), key=lambda kv: (kv[1], -kv[0]), default=(None, 0))
    return best[0] if best[1] else None


def _bound_to_one_node(facts: NumaFacts, p: NumaProcessFacts) -> bool:
    return any(p.allowed_cpus and set(p.allowed_cpus) <= set(n.cpus) for n in facts.nodes)


def _evidence(facts: NumaFacts, p: NumaProcessFacts, home: int, remote: float, ratio: float) -> tuple[Evidence, ...]:
    src = f"{facts.source.rstrip('/')}/proc/{p.pid}"
    per_node = {f"N{n}": round(pages * _PAGE / 1024**2, 1) for n, pages in sorted(p.pages_by_node.items())}
    return (
        Evidence("pages per node", per_node, "MiB", f"{src}/numa_maps"),
        Evidence("remote share of its pages", round(remote, 3), "", f"{src}/numa_maps"),
        Evidence("runs on node", home, "", f"{src}/stat (last CPU {p.last_cpu}), Cpus_allowed_list "
                 f"{cpu_list(p.allowed_cpus)}"),
        Evidence("RSS", round(p.rss_bytes / 1024**2, 1), "MiB", f"{src}/status"),
        Evidence("distance ratio remote/local", round(ratio, 2), "", f"sys/devices/system/node/node{home}/distance"),
    )


def _cpu_change(facts: NumaFacts, cpus: tuple[int, ...]) -> tuple[Change, ...]:
    """``affinity.cpus`` (+ placement) when its compact layout over the online CPUs is exactly ``cpus``."""
    online = sorted(c for n in facts.nodes for c in n.cpus)
    if cpus and online and layout(len(cpus), "compact", online, {}) == sorted(cpus):
        return (Change("affinity.cpus", len(cpus)), Change("affinity.placement", "compact"))
    return ()


def _capacity(node: NumaNodeFacts, p: NumaProcessFacts) -> int | None:
    """Bytes the node can hold for ``p``: its free memory plus what ``p`` already has there."""
    if node.mem_free_bytes is None:
        return node.mem_total_bytes
    return node.mem_free_bytes + p.pages_by_node.get(node.node, 0) * _PAGE


def _process_advice(facts: NumaFacts, p: NumaProcessFacts) -> Advice | None:
    total = p.pages
    size = max(p.rss_bytes, total * _PAGE)
    home = _home(facts, p)
    if total <= 0 or size < MIN_PROCESS_BYTES or home is None:
        return None
    node = facts.node(home)
    assert node is not None
    remote = 1.0 - p.pages_by_node.get(home, 0) / total
    spread_nodes = [n for n, pages in p.pages_by_node.items() if pages / total >= 0.1]
    others = [n.node for n in facts.nodes if n.node != home]
    ratio = _distance_ratio(facts, home, [n for n in p.pages_by_node if n != home] or others)
    capacity = _capacity(node, p)
    fits_cpu = p.threads <= max(len(node.cpus), 1)
    fill = size / capacity if capacity else math.inf
    if not fits_cpu or fill > 1.0:
        return _interleave(facts, p, spread_nodes, size)
    if remote < REMOTE_SHARE_MIN:
        return None
    ev = _evidence(facts, p, home, remote, ratio) + (
        Evidence("share of what node can hold", round(fill, 2), "", f"sys/devices/system/node/node{home}/meminfo"),)
    gain = _gain(remote, ratio)
    conf = round(min(0.85, 0.45 + 0.5 * remote), 2)
    target = f"pid:{p.pid}"
    if fill > BIND_FILL:
        return Advice(
            advisor="numa", title=f"prefer node {home} memory for pid {p.pid} ({p.name})",
            why=f"{remote:.0%} of its pages are off node {home} where it runs, but it would fill {fill:.0%} of "
                f"what node {home} can hold: prefer (not bind) so allocation falls back instead of swapping",
            changes=_cpu_change(facts, node.cpus), metric="throughput", expected_impact=round(gain * 0.7, 4),
            confidence=round(conf * 0.8, 2), risk=1.0, evidence=ev, target=target,
            manual=f"start it with numactl --cpunodebind={home} --preferred={home}; for the running process: "
                   f"migratepages {p.pid} {','.join(map(str, sorted(set(p.pages_by_node) - {home})))} {home}")
    return Advice(
        advisor="numa", title=f"bind pid {p.pid} ({p.name}) to node {home}",
        why=f"it runs on node {home} but {remote:.0%} of its memory is on other nodes (distance ratio "
            f"{ratio:.2f}); it fits node {home} (threads {p.threads} <= {len(node.cpus)} CPUs, "
            f"{fill:.0%} of its free memory)",
        changes=_cpu_change(facts, node.cpus), metric="throughput", expected_impact=gain, confidence=conf,
        risk=1.5, evidence=ev, target=target,
        manual=f"start it with numactl --cpunodebind={home} --membind={home} (or cpuset.cpus="
               f"{cpu_list(node.cpus)} cpuset.mems={home} on its cgroup: sizing.cpuset_cpus/sizing.cpuset_mems); "
               f"for the running process: taskset -a -cp {cpu_list(node.cpus)} {p.pid} && migratepages {p.pid} "
               f"{','.join(map(str, sorted(set(p.pages_by_node) - {home})))} {home}")


def _interleave(facts: NumaFacts, p: NumaProcessFacts, spread: list[int], size: int) -> Advice | None:
    """Interleave a process larger than one node whose pages are piled up on one node."""
    n_nodes = len(facts.nodes)
    total = p.pages
    top_node, top = max(p.pages_by_node.items(), key=lambda kv: kv[1])
    top_share = top / total
    even = 1.0 / n_nodes
    if top_share < even + 0.15:
        return None  # already spread about evenly
    ratio = _distance_ratio(facts, top_node, [n.node for n in facts.nodes if n.node != top_node])
    # bandwidth: the pile-up node serves top_share of the traffic, interleaving spreads it evenly
    gain = round(MEMORY_BOUND * (1.0 - even / top_share) * min(1.0, p.shmem_bytes / size + 0.5), 4)
    src = f"{facts.source.rstrip('/')}/proc/{p.pid}"
    per_node = {f"N{n}": round(pages * _PAGE / 1024**2, 1) for n, pages in sorted(p.pages_by_node.items())}
    ev = (
        Evidence("pages per node", per_node, "MiB", f"{src}/numa_maps"),
        Evidence("largest share on one node", round(top_share, 3), "", f"{src}/numa_maps (node {top_node})"),
        Evidence("RSS", round(p.rss_bytes / 1024**2, 1), "MiB", f"{src}/status"),
        Evidence("shared memory (RssShmem)", round(p.shmem_bytes / 1024**2, 1), "MiB", f"{src}/status"),
        Evidence("threads", p.threads, "", f"{src}/status"),
        Evidence("nodes it spans (>=10 % of pages)", spread, "", f"{src}/numa_maps"),
        Evidence("distance ratio remote/local", round(ratio, 2), "", "sys/devices/system/node/*/distance"),
    )
    return Advice(
        advisor="numa", title=f"interleave the memory of pid {p.pid} ({p.name}) over all nodes",
        why=f"it is larger than one node ({p.threads} threads, {size / 1024**3:.1f} GiB) and {top_share:.0%} of "
            f"its pages sit on node {top_node}: that node's memory bandwidth is its bottleneck; interleaving "
            f"spreads the traffic over {n_nodes} nodes (for throughput, at some latency)",
        metric="throughput", expected_impact=gain, confidence=0.5, risk=1.5, evidence=ev, target=f"pid:{p.pid}",
        manual="start it with numactl --interleave=all (systemd: NUMAPolicy=interleave, NUMAMask=all); a "
               "shared-memory segment created before keeps its placement until it is re-created")


def _balancing_advice(facts: NumaFacts, large: list[NumaProcessFacts]) -> Advice | None:
    bal = facts.numa_balancing
    if bal is None:
        return None
    src = "proc/sys/kernel/numa_balancing"
    unbound = [p for p in large if not _bound_to_one_node(facts, p)]
    if bal and large and not unbound:
        return Advice(
            advisor="numa", title="turn automatic NUMA balancing off (every large process is bound)",
            why="every large process is already bound to one node, so the balancer's page scanning and "
                "hinting faults only cost",
            changes=(Change("kernel.numa_balancing", 0, bal),), metric="throughput", expected_impact=0.02,
            confidence=0.6, risk=1.0,
            evidence=(Evidence("kernel.numa_balancing", bal, "", src),
                      Evidence("large processes bound to one node", [p.pid for p in large], "",
                               "proc/PID/status Cpus_allowed_list")))
    if bal:
        return None
    remote = [(p, _remote(facts, p)) for p in unbound]
    high = [(p, r) for p, r in remote if r is not None and r >= REMOTE_SHARE_MIN]
    nodes_high = [(n.node, n.remote_share) for n in facts.nodes
                  if n.remote_share is not None and n.remote_share >= NODE_REMOTE_MIN]
    if not high and not nodes_high:
        return None
    worst = max([r for _, r in high] + [s for _, s in nodes_high if s is not None])
    ev = (Evidence("kernel.numa_balancing", bal, "", src),) + tuple(
        Evidence(f"remote share of pid {p.pid} ({p.name}), not bound", round(r, 3), "", f"proc/{p.pid}/numa_maps")
        for p, r in high) + tuple(
        Evidence(f"node {n} cross-node share (other_node)", round(s or 0.0, 3), "",
                 f"sys/devices/system/node/node{n}/numastat") for n, s in nodes_high)
    return Advice(
        advisor="numa", title="turn automatic NUMA balancing on (unbound processes use remote memory)",
        why=f"processes not bound to a node access remote memory (up to {worst:.0%}); the balancer migrates "
            f"pages (and tasks) towards each other",
        changes=(Change("kernel.numa_balancing", 1, bal),), metric="throughput",
        expected_impact=round(_gain(worst, 2.0) * 0.5, 4), confidence=0.55, risk=1.0, evidence=ev)


def _remote(facts: NumaFacts, p: NumaProcessFacts) -> float | None:
    home = _home(facts, p)
    return None if home is None or p.pages <= 0 else 1.0 - p.pages_by_node.get(home, 0) / p.pages


def advise(facts: NumaFacts) -> list[Advice]:
    """NUMA recommendations for ``facts`` (best first is left to :func:`optimizer.advice.rank`).

    ``[]`` on a machine with fewer than two nodes with CPUs or memory (the facts' notes say why).
    """
    if len(facts.nodes) < 2:
        return []
    large = [p for p in facts.processes if max(p.rss_bytes, p.pages * _PAGE) >= MIN_PROCESS_BYTES and p.pages]
    out = [a for p in large if (a := _process_advice(facts, p)) is not None]
    bal = _balancing_advice(facts, large)
    if bal is not None:
        out.append(bal)
    return out
