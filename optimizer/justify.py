"""Which changes of a chosen configuration have a measured effect: ablation by re-measurement.

A study's chosen configuration ``C`` usually differs from the values found before the study (the
baseline ``B``) in every knob the search touched, also in knobs that did nothing. Before anything is
exported or applied, each changed knob ``k`` must earn its place: ``C`` and ``C`` with ``k`` put back to
its baseline value (``C - k``) are measured in the same rounds, in a shuffled order per round
(:func:`ablation_order`), so that a drift of the machine hits both alike. The effect of keeping ``k`` on a
metric is the paired difference ``(C - (C - k)) / |C - k|`` in percent, averaged over the rounds
(:func:`judge`).

Its interval: the paired differences of all knobs share one noise level per metric (the same workload,
the same windows), so their residual variance is pooled, ``df = sum(n_k - 1)`` degrees of freedom;
a Student-t interval at ``1 - alpha / (k m)`` (Bonferroni over the ``k`` knobs and ``m`` metrics judged,
so that the chance of keeping *any* knob without effect is at most ``alpha``). A metric the knobs set
exactly (the cost of a CPU quota) has no spread: its interval is the point.

A knob is **kept** when keeping it makes at least one metric better by at least ``min_effect_pct``
with an interval that excludes zero; otherwise it goes back to the value it had (it is **dropped**), with
the figures that show why. A kept knob may cost something on another metric (a CPU quota saves cost and
loses throughput): that trade-off is part of its evidence.

Pure: plain data in and out (the study code measures, see :mod:`experiments.study.justify`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

__all__ = ["Effect", "KnobEvidence", "Measurement", "ablation_order", "judge"]

#: the label of the whole chosen configuration in a round (every other label is a knob put back)
FULL = ""


@dataclass(frozen=True)
class Measurement:
    """One measured configuration in one round: ``label`` :data:`FULL`, or the knob put back."""

    round: int
    label: str
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Effect:
    """What keeping a knob does to ``metric``, in percent of the value without it, with its interval."""

    metric: str
    direction: str  # maximize | minimize
    change_pct: float
    low_pct: float
    high_pct: float
    rounds: int

    @property
    def significant(self) -> bool:
        return self.low_pct > 0 or self.high_pct < 0

    @property
    def better(self) -> bool:
        """Significantly better with the knob (higher when maximized, lower when minimized)."""
        return self.significant and ((self.change_pct > 0) == (self.direction == "maximize"))

    @property
    def worse(self) -> bool:
        return self.significant and not self.better

    def text(self) -> str:
        return f"{self.metric} {self.change_pct:+.1f} % [{self.low_pct:+.1f}, {self.high_pct:+.1f}]"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "change_pct": round(self.change_pct, 3),
                "low_pct": round(self.low_pct, 3), "high_pct": round(self.high_pct, 3), "rounds": self.rounds,
                "significant": self.significant, "better": self.better}


@dataclass(frozen=True)
class KnobEvidence:
    """One changed knob: its chosen and baseline values, its effects, kept or not, and why."""

    knob: str
    value: Any
    baseline: Any
    kept: bool
    reason: str
    effects: list[Effect] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "baseline": self.baseline, "kept": self.kept, "reason": self.reason,
                "effects": [e.as_dict() for e in self.effects]}


def ablation_order(knobs: Sequence[str], rounds: int, seed: int | None = None) -> list[tuple[int, str]]:
    """``(round, label)`` pairs to measure: per round the full configuration (:data:`FULL`) and each knob
    put back, in an order shuffled per round (a drift of the machine does not line up with one knob)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    rng = random.Random(seed)
    out = []
    for r in range(rounds):
        labels = [FULL, *knobs]
        rng.shuffle(labels)
        out += [(r, label) for label in labels]
    return out


