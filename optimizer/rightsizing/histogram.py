"""A decaying histogram, as the Kubernetes VPA recommender keeps one per container and resource.

Buckets grow exponentially (``first_bucket`` wide, each ``ratio`` times the previous), so the relative
resolution is the same for 10 millicores and for 64 cores. Each sample's weight doubles every
``half_life_s`` of its time stamp (equivalently: older samples halve every half-life), so the
percentiles follow the recent past while the old past still counts. A percentile is the upper edge
of the bucket where the cumulative weight reaches it: rounding errs towards more capacity.

Pure and vectorised: one :func:`numpy.bincount` per histogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DecayingHistogram"]


@dataclass(frozen=True)
class DecayingHistogram:
    """Weights per exponential bucket. Build with :meth:`from_samples`.

    Attributes:
        first_bucket: the width of the first bucket (the resolution near 0), > 0.
        ratio: each bucket's width over the previous one's (> 1; VPA uses 1.05).
        weights: the decayed weight of each bucket (bucket ``i`` spans ``[edge(i), edge(i+1))``).
    """

    first_bucket: float
    ratio: float
    weights: np.ndarray

    @classmethod
    def from_samples(
        cls,
        values: np.ndarray,
        t: np.ndarray,
        *,
        half_life_s: float,
        ref_t: float | None = None,
        first_bucket: float = 0.01,
        ratio: float = 1.05,
        sample_weights: np.ndarray | None = None,
    ) -> DecayingHistogram:
        """The histogram of ``values`` taken at times ``t`` (Unix seconds), decayed to ``ref_t``.

        A sample at ``t`` weighs ``2 ** ((t - ref_t) / half_life_s)`` (times its ``sample_weights``);
        ``ref_t`` defaults to the last time (only ratios of weights matter to a percentile, so the
        reference moves no percentile; it only keeps the numbers in range). ``half_life_s = inf``
        disables decay.

        Raises:
            ValueError: lengths differ, a value is negative or not finite, or a parameter is out of range.
        """
        v = np.asarray(values, dtype=np.float64)
        tt = np.asarray(t, dtype=np.float64)
        if v.shape != tt.shape or v.ndim != 1:
            raise ValueError(f"values and t must be 1-D of one length, got {v.shape} and {tt.shape}")
        if not (first_bucket > 0 and ratio > 1 and half_life_s > 0):
            raise ValueError("first_bucket > 0, ratio > 1 and half_life_s > 0 are required")
        if len(v) and (not np.isfinite(v).all() or (v < 0).any()):
            raise ValueError("values must be finite and >= 0")
        if len(v) == 0:
            return cls(first_bucket, ratio, np.zeros(1))
        ref = float(tt.max()) if ref_t is None else float(ref_t)
        if math.isinf(half_life_s):
            w = np.ones_like(v)
        else:
            # clip the exponent: a sample far in the future of ref_t must not overflow
            w = np.exp2(np.clip((tt - ref) / half_life_s, -1000.0, 60.0))
        if sample_weights is not None:
            w = w * np.asarray(sample_weights, dtype=np.float64)
        idx = cls._bucket(v, first_bucket, ratio)
        return cls(first_bucket, ratio, np.bincount(idx, weights=w))

    @staticmethod
    def _bucket(v: np.ndarray, first_bucket: float, ratio: float) -> np.ndarray:
        # edge(i) = first_bucket * (ratio**i - 1) / (ratio - 1); invert and floor
        x = v * (ratio - 1.0) / first_bucket + 1.0
        return np.floor(np.log(x) / math.log(ratio) + 1e-12).astype(np.int64)

    def edge(self, i: int | np.ndarray) -> np.ndarray | float:
        """The lower edge of bucket ``i`` (the upper edge of bucket ``i - 1``)."""
        return self.first_bucket * (np.power(self.ratio, i) - 1.0) / (self.ratio - 1.0)

    @property
    def total_weight(self) -> float:
        return float(self.weights.sum())

    def percentile(self, q: float) -> float:
        """The value at or below which a share ``q`` (0..1) of the weight lies: the upper edge of its bucket.

        0.0 for an empty histogram. Raises: ValueError: ``q`` outside [0, 1].
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"percentile share must be in [0, 1], got {q}")
        total = self.total_weight
        if total <= 0:
            return 0.0
        cum = np.cumsum(self.weights)
        i = int(np.searchsorted(cum, q * total * (1 - 1e-12), side="left"))
        i = min(i, len(self.weights) - 1)
        if q >= 1.0:  # the maximum: the last non-empty bucket
            i = int(np.flatnonzero(self.weights > 0)[-1])
        return float(self.edge(i + 1))
