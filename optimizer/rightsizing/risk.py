"""Performance risk of running a usage history at a given size, on Compute Optimizer's 0..4 scale.

The score is the larger of a CPU and a memory score (labels: :data:`model.RISK_LABELS`, read at
the floor: 0 very-low, 1 low, 2 medium, 3 high, 4 very-high):

* **CPU** -- no sample above the size: 0..1 as the p99 utilisation rises from
  :data:`CPU_COMFORT` to 100 % (no headroom left is "low", not "medium": CPU over the size is
  slowed, not killed). Samples above the size: 1 + 2 x (their share / :data:`CPU_SHARE_HIGH`,
  capped at 1) + (their mean excess over the size / :data:`CPU_EXCESS_HIGH`, capped at 1).
  A sample throttled at a capacity at or above the size counts as above it (its demand exceeded
  that capacity, so it exceeds a size no larger).
* **Memory** -- any sample above the size is an OOM kill: 3 + (share / :data:`MEM_SHARE_VERY_HIGH`,
  capped at 1); an OOM kill recorded while the capacity was at or above the size is at least 3. No
  sample above: 0..2 as the peak rises from :data:`MEM_COMFORT` of the size to the size.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from optimizer.rightsizing.model import UsageSeries

__all__ = [
    "CPU_COMFORT",
    "CPU_EXCESS_HIGH",
    "CPU_SHARE_HIGH",
    "MEM_COMFORT",
    "MEM_SHARE_VERY_HIGH",
    "THROTTLED",
    "risk_from_stats",
    "size_risk",
]

#: p99 CPU utilisation below which the CPU score is 0
CPU_COMFORT = 0.7
#: share of samples above the size at which the share part of the CPU score is full (5 %, as AWS's p95)
CPU_SHARE_HIGH = 0.05
#: mean relative excess over the size at which the excess part of the CPU score is full
CPU_EXCESS_HIGH = 0.5
#: peak memory / size below which the memory score is 0
MEM_COMFORT = 0.8
#: share of samples above the memory size at which the score is 4 (1 %)
MEM_SHARE_VERY_HIGH = 0.01
#: a sample whose throttled share of CFS periods is above this was limited by its quota
THROTTLED = 0.1


def _cpu_score(util_p99: float, share_above: float, mean_excess: float) -> float:
    if share_above <= 0.0:
        return float(np.clip((util_p99 - CPU_COMFORT) / (1.0 - CPU_COMFORT), 0.0, 1.0))
    return 1.0 + 2.0 * min(1.0, share_above / CPU_SHARE_HIGH) + min(1.0, mean_excess / CPU_EXCESS_HIGH)


def _mem_score(peak_ratio: float, share_above: float) -> float:
    if share_above > 0.0:
        return 3.0 + min(1.0, share_above / MEM_SHARE_VERY_HIGH)
    return float(np.clip((peak_ratio - MEM_COMFORT) / (1.0 - MEM_COMFORT), 0.0, 1.0)) * 2.0


def _throttled_mask(usage: UsageSeries, cpu_cores: float) -> np.ndarray:
    """Samples throttled at a capacity at least ``cpu_cores`` (their demand was above that size)."""
    if usage.throttled_ratio is None:
        return np.zeros(len(usage), dtype=bool)
    thr = np.nan_to_num(usage.throttled_ratio, nan=0.0) > THROTTLED
    # a throttled sample ran at its quota: where the capacity is unknown, its usage stands for it
    proxy = usage.cpu_cores / 0.95
    cap = proxy if usage.cpu_capacity is None else np.where(np.isfinite(usage.cpu_capacity), usage.cpu_capacity, proxy)
    return thr & (cap >= cpu_cores * (1 - 1e-9))


def _oom_at_or_below(usage: UsageSeries, mem_gib: float) -> bool:
    """An OOM kill recorded while the memory capacity was at or above ``mem_gib`` (unknown: the peak)."""
    if not usage.oom_times:
        return False
    if usage.mem_capacity is None:
        return bool(mem_gib <= float(np.max(usage.mem_gib)) * (1 + 1e-9)) if len(usage) else True
    for when in usage.oom_times:
        i = int(np.searchsorted(usage.t, when, side="right")) - 1
        cap = usage.mem_capacity[max(0, min(i, len(usage) - 1))] if len(usage) else np.nan
        if not np.isfinite(cap) or cap >= mem_gib * (1 - 1e-9):
            return True
    return False


def size_risk(usage: UsageSeries, cpu_cores: float, mem_gib: float) -> float:
    """The performance risk, in [0, 4], of running ``usage`` at ``cpu_cores`` and ``mem_gib``.

    Raises:
        ValueError: an empty series, or a size that is not > 0.
    """
    if len(usage) == 0:
        raise ValueError(f"{usage.target}: no samples, so no risk can be scored")
    if not (cpu_cores > 0 and mem_gib > 0):
        raise ValueError(f"a size needs cpu_cores > 0 and mem_gib > 0, got {cpu_cores}, {mem_gib}")
    cpu = usage.cpu_cores
    above = (cpu > cpu_cores * (1 + 1e-9)) | _throttled_mask(usage, cpu_cores)
    excess = np.maximum(cpu[above] - cpu_cores, 0.0) / cpu_cores
    cpu_s = _cpu_score(float(np.percentile(cpu, 99)) / cpu_cores, float(above.mean()),
                       float(excess.mean()) if len(excess) else 0.0)
    mem = usage.mem_gib
    mem_share = float((mem > mem_gib * (1 + 1e-9)).mean())
    mem_s = _mem_score(float(mem.max()) / mem_gib, mem_share)
    if _oom_at_or_below(usage, mem_gib):
        mem_s = max(mem_s, 3.0)
    return float(min(4.0, max(cpu_s, mem_s)))


def _share_above(stats: Mapping[str, float], size: float) -> tuple[float, float]:
    """Share of samples above ``size`` and the p99, read off a piecewise-linear CDF of the percentiles."""
    points = [(q, stats[k]) for q, k in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99"), (1.0, "max"))
              if k in stats and np.isfinite(stats[k])]
    if not points:
        return 0.0, 0.0
    qs = np.array([0.0] + [q for q, _ in points])
    vs = np.array([0.0] + [v for _, v in points])
    vs = np.maximum.accumulate(vs)
    p99 = float(np.interp(0.99, qs, vs))
    if size >= vs[-1]:
        return 0.0, p99
    cdf = float(np.interp(size, vs, qs)) if size > vs[0] else 0.0
    return 1.0 - cdf, p99


def risk_from_stats(cpu_stats: Mapping[str, float], mem_stats: Mapping[str, float],
                    cpu_cores: float, mem_gib: float) -> float:
    """The risk of a size from a recommendation's percentile statistics (``p50``..``max``, ``peak``).

    The same scale as :func:`size_risk`, when only the observed percentiles are at hand: the share
    above a size is interpolated between them, the mean excess taken as half the excess of the
    maximum (or p99), memory above the size as an OOM. An approximation.

    Raises:
        ValueError: a size that is not > 0.
    """
    if not (cpu_cores > 0 and mem_gib > 0):
        raise ValueError(f"a size needs cpu_cores > 0 and mem_gib > 0, got {cpu_cores}, {mem_gib}")
    share, p99 = _share_above(cpu_stats, cpu_cores)
    top = max((v for k, v in cpu_stats.items() if k in ("p99", "max") and np.isfinite(v)), default=0.0)
    excess = max(0.0, top - cpu_cores) / cpu_cores / 2.0
    cpu_s = _cpu_score(p99 / cpu_cores, share, excess)
    mem_peak = max((v for k, v in mem_stats.items() if k in ("max", "peak") and np.isfinite(v)), default=0.0)
    mshare, _ = _share_above(mem_stats, mem_gib)
    if mem_peak > mem_gib * (1 + 1e-9):
        mshare = max(mshare, 1e-6)
    return float(min(4.0, max(cpu_s, _mem_score(mem_peak / mem_gib, mshare))))
