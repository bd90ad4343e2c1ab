"""Measurement noise: repeats, re-measurement, and a Pareto front that respects noise.

Every trial's objectives are reduced from repeats to a median and a bootstrap
confidence interval (:func:`optimizer.stats.estimate`); :class:`TrialEstimate`
holds that per objective. Two configurations are compared with
:func:`significantly_better`, which refuses to call a difference inside the
noise an improvement, and :func:`noisy_pareto_mask` builds the front with it:
a point leaves the front only when another is at least as good in every
objective *and* significantly better in at least one, so points within each
other's noise all stay on it.

Significance test
-----------------
CI separation: ``a`` is significantly better than ``b`` when ``a``'s interval
lies entirely on the better side of ``b``'s (no overlap). Two non-overlapping
95 % intervals correspond to a difference significant at well below 5 %, so the
test is conservative, which suits a tuner whose mistakes are applied to
production. It needs only medians and intervals, which is what the study
stores (``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high``).
A single repeat has no interval of its own (``stats.estimate`` gives nan);
it then borrows the pooled relative noise of the other trials
(:func:`pooled_noise`: ``median ± rel_noise * |median|``). When nothing at all
is known about the noise, a strict difference of medians counts, as in
:func:`optimizer.pareto.pareto_mask`.

Example::

    from optimizer.noise import TrialEstimate, noisy_pareto_mask, remeasure_candidates

    a = TrialEstimate.from_samples([[100, 1.0], [104, 1.0], [98, 1.1]])   # repeats x objectives
    b = TrialEstimate.from_samples([[101, 1.0], [103, 1.0], [99, 1.0]])
    noisy_pareto_mask([a, b], ["maximize", "minimize"])      # array([ True,  True]): inside the noise
    significantly_better(a, b, "maximize", objective=0)      # False

    # from what the runner stores per trial (trial.user_attrs["metrics"]):
    est = TrialEstimate.from_metrics(metrics, ["throughput_rps", "cost_usd_per_hour"], n=3)

    # which configurations deserve another measurement (duplicates merged first):
    remeasure_candidates(estimates, params_list, directions, max_n=2)   # e.g. [4, 7]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.stats import estimate

__all__ = [
    "DuplicateGroup",
    "TrialEstimate",
    "merge_duplicates",
    "noisy_pareto_mask",
    "params_key",
    "pooled_noise",
    "remeasure_candidates",
    "significantly_better",
]

_VALID = ("maximize", "minimize")


@dataclass(frozen=True)
class TrialEstimate:
    """Median and confidence interval of each objective of one configuration.

    Attributes:
        values: median per objective.
        ci_low, ci_high: interval bounds per objective (nan when unknown, e.g.
            a single repeat).
        n: number of repeats behind the estimate.
        samples: the raw repeats (repeats x objectives) when known; lets
            duplicates be merged exactly.
    """

    values: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    n: int
    samples: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not (len(self.values) == len(self.ci_low) == len(self.ci_high)):
            raise ValueError("values, ci_low and ci_high need one entry per objective")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    @classmethod
    def from_samples(
        cls, samples: Sequence[Sequence[float]] | np.ndarray, *, confidence: float = 0.95, seed: int = 0
    ) -> TrialEstimate:
        """Estimate from repeats: ``samples[r][j]`` is objective ``j`` in repeat ``r``."""
        arr = np.asarray(samples, dtype=float)
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"samples must be a non-empty 2-D array (repeats x objectives), got shape {arr.shape}")
        meds, lows, highs = [], [], []
        for j in range(arr.shape[1]):
            try:
                e = estimate(arr[:, j], confidence=confidence, seed=seed)
                meds.append(e.median)
                lows.append(e.ci_low)
                highs.append(e.ci_high)
            except ValueError:  # no finite repeat for this objective
                meds.append(math.nan)
                lows.append(math.nan)
                highs.append(math.nan)
        return cls(tuple(meds), tuple(lows), tuple(highs), int(arr.shape[0]), tuple(map(tuple, arr.tolist())))

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float], objectives: Sequence[str], *, n: int = 1) -> TrialEstimate:
        """From a runner trial's metrics: ``<name>``, ``<name>_ci_low``, ``<name>_ci_high``."""
        nan = math.nan
        return cls(
            tuple(float(metrics.get(m, nan)) for m in objectives),
            tuple(float(metrics.get(f"{m}_ci_low", nan)) for m in objectives),
            tuple(float(metrics.get(f"{m}_ci_high", nan)) for m in objectives),
            n,
        )

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in self.values)

    def interval(self, objective: int, *, rel_noise: float | None = None) -> tuple[float, float]:
        """``(low, high)`` for one objective; borrows ``rel_noise`` when the own interval is unknown.

        The interval always contains the median (a bootstrap interval of a
        skewed sample may not, by a hair).
        """
        med, lo, hi = self.values[objective], self.ci_low[objective], self.ci_high[objective]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            if rel_noise is None or not math.isfinite(rel_noise):
                return med, med
            half = abs(med) * rel_noise
            return med - half, med + half
        return min(lo, med), max(hi, med)


