"""Replay evaluation of the recommender against fixed rules on the same split. Pure.

For each series, the first ``train_frac`` of its samples (by time: ``floor(train_frac * n)``, at least
one) are all the recommender and the rules may read; the rest is the test part, scored per resource:

* **under-provisioning** -- the share of test samples whose usage is above the recommended size, in %.
* **unused capacity** -- the share of the recommended capacity-time the test samples left unused:
  ``sum(max(rec - usage, 0)) / (rec * n_test)`` per series, in %. Pooled over a set of series both
  figures weigh every test sample alike: under = samples above / all test samples; unused = unused
  capacity-time / provisioned capacity-time (a 16-core VM counts 16 times a 1-core one).

Fixed rules (:data:`RULES`) on the same training part: ``p90+15%`` (VPA's target), ``p95+20%``,
``p99+20%``, ``max+10%``. The recommender is **dominated** on a resource when some rule has both less
under-provisioning and less unused capacity (both strictly); *weakly* dominated when a rule has as little
under-provisioning (a tie, typically both 0 %) and less unused capacity. Series too short to split (fewer than
two samples: no test part) are recommended but not scored; ``insufficient-data`` series are scored
with their best guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimizer.rightsizing.model import RESOURCES, Recommendation, UsageSeries
from optimizer.rightsizing.recommend import recommend

__all__ = ["RULES", "ReplayResult", "Score", "VmReplay", "fixed_rule", "replay", "score", "split", "summarize"]

#: name -> (percentile, or None for the max; multiplicative margin)
RULES: dict[str, tuple[float | None, float]] = {
    "p90+15%": (90.0, 1.15),
    "p95+20%": (95.0, 1.20),
    "p99+20%": (99.0, 1.20),
    "max+10%": (None, 1.10),
}


def split(series: UsageSeries, train_frac: float) -> int:
    """How many leading samples are training: ``floor(train_frac * n)``, at least 1 (0 for an empty series).

    Raises:
        ValueError: ``train_frac`` not in (0, 1).
    """
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"train_frac must be in (0, 1), got {train_frac}")
    n = len(series)
    return 0 if n == 0 else max(1, math.floor(train_frac * n))


def fixed_rule(values: np.ndarray, rule: str) -> float:
    """The size a fixed rule gives from training ``values`` (0 for none).

    Raises:
        KeyError: an unknown rule.
    """
    q, margin = RULES[rule]
    if len(values) == 0:
        return 0.0
    base = float(values.max()) if q is None else float(np.percentile(values, q))
    return base * margin


@dataclass(frozen=True)
class Score:
    """Test-part figures of one size: samples above it, its unused capacity-time, and the totals."""

    above: int = 0
    n: int = 0
    unused: float = 0.0  # capacity-time left unused (size units x samples)
    provisioned: float = 0.0  # size x n

    def __add__(self, other: Score) -> Score:
        return Score(self.above + other.above, self.n + other.n, self.unused + other.unused,
                     self.provisioned + other.provisioned)

    @property
    def under_pct(self) -> float:
        return 100.0 * self.above / self.n if self.n else 0.0

    @property
    def unused_pct(self) -> float:
        return 100.0 * self.unused / self.provisioned if self.provisioned > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"under_provisioned_pct": round(self.under_pct, 3), "unused_pct": round(self.unused_pct, 3)}


def score(size: float, test: np.ndarray) -> Score:
    """How ``size`` fares on the ``test`` usage values."""
    return Score(above=int(np.count_nonzero(test > size)), n=len(test),
                 unused=float(np.clip(size - test, 0.0, None).sum()), provisioned=float(size) * len(test))


@dataclass(frozen=True)
class VmReplay:
    """One series' replay: its recommendation (from the training part), train/test sizes, and per resource
    the scores of the recommender (``"recommender"``) and of each rule, with each rule's size (both empty
    when there is no test part)."""

    target: str
    n_train: int
    n_test: int
    recommendation: Recommendation
    scores: dict[str, dict[str, Score]] = field(default_factory=dict)
    rule_sizes: dict[str, dict[str, float]] = field(default_factory=dict)


def _one(series: UsageSeries, train_frac: float, profile: str,
         rec_fn: Callable[..., Recommendation]) -> VmReplay:
    k = split(series, train_frac)
    n_test = len(series) - k
    rec = rec_fn(series.head(k), profile=profile)
    if n_test == 0:
        return VmReplay(series.target, k, n_test, rec)
    scores: dict[str, dict[str, Score]] = {}
    sizes: dict[str, dict[str, float]] = {}
    for res in RESOURCES:
        values = series.cpu_cores if res == "cpu" else series.mem_gib
        tr, te = values[:k], values[k:]
        size = rec.cpu.target if res == "cpu" else rec.memory.target
        scores[res] = {"recommender": score(size, te)}
        sizes[res] = {}
        for rule in RULES:
            sizes[res][rule] = fixed_rule(tr, rule)
            scores[res][rule] = score(sizes[res][rule], te)
    return VmReplay(series.target, k, n_test, rec, scores, sizes)


@dataclass(frozen=True)
class ReplayResult:
    """Every series' :class:`VmReplay` and the pooled :meth:`summary`."""

    vms: list[VmReplay]
    train_frac: float
    profile: str

    def summary(self) -> dict[str, Any]:
        return summarize(self.vms, train_frac=self.train_frac, profile=self.profile)