def _paired(measurements: Sequence[Measurement], knob: str, metric: str) -> list[float]:
    """Per round where both were measured: (with - without) / |without| in percent."""
    full = {m.round: m.metrics.get(metric, math.nan) for m in measurements if m.label == FULL}
    out = []
    for m in measurements:
        if m.label != knob or m.round not in full:
            continue
        with_k, without = float(full[m.round]), float(m.metrics.get(metric, math.nan))
        if math.isfinite(with_k) and math.isfinite(without):
            if without != 0:
                out.append((with_k - without) / abs(without) * 100.0)
            elif with_k == 0:
                out.append(0.0)
    return out


def _effects(measurements: Sequence[Measurement], knobs: Sequence[str], metric: str, direction: str,
             alpha: float) -> dict[str, Effect]:
    """The effect of each knob on ``metric``, intervals from the pooled residual spread."""
    diffs = {k: _paired(measurements, k, metric) for k in knobs}
    ss = sum(sum((x - sum(d) / len(d)) ** 2 for x in d) for d in diffs.values() if d)
    df = sum(len(d) - 1 for d in diffs.values() if d)
    sd = math.sqrt(ss / df) if df > 0 else math.inf
    sd = 0.0 if sd < 1e-9 else sd  # percent units: below 1e-9 % is float rounding, not noise
    crit = float(stats.t.ppf(1 - alpha / 2, df)) if df > 0 else math.inf
    out = {}
    for k, d in diffs.items():
        if not d:
            continue
        mean = sum(d) / len(d)
        # no spread anywhere (a metric the knobs set exactly, such as a quota's cost): the interval is the point
        half = 0.0 if sd == 0 else crit * sd / math.sqrt(len(d))
        out[k] = Effect(metric, direction, mean, mean - half, mean + half, len(d))
    return out


def _reason(kept: bool, effects: list[Effect], min_effect_pct: float) -> str:
    better = [e for e in effects if e.better and abs(e.change_pct) >= min_effect_pct]
    worse = [e for e in effects if e.worse]
    if kept:
        text = "kept: " + "; ".join(e.text() for e in better)
        if worse:
            text += " (at the price of " + "; ".join(e.text() for e in worse) + ")"
        return text
    if worse:
        return "put back: only worse with it: " + "; ".join(e.text() for e in worse)
    shown = "; ".join(e.text() for e in effects) or "no measurement"
    return f"put back: no effect of at least {min_effect_pct:g} % beyond the noise: {shown}"


def judge(measurements: Sequence[Measurement], changes: Mapping[str, tuple[Any, Any]],
          directions: Mapping[str, str], *, alpha: float = 0.05, min_effect_pct: float = 1.0) -> list[KnobEvidence]:
    """Kept or put back, per changed knob, from the ablation ``measurements``.

    Args:
        measurements: the rounds (see :func:`ablation_order`); each metric a finite number when measured.
        changes: knob -> (chosen value, baseline value), the knobs the chosen configuration changes.
        directions: metric -> ``maximize`` | ``minimize``: the metrics that can justify a knob.
        alpha: the chance of keeping any knob that has no effect (split over the knobs and metrics).
        min_effect_pct: the smallest improvement that counts, in percent.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    bad = {m: d for m, d in directions.items() if d not in ("maximize", "minimize")}
    if bad:
        raise ValueError(f"directions must be maximize or minimize, got {bad}")
    knobs = list(changes)
    tests = max(1, len(directions) * len(knobs))  # Bonferroni over every (knob, metric): family-wise alpha
    per_metric = {m: _effects(measurements, knobs, m, d, alpha / tests) for m, d in directions.items()}
    out = []
    for k in knobs:
        effects = [per_metric[m][k] for m in directions if k in per_metric[m]]
        kept = any(e.better and abs(e.change_pct) >= min_effect_pct for e in effects)
        value, base = changes[k]
        out.append(KnobEvidence(k, value, base, kept, _reason(kept, effects, min_effect_pct), effects))
    return out