def _loss_interval(e: TrialEstimate, j: int, direction: str, rel_noise: float | None) -> tuple[float, float]:
    lo, hi = e.interval(j, rel_noise=rel_noise)
    return (-hi, -lo) if direction == "maximize" else (lo, hi)


def significantly_better(
    a: TrialEstimate, b: TrialEstimate, direction: str, *, objective: int = 0, rel_noise: float | None = None
) -> bool:
    """True when ``a`` beats ``b`` on ``objective`` by more than the noise (CI separation).

    ``rel_noise`` stands in for a missing interval (see :func:`pooled_noise`).
    """
    if direction not in _VALID:
        raise ValueError(f"direction {direction!r} is not one of {list(_VALID)}")
    va, vb = a.values[objective], b.values[objective]
    if not (math.isfinite(va) and math.isfinite(vb)):
        return False
    _, a_worst = _loss_interval(a, objective, direction, rel_noise)
    b_best, _ = _loss_interval(b, objective, direction, rel_noise)
    return a_worst < b_best  # a's worst plausible loss beats b's best plausible loss


def pooled_noise(estimates: Sequence[TrialEstimate]) -> np.ndarray:
    """Relative noise level per objective: the median over trials of ``half CI width / |median|``.

    nan for an objective where no trial has an interval (or all medians are 0).
    0.03 means "repeats of one configuration typically differ by about ±3 %".
    """
    if not estimates:
        return np.zeros(0)
    m = len(estimates[0].values)
    out = np.full(m, math.nan)
    for j in range(m):
        rel = [
            (e.ci_high[j] - e.ci_low[j]) / 2 / abs(e.values[j])
            for e in estimates
            if math.isfinite(e.ci_low[j]) and math.isfinite(e.ci_high[j]) and math.isfinite(e.values[j]) and e.values[j]
        ]
        if rel:
            out[j] = float(np.median(rel))
    return out


def noisy_pareto_mask(
    estimates: Sequence[TrialEstimate],
    directions: Sequence[str],
    *,
    feasible: Sequence[bool] | None = None,
    rel_noise: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Non-dominated mask where domination must be significant.

    ``k`` dominates ``i`` when ``k``'s median is at least as good as ``i``'s in
    every objective and ``k`` is :func:`significantly_better` in at least one.
    Infeasible estimates and ones with a non-finite median are off the front
    and dominate nothing. ``rel_noise`` (per objective) stands in for missing
    intervals; by default it is :func:`pooled_noise` of the feasible estimates.
    """
    for d in directions:
        if d not in _VALID:
            raise ValueError(f"direction {d!r} is not one of {list(_VALID)}")
    n = len(estimates)
    ok = np.array([e.finite for e in estimates], dtype=bool)
    if feasible is not None:
        ok &= np.asarray(feasible, dtype=bool)
    if any(len(e.values) != len(directions) for e in estimates):
        raise ValueError(f"every estimate needs {len(directions)} objective values")
    noise = pooled_noise([e for e, good in zip(estimates, ok) if good]) if rel_noise is None else np.asarray(rel_noise)
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    med = np.array([e.values for e in estimates], dtype=float).reshape(n, len(directions)) * sign
    mask = ok.copy()
    for i in np.flatnonzero(ok):
        for k in np.flatnonzero(ok):
            if k == i or not np.all(med[k] <= med[i]):
                continue
            if any(
                significantly_better(
                    estimates[int(k)], estimates[int(i)], d, objective=j, rel_noise=_noise_at(noise, j)
                )
                for j, d in enumerate(directions)
            ):
                mask[i] = False
                break
    return mask


def _noise_at(noise: np.ndarray, j: int) -> float | None:
    if j < len(noise) and math.isfinite(noise[j]):
        return float(noise[j])
    return None


# ------------------------------------------------------------------ duplicates
def _canon(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        f = float(value)
        return int(f) if f.is_integer() else round(f, 9)
    return repr(value)


def params_key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Hashable identity of a configuration: 5 and 5.0 are the same, floats compared to 1e-9."""
    return tuple(sorted((k, _canon(v)) for k, v in params.items()))


@dataclass(frozen=True)
class DuplicateGroup:
    """One configuration and every trial that measured it."""

    params: dict[str, Any]
    indices: tuple[int, ...]  # positions in the input lists, ascending
    samples: np.ndarray  # all repeats of all those trials (repeats x objectives)

    def estimate(self, *, confidence: float = 0.95, seed: int = 0) -> TrialEstimate:
        return TrialEstimate.from_samples(self.samples, confidence=confidence, seed=seed)


def merge_duplicates(
    params_list: Sequence[Mapping[str, Any]], samples_list: Sequence[Sequence[Sequence[float]]]
) -> list[DuplicateGroup]:
    """Group trials that measured the same configuration and pool their repeats.

    ``samples_list[i]`` is trial ``i``'s repeats (repeats x objectives); a
    failed trial may have none (``[]``). Groups come in order of first
    appearance; a configuration measured once is a group of one.
    """
    if len(params_list) != len(samples_list):
        raise ValueError(f"{len(params_list)} parameter sets but {len(samples_list)} sample lists")
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params_list):
        groups.setdefault(params_key(p), []).append(i)
    width = next((np.asarray(s, dtype=float).shape[1] for s in samples_list if len(s)), 0)
    out = []
    for idx in groups.values():
        parts = [np.asarray(samples_list[i], dtype=float).reshape(-1, width) for i in idx if len(samples_list[i])]
        merged = np.vstack(parts) if parts else np.zeros((0, width))
        out.append(DuplicateGroup(dict(params_list[idx[0]]), tuple(idx), merged))
    return out


