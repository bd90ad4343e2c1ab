"""Keep or roll back a change: a decision from before/after measurements that respects the noise.

Pure (no I/O). The validated apply (:mod:`experiments.validate`) measures the workload in windows
before and after a change (interleaved A/B/A/B where it can) and asks :func:`decide`; the
decision-quality benchmark (``benchmarks/decision_quality.py``) asks the same function on real
measured noise with known injected effects.

Each guard is a metric, its good direction and a limit: the worst relative change allowed
(``-0.10``: at most 10 % worse). Per guard the relative change of the median (signed so that
positive is better) gets a bootstrap confidence interval, a Mann–Whitney p-value and Cliff's delta:

* ``worse``: the whole interval is below the limit (worse than allowed, with confidence);
* ``ok``: the whole interval is above the limit (shown not to be worse than allowed);
* ``unclear``: the interval straddles the limit (the caller extends the window, then rolls back).

The decision is ``roll_back`` when any guard is ``worse``, ``keep`` when every guard is ``ok``,
``inconclusive`` otherwise: a change is never kept unless it is shown safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["DECISIONS", "Decision", "Guard", "MetricVerdict", "PairMeasure", "decide", "parse_guard", "sequential"]

#: what :func:`decide` may answer
DECISIONS = ("keep", "roll_back", "inconclusive")

Direction = Literal["maximize", "minimize"]

_GUARD = re.compile(r"^(?P<metric>[A-Za-z_][A-Za-z0-9_.]*):(?P<limit>[+-]?\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class Guard:
    """``metric`` may get at most ``-limit`` worse (relative; ``limit`` <= 0) in its ``direction``."""

    metric: str
    direction: Direction
    limit: float = -0.10

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"guard {self.metric}: direction must be maximize or minimize, got {self.direction!r}")
        if not (-1.0 < self.limit <= 0.0):
            raise ValueError(f"guard {self.metric}: the limit must be in (-100 %, 0 %], got {self.limit:.1%}")


def parse_guard(text: str) -> tuple[str, float]:
    """``METRIC:-10%`` -> ``("METRIC", -0.10)`` (the direction comes from what the metric is).

    Raises:
        ValueError: not ``METRIC:-N%`` with N in [0, 100).
    """
    m = _GUARD.match(text.strip())
    if not m:
        raise ValueError(f"guard {text!r}: expected METRIC:-N% (e.g. p95_latency_ms:-10%)")
    limit = float(m["limit"]) / 100.0
    if not -1.0 < limit <= 0.0:
        raise ValueError(f"guard {text!r}: the limit must be between -100% (exclusive) and 0%")
    return m["metric"], limit


@dataclass(frozen=True)
class MetricVerdict:
    """One guard's figures: medians and intervals before and after, the relative change (positive =
    better) with its interval, the Mann–Whitney p-value, Cliff's delta (positive = after is better)."""

    metric: str
    direction: str
    limit: float
    before: float
    before_ci: tuple[float, float]
    after: float
    after_ci: tuple[float, float]
    n_before: int
    n_after: int
    change: float
    change_ci: tuple[float, float]
    p_value: float
    effect_size: float
    verdict: str


@dataclass(frozen=True)
class Decision:
    """``decision`` (one of :data:`DECISIONS`), the ``reason`` in one sentence, and every guard's figures."""

    decision: str
    reason: str
    metrics: tuple[MetricVerdict, ...]
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(xs: Sequence[float]) -> np.ndarray:
    arr = np.asarray(list(xs), dtype=float)
    return arr[np.isfinite(arr)]


