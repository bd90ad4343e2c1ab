"""The shared vocabulary of right-sizing: a usage history in, a recommendation out. Plain data.

* :class:`UsageSeries` -- one target's history: sample times, CPU cores used, memory GiB used
  (the working set), optional per-sample capacity, throttling and OOM events. Built by the
  collectors (live observation, CSV traces, Prometheus) and by tests.
* :class:`ResourceRecommendation` -- the recommended size of one resource (``cpu`` in cores,
  ``memory`` in GiB) with the statistics behind it.
* :class:`Recommendation` -- both resources of one target, its finding in AWS Compute Optimizer's
  vocabulary (:data:`FINDINGS`), confidence, performance risk and data sufficiency.

Profiles (:data:`PROFILES`): ``savings`` (smallest size that is still safe), ``balanced`` (the
default), ``reliability`` (more headroom). Findings: ``over-provisioned`` (the current size is more
than the recommendation by a clear margin), ``under-provisioned`` (less than it), ``optimized``,
``insufficient-data`` (not enough history to recommend anything).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FINDINGS",
    "PROFILES",
    "RESOURCES",
    "RISK_LABELS",
    "Recommendation",
    "ResourceRecommendation",
    "UsageSeries",
    "risk_label",
]

PROFILES = ("savings", "balanced", "reliability")
FINDINGS = ("over-provisioned", "under-provisioned", "optimized", "insufficient-data")
RESOURCES = ("cpu", "memory")
#: Compute Optimizer's performance-risk scale: a score in [0, 4] is read as the label of its floor
RISK_LABELS = ("very-low", "low", "medium", "high", "very-high")


def risk_label(score: float) -> str:
    """The label of a performance-risk score in [0, 4] (``very-low`` .. ``very-high``)."""
    if not math.isfinite(score):
        return RISK_LABELS[-1]
    return RISK_LABELS[min(4, max(0, int(score)))]


def _array(name: str, value: Any, n: int | None, *, allow_nan: bool = False) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} values, the series has {n} sample times")
    if not allow_nan and not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    finite = a[np.isfinite(a)]
    if (finite < 0).any():
        raise ValueError(f"{name} holds negative values (min {finite.min():g}); usage and capacity are >= 0")
    return a


@dataclass(frozen=True, eq=False)
class UsageSeries:
    """One target's usage history, sorted by time.

    Attributes:
        target: its name (``cgroup:/PATH``, ``unit:NAME.service``, ``pid:N``, or a trace's ``vm_id``).
        t: sample times, Unix seconds, strictly increasing.
        cpu_cores: CPU cores used over the interval ending at each sample (>= 0).
        mem_gib: memory used at each sample, GiB (the working set: usage minus inactive file cache).
        cpu_capacity / mem_capacity: the provisioned size at each sample (NaN where unknown), or None.
        throttled_ratio: share of CFS periods throttled in each interval (0..1, NaN unknown), or None.
        oom_times: Unix seconds of OOM kills seen in the target.

    Raises:
        ValueError: arrays of different lengths, times not strictly increasing, negative, NaN or
            infinite usage (capacity and throttling may be NaN: unknown).
    """

    target: str
    t: np.ndarray
    cpu_cores: np.ndarray
    mem_gib: np.ndarray
    cpu_capacity: np.ndarray | None = None
    mem_capacity: np.ndarray | None = None
    throttled_ratio: np.ndarray | None = None
    oom_times: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        t = _array("t", self.t, None)
        n = len(t)
        if n > 1 and not (np.diff(t) > 0).all():
            raise ValueError(f"{self.target}: sample times must be strictly increasing (found a repeat or a step back)")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "cpu_cores", _array("cpu_cores", self.cpu_cores, n))
        object.__setattr__(self, "mem_gib", _array("mem_gib", self.mem_gib, n))
        for name in ("cpu_capacity", "mem_capacity", "throttled_ratio"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, _array(name, v, n, allow_nan=True))
        object.__setattr__(self, "oom_times", tuple(float(x) for x in self.oom_times))

    def __len__(self) -> int:
        return len(self.t)

    @property
    def span_hours(self) -> float:
        """Hours from the first to the last sample (0 for fewer than two)."""
        return float(self.t[-1] - self.t[0]) / 3600.0 if len(self.t) > 1 else 0.0

    @property
    def interval_s(self) -> float:
        """The median time between samples (NaN for fewer than two)."""
        return float(np.median(np.diff(self.t))) if len(self.t) > 1 else float("nan")

    def current(self, resource: str) -> float | None:
        """The last known provisioned size of ``resource`` (``cpu`` cores, ``memory`` GiB), None if unknown."""
        cap = self.cpu_capacity if resource == "cpu" else self.mem_capacity
        if cap is None:
            return None
        known = cap[np.isfinite(cap) & (cap > 0)]
        return float(known[-1]) if len(known) else None

    def head(self, n: int) -> UsageSeries:
        """The first ``n`` samples (the training part of a replay); OOM events up to the last kept sample."""
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[:n]

        last = float(self.t[n - 1]) if n > 0 else -math.inf
        return UsageSeries(
            target=self.target, t=self.t[:n], cpu_cores=self.cpu_cores[:n], mem_gib=self.mem_gib[:n],
            cpu_capacity=cut(self.cpu_capacity), mem_capacity=cut(self.mem_capacity),
            throttled_ratio=cut(self.throttled_ratio), oom_times=tuple(x for x in self.oom_times if x <= last),
        )


@dataclass(frozen=True)
class ResourceRecommendation:
    """The recommended size of one resource of one target.

    ``target`` is what to provision (cores or GiB); ``lower``/``upper`` bound the range in which the
    current size counts as ``optimized``; ``observed`` holds the statistics it came from (``p50``,
    ``p90``, ``p95``, ``p99``, ``max``, and for memory ``peak``); ``margin`` is the multiplicative
    headroom applied; ``trend_per_day`` the robust slope (units per day); ``seasonal`` whether a
    daily or weekly cycle was found; ``confidence`` in [0, 1]; ``risk`` the performance-risk score in
    [0, 4] of running at ``current`` (None when the current size is unknown: then the risk of the
    recommendation itself).
    """

    resource: str
    target: float
    lower: float
    upper: float
    current: float | None
    finding: str
    observed: dict[str, float] = field(default_factory=dict)
    margin: float = 1.0
    trend_per_day: float = 0.0
    seasonal: bool = False
    confidence: float = 0.0
    risk: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    """Both resources of one target, under one profile.

    ``finding`` is the target's overall finding (``under-provisioned`` when either resource is,
    else ``over-provisioned`` when either is, else ``optimized``; ``insufficient-data`` when the
    history is too short -- then ``needs_hours`` says how much more is needed and the sizes are
    the best guess so far). ``risk`` is the larger of the two resources' risks; ``reasons`` are
    short sentences a person reads ("memory: p99 9.1 GiB + 20 % margin; peak 9.8 GiB").
    """

    target: str
    profile: str
    cpu: ResourceRecommendation
    memory: ResourceRecommendation
    finding: str
    confidence: float
    risk: float
    history_hours: float
    needs_hours: float = 0.0
    reasons: tuple[str, ...] = ()

    @property
    def risk_label(self) -> str:
        return risk_label(self.risk)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["risk_label"] = self.risk_label
        d["reasons"] = list(self.reasons)
        return d