def replay(series: Mapping[str, UsageSeries], *, train_frac: float = 0.5, profile: str = "balanced",
           rec_fn: Callable[..., Recommendation] = recommend) -> ReplayResult:
    """Recommend from each series' training part and score it and the fixed rules on the rest.

    ``rec_fn(train_series, profile=...)`` is the recommender (default :func:`recommend`; the benchmark
    passes variants).

    Raises:
        ValueError: ``train_frac`` outside (0, 1) or an unknown profile.
    """
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"train_frac must be in (0, 1), got {train_frac}")
    return ReplayResult([_one(s, train_frac, profile, rec_fn) for s in series.values()], train_frac, profile)


def summarize(vms: list[VmReplay], *, train_frac: float, profile: str) -> dict[str, Any]:
    """Pooled figures per resource: the recommender's and each rule's under-provisioning and unused capacity
    (%), ``dominated_by``: the rules with both less (empty when the recommender is never dominated), and
    ``weakly_dominated_by``: the rules with no more under-provisioning and less unused capacity."""
    scored = [v for v in vms if v.scores]
    out: dict[str, Any] = {
        "vms": len(vms), "scored": len(scored), "train_frac": train_frac, "profile": profile,
        "insufficient_data": sum(1 for v in scored if v.recommendation.finding == "insufficient-data"),
        "test_samples": sum(v.n_test for v in scored),
        "definitions": {
            "under_provisioned_pct": "test samples whose usage is above the recommended size, % of test samples",
            "unused_pct": "sum over test samples of max(size - usage, 0), % of size x test samples "
                          "(pooled: capacity-time)",
            "dominated_by": "fixed rules with both less under-provisioning and less unused capacity",
            "weakly_dominated_by": "fixed rules with no more under-provisioning and less unused capacity "
                                   "(ties at 0 % under-provisioning land here)",
        },
    }
    for res in RESOURCES:
        total: dict[str, Score] = {}
        for v in scored:
            for name, s in v.scores[res].items():
                total[name] = total.get(name, Score()) + s
        mine = total.get("recommender", Score())
        rules = {name: total.get(name, Score()) for name in RULES}
        out[res] = {
            "recommender": mine.to_dict(),
            "rules": {name: s.to_dict() for name, s in rules.items()},
            "dominated_by": [name for name, s in rules.items()
                             if s.under_pct < mine.under_pct and s.unused_pct < mine.unused_pct],
            "weakly_dominated_by": [name for name, s in rules.items()
                                    if s.under_pct <= mine.under_pct and s.unused_pct < mine.unused_pct],
        }
    return out
