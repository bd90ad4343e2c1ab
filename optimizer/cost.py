"""Cost model: unit prices x sizing. Plain numbers in, dollars out."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Sizing", "cost_per_1k_requests", "hourly_cost"]


@dataclass(frozen=True)
class Sizing:
    """What a workload is allowed to use, the basis of what it costs."""

    vcpus: float
    memory_gib: float

    def __post_init__(self) -> None:
        if self.vcpus <= 0 or self.memory_gib < 0:
            raise ValueError(f"sizing needs vcpus > 0 and memory_gib >= 0, got {self}")


def hourly_cost(sizing: Sizing, *, cpu_usd_per_vcpu_hour: float, memory_usd_per_gib_hour: float) -> float:
    """Dollars per hour of ``sizing`` at the given unit prices (OpenCost's formula)."""
    return sizing.vcpus * cpu_usd_per_vcpu_hour + sizing.memory_gib * memory_usd_per_gib_hour


def cost_per_1k_requests(usd_per_hour: float, throughput_rps: float) -> float:
    """Dollars per 1,000 requests at a sustained throughput; inf when nothing is served."""
    if throughput_rps <= 0:
        return float("inf")
    return usd_per_hour / (throughput_rps * 3.6)
