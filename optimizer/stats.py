"""Reduction of repeated measurements: median and a confidence interval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Estimate", "estimate"]


class Estimate(NamedTuple):
    """Median of repeats with a percentile-bootstrap confidence interval.

    With a single repeat the interval is (nan, nan): unknown, not zero.
    """

    median: float
    ci_low: float
    ci_high: float
    n: int


def estimate(
    samples: Sequence[float] | np.ndarray, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Estimate:
    """Median of ``samples`` and its bootstrap CI. Raises ``ValueError`` when empty."""
    arr = np.asarray([s for s in samples if np.isfinite(s)], dtype=float)
    if arr.size == 0:
        raise ValueError("no finite samples to estimate from")
    med = float(np.median(arr))
    if arr.size == 1:
        return Estimate(med, float("nan"), float("nan"), 1)
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(arr, size=(resamples, arr.size), replace=True), axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return Estimate(med, float(lo), float(hi), int(arr.size))
