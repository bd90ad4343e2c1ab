"""Instance-type planning: what a resize changes and what it costs. Plain data in and out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["HOURS_PER_MONTH", "InstanceLike", "ResizePlan", "cheapest_fitting", "plan_resize"]

#: the cloud billing convention (365 * 24 / 12)
HOURS_PER_MONTH = 730.0


class InstanceLike(Protocol):
    """What a resize plan reads of an instance type (read-only: a frozen catalog row satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def vcpus(self) -> int: ...
    @property
    def memory_gib(self) -> float: ...
    @property
    def usd_per_hour(self) -> float: ...
    @property
    def arch(self) -> str: ...


@dataclass(frozen=True)
class ResizePlan:
    """From ``current`` to ``target``: the size and price deltas (positive = more)."""

    current: str
    target: str
    vcpus_delta: int
    memory_gib_delta: float
    usd_per_hour_delta: float
    usd_per_month_delta: float
    arch_change: bool


def plan_resize(current: InstanceLike, target: InstanceLike) -> ResizePlan:
    """The plan of moving a workload from ``current`` to ``target``."""
    dh = target.usd_per_hour - current.usd_per_hour
    return ResizePlan(
        current=current.name,
        target=target.name,
        vcpus_delta=target.vcpus - current.vcpus,
        memory_gib_delta=target.memory_gib - current.memory_gib,
        usd_per_hour_delta=dh,
        usd_per_month_delta=dh * HOURS_PER_MONTH,
        arch_change=target.arch != current.arch,
    )


def cheapest_fitting(
    types: Iterable[InstanceLike], *, vcpus: float, memory_gib: float, arch: str | None = None
) -> InstanceLike | None:
    """The cheapest type with at least ``vcpus`` and ``memory_gib`` (and ``arch``), None if none fits.

    Ties go to fewer vCPUs, then less memory, then the name, so the answer is stable.
    """
    fits = [t for t in types if t.vcpus >= vcpus and t.memory_gib >= memory_gib and (arch is None or t.arch == arch)]
    if not fits:
        return None
    return min(fits, key=lambda t: (t.usd_per_hour, t.vcpus, t.memory_gib, t.name))