def _combine(estimates: Sequence[TrialEstimate]) -> TrialEstimate:
    """Estimate of one configuration from several trials' estimates."""
    if len(estimates) == 1:
        return estimates[0]
    if all(e.samples for e in estimates):
        return TrialEstimate.from_samples([row for e in estimates for row in (e.samples or ())])
    best = max(estimates, key=lambda e: (e.finite, e.n))  # no raw repeats: keep the best-supported estimate
    return TrialEstimate(best.values, best.ci_low, best.ci_high, sum(e.n for e in estimates))


def remeasure_candidates(
    estimates: Sequence[TrialEstimate],
    params: Sequence[Mapping[str, Any]],
    directions: Sequence[str],
    *,
    max_n: int = 3,
    target_n: int = 5,
    max_rel_ci: float = 0.05,
    feasible: Sequence[bool] | None = None,
) -> list[int]:
    """Trials whose configuration deserves another measurement, most useful first.

    Duplicates (same ``params``) are merged first: their repeats pool into
    one estimate and at most one of them (the first trial) is returned. A
    configuration is a candidate when it is *promising* - on the noisy front,
    which already holds every point within the noise of the best ones - and
    *uncertain* - fewer than ``target_n`` repeats in total, or a relative
    half-width above ``max_rel_ci`` in some objective (an unknown interval
    counts as infinitely wide). Order: the widest relative interval first,
    then the fewest repeats, then the trial index. At most ``max_n``.
    Infeasible trials (``feasible`` False) are never candidates.
    """
    if len(estimates) != len(params):
        raise ValueError(f"{len(estimates)} estimates but {len(params)} parameter sets")
    ok_in = [True] * len(estimates) if feasible is None else list(map(bool, feasible))
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        if ok_in[i]:
            groups.setdefault(params_key(p), []).append(i)
    reps = [idx[0] for idx in groups.values()]
    merged = [_combine([estimates[i] for i in idx]) for idx in groups.values()]
    if not merged:
        return []
    noise = pooled_noise(merged)
    front = noisy_pareto_mask(merged, directions, rel_noise=noise)
    scored = []
    for g, e in enumerate(merged):
        if not (front[g] and e.finite):
            continue
        widths = []
        for j in range(len(directions)):
            lo, hi = e.interval(j, rel_noise=_noise_at(noise, j))
            widths.append((hi - lo) / 2 / abs(e.values[j]) if e.values[j] else 0.0)
        unknown = any(not (math.isfinite(e.ci_low[j]) and math.isfinite(e.ci_high[j])) for j in range(len(directions)))
        width = math.inf if unknown else max(widths)
        if e.n < target_n or width > max_rel_ci:
            scored.append((-width, e.n, reps[g]))
    scored.sort()
    return [s[2] for s in scored[:max_n]]