def _boot_medians(x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.median(rng.choice(x, size=(n, x.size), replace=True), axis=1)


def _cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """P(b > a) - P(b < a)."""
    diff = b[:, None] - a[None, :]
    return float((np.sum(diff > 0) - np.sum(diff < 0)) / diff.size)


def _mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import mannwhitneyu

    if np.all(a == a[0]) and np.all(b == b[0]) and a[0] == b[0]:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _verdict(guard: Guard, before: np.ndarray, after: np.ndarray, *, confidence: float, resamples: int,
             rng: np.random.Generator) -> MetricVerdict:
    sign = 1.0 if guard.direction == "maximize" else -1.0
    mb, ma = float(np.median(before)), float(np.median(after))
    bb, ba = _boot_medians(before, rng, resamples), _boot_medians(after, rng, resamples)
    alpha = (1.0 - confidence) / 2.0
    scale = abs(mb) if mb != 0 else 1.0
    rel = sign * (ba - bb) / np.where(bb != 0, np.abs(bb), scale)
    lo, hi = (float(v) for v in np.quantile(rel, [alpha, 1.0 - alpha]))
    change = sign * (ma - mb) / scale
    verdict = "worse" if hi < guard.limit else "ok" if lo >= guard.limit else "unclear"
    return MetricVerdict(
        metric=guard.metric, direction=guard.direction, limit=guard.limit,
        before=mb, before_ci=tuple(float(v) for v in np.quantile(bb, [alpha, 1 - alpha])),  # type: ignore[arg-type]
        after=ma, after_ci=tuple(float(v) for v in np.quantile(ba, [alpha, 1 - alpha])),  # type: ignore[arg-type]
        n_before=int(before.size), n_after=int(after.size), change=change, change_ci=(lo, hi),
        p_value=_mann_whitney(before, after), effect_size=sign * _cliffs_delta(before, after), verdict=verdict)


def decide(before: Mapping[str, Sequence[float]], after: Mapping[str, Sequence[float]], guards: Sequence[Guard], *,
           confidence: float = 0.95, resamples: int = 2000, min_samples: int = 3, seed: int = 0) -> Decision:
    """Keep, roll back or say it cannot tell yet (see the module docstring).

    ``before`` and ``after`` map a metric to its per-window values. A guard whose metric has fewer
    than ``min_samples`` finite values on either side makes the decision ``inconclusive``.

    Raises:
        ValueError: no guards, or ``confidence`` outside (0, 1).
    """
    if not guards:
        raise ValueError("decide needs at least one guard")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    verdicts: list[MetricVerdict] = []
    missing: list[str] = []
    for g in guards:
        b, a = _clean(before.get(g.metric, ())), _clean(after.get(g.metric, ()))
        if b.size < min_samples or a.size < min_samples:
            missing.append(f"{g.metric} ({b.size} before, {a.size} after; need {min_samples} each)")
            continue
        verdicts.append(_verdict(g, b, a, confidence=confidence, resamples=resamples, rng=rng))
    worse = [v for v in verdicts if v.verdict == "worse"]
    unclear = [v for v in verdicts if v.verdict == "unclear"]
    if worse:
        v = worse[0]
        return Decision("roll_back", f"{v.metric} is {-v.change:.1%} worse (interval {v.change_ci[0]:+.1%} .. "
                        f"{v.change_ci[1]:+.1%}), beyond the {v.limit:.0%} limit", tuple(verdicts), confidence)
    if missing or unclear:
        parts = [f"too few windows: {m}" for m in missing] + [
            f"{v.metric} changed {v.change:+.1%} (interval {v.change_ci[0]:+.1%} .. {v.change_ci[1]:+.1%}), which "
            f"does not exclude the {v.limit:.0%} limit" for v in unclear]
        return Decision("inconclusive", "; ".join(parts), tuple(verdicts), confidence)
    summary = ", ".join(f"{v.metric} {v.change:+.1%} (interval {v.change_ci[0]:+.1%} .. {v.change_ci[1]:+.1%})"
                        for v in verdicts)
    return Decision("keep", f"no guard is worse than its limit: {summary}", tuple(verdicts), confidence)




#: one A/B pair of windows: (metrics with the old values, metrics with the change)
PairMeasure = Callable[[], tuple[Mapping[str, float], Mapping[str, float]]]


def sequential(measure_pair: PairMeasure, guards: Sequence[Guard], *, initial_pairs: int, max_pairs: int,
               batch: int = 2, confidence: float = 0.95, seed: int = 0) -> tuple[Decision, int]:
    """The validation procedure, shared by the validated apply and the decision-quality simulation.

    Measures ``initial_pairs`` A/B pairs (``measure_pair`` runs one window without and one with the
    change and returns each window's metrics), decides, and while the answer is ``inconclusive``
    measures ``batch`` more pairs up to ``max_pairs``. Returns the last decision and the pairs measured;
    an ``inconclusive`` answer at the end means: roll back (a change is never kept unshown).

    Raises:
        ValueError: ``initial_pairs`` < 1 or ``max_pairs`` < ``initial_pairs``; see :func:`decide`.
    """
    if initial_pairs < 1 or max_pairs < initial_pairs or batch < 1:
        raise ValueError(f"need 1 <= initial_pairs ({initial_pairs}) <= max_pairs ({max_pairs}) and batch >= 1")
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}

    def more(n: int) -> None:
        for _ in range(n):
            a, b = measure_pair()
            for k, v in a.items():
                before.setdefault(k, []).append(float(v))
            for k, v in b.items():
                after.setdefault(k, []).append(float(v))

    more(initial_pairs)
    pairs = initial_pairs
    while True:
        d = decide(before, after, guards, confidence=confidence, seed=seed)
        if d.decision != "inconclusive" or pairs >= max_pairs:
            return d, pairs
        step = min(batch, max_pairs - pairs)
        more(step)
        pairs += step
