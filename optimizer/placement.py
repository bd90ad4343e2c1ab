"""CPU placement layouts: which CPUs a count of CPUs means, on a topology given as plain data.

Pure planning (no I/O): the topology is a mapping CPU -> ``(package, core)``
(``collectors.topology.Topology.core_map()`` reads it); a CPU missing from it
counts as its own core on package 0. ``actuators.affinity`` asks :func:`layout`
for the mask it writes and :func:`placement_of` for the placement it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["PLACEMENTS", "layout", "placement_of"]

#: how a CPU count becomes a CPU list (see :func:`layout`)
PLACEMENTS = ("compact", "spread", "smt-siblings")

Topology = Mapping[int, tuple[int, int]]


def layout(n: int, placement: str, allowed: Sequence[int], topology: Topology) -> list[int]:
    """The ``n`` CPUs of ``allowed`` that ``placement`` picks, sorted.

    * ``compact``: the lowest-numbered CPUs.
    * ``smt-siblings``: whole cores first, both hardware threads of a core
      together (shares L1/L2), cores in package order.
    * ``spread``: one thread per core, round-robin over packages (more cache
      and memory bandwidth), second threads only once every core has one.

    Raises:
        ValueError: unknown placement or ``n`` outside 1..len(allowed).
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; allowed: {', '.join(PLACEMENTS)}")
    if not 1 <= n <= len(allowed):
        raise ValueError(f"{n} CPUs asked, {len(allowed)} allowed")
    cpus = sorted(allowed)
    if placement == "compact":
        return cpus[:n]
    topo = {c: topology.get(c, (0, c)) for c in cpus}
    if placement == "smt-siblings":
        return sorted(sorted(cpus, key=lambda c: (topo[c], c))[:n])
    by_core: dict[tuple[int, int], list[int]] = {}
    for c in cpus:
        by_core.setdefault(topo[c], []).append(c)
    rank = {}
    for members in by_core.values():  # thread index within its core
        for i, c in enumerate(sorted(members)):
            rank[c] = i
    packages = sorted({p for p, _ in topo.values()})
    core_index = {}
    for p in packages:  # the k-th core of each package
        for k, core in enumerate(sorted(core for core in by_core if core[0] == p)):
            core_index[core] = k
    return sorted(sorted(cpus, key=lambda c: (rank[c], core_index[topo[c]], packages.index(topo[c][0]), c))[:n])


def placement_of(mask: Sequence[int], allowed: Sequence[int], topology: Topology) -> str:
    """The first placement of :data:`PLACEMENTS` that lays ``len(mask)`` CPUs out as ``mask``; else ``custom``.

    Raises:
        ValueError: ``mask`` is empty.
    """
    for p in PLACEMENTS:
        if len(mask) <= len(allowed) and layout(len(mask), p, allowed, topology) == sorted(mask):
            return p
    return "custom"
