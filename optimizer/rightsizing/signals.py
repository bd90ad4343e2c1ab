"""What the recommender reads in a usage series besides its percentiles: hourly aggregates, a robust
trend, a daily or weekly cycle, burstiness, saturation and the performance risk of a size. Pure.

* :func:`hourly` -- one value per hour of history (mean or peak), hours without samples dropped.
* :func:`trend` -- scikit-learn's :class:`~sklearn.linear_model.HuberRegressor` on the hourly values
  (robust to bursts); significant when the rise over the history is both large against the
  residual noise and at least 10 % of the level.
* :func:`seasonality` -- autocorrelation of the detrended hourly values at 24 h and 168 h; the cycle's
  peak is the median over cycles of the busiest phase's value (a typical peak, not one spike).
* :func:`burstiness` -- the coefficient of variation, capped.
* :func:`risk_score` -- Compute Optimizer's 0..4 performance-risk scale from the share of samples above
  a size and the share of throttled CFS periods.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["Cycle", "Trend", "burstiness", "hourly", "risk_score", "seasonality", "trend"]

#: autocorrelation at the period's lag above which a cycle counts as found
CYCLE_ACF = 0.3
#: a trend is significant when its rise over the history is this many robust standard errors ...
TREND_T = 4.0
#: ... and at least this share of the median level
TREND_MIN_RISE = 0.10


def hourly(t: np.ndarray, v: np.ndarray, *, how: str) -> tuple[np.ndarray, np.ndarray]:
    """``(hour index from the first sample, value)`` per hour that has samples; ``how`` is ``mean`` or ``max``.

    ``t`` must be sorted (a :class:`~optimizer.rightsizing.model.UsageSeries` is).

    Raises:
        ValueError: ``how`` is neither.
    """
    if how not in ("mean", "max"):
        raise ValueError(f"how must be mean or max, got {how!r}")
    if len(t) == 0:
        return np.zeros(0), np.zeros(0)
    idx = np.floor((t - t[0]) / 3600.0).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    hours = idx[starts].astype(np.float64)
    if how == "max":
        return hours, np.maximum.reduceat(v, starts)
    sums = np.add.reduceat(v, starts)
    counts = np.diff(np.r_[starts, len(v)])
    return hours, sums / counts


@dataclass(frozen=True)
class Trend:
    """A robust linear fit of hourly values: ``slope_per_day`` (units/day), ``level_end`` (the fit at the
    last hour), ``significant`` (see the module), ``t_stat``."""

    slope_per_day: float = 0.0
    level_end: float = 0.0
    significant: bool = False
    t_stat: float = 0.0


def trend(hours: np.ndarray, values: np.ndarray, *, t_min: float = TREND_T, min_rise: float = TREND_MIN_RISE) -> Trend:
    """The Huber-regression trend of hourly ``values`` at ``hours``; not significant below 24 hours of data.

    Significant when ``|t| >= t_min`` and the rise over the history is at least ``min_rise`` of the median.
    """
    if len(hours) < 24 or float(np.ptp(hours)) < 23:
        return Trend()
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import HuberRegressor
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    scale = float(np.median(np.abs(values))) or float(np.mean(np.abs(values))) or 1.0
    x = (hours - hours.mean()) / 24.0
    y = values / scale
    # one BLAS thread: on a busy 2-core host, BLAS threads make this 360-point fit 20x slower
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            fit = HuberRegressor(epsilon=1.35, alpha=0.0, max_iter=200).fit(x[:, None], y)
        except ValueError:  # a degenerate design (all x equal): no trend
            return Trend()
    slope = float(fit.coef_[0])
    resid = y - fit.predict(x[:, None])
    sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    sigma = max(sigma, 1e-9)
    # hourly residuals are autocorrelated: count one independent point per 6 hours
    n_eff = max(2.0, len(x) / 6.0)
    se = sigma / math.sqrt(max(float(np.var(x)) * n_eff, 1e-12))
    t_stat = slope / se
    level_end = float(fit.predict(np.array([[x[-1]]]))[0]) * scale
    rise = abs(slope) * float(np.ptp(x))
    significant = abs(t_stat) >= t_min and rise >= min_rise * max(float(np.median(y)), 1e-9)
    return Trend(slope_per_day=slope * scale, level_end=level_end, significant=bool(significant),
                 t_stat=float(t_stat))


@dataclass(frozen=True)
class Cycle:
    """A daily (24 h) or weekly (168 h) cycle: its ``period_h``, ``acf`` at that lag, and ``peak``: the
    median over cycles of the value at the busiest phase (0 when no cycle)."""

    period_h: int = 0
    acf: float = 0.0
    peak: float = 0.0

    @property
    def found(self) -> bool:
        return self.period_h > 0


def _acf(x: np.ndarray, lag: int) -> float:
    if len(x) <= lag + 1:
        return 0.0
    d = x - x.mean()
    den = float(np.dot(d, d))
    return float(np.dot(d[:-lag], d[lag:]) / den) if den > 0 else 0.0


def seasonality(hours: np.ndarray, values: np.ndarray) -> Cycle:
    """The daily or weekly cycle of hourly ``values`` (at least two full periods needed), or ``Cycle()``.

    Weekly wins when its autocorrelation clears the threshold and beats the daily one by 0.1 (a weekly
    cycle that is only the daily one repeated is daily).
    """
    if len(hours) < 48:
        return Cycle()
    grid = np.arange(int(hours[0]), int(hours[-1]) + 1, dtype=np.float64)
    filled = np.interp(grid, hours, values)
    xs = grid - grid.mean()
    detrended = filled - np.polyval(np.polyfit(xs, filled, 1), xs) if len(grid) > 2 else filled
    a24 = _acf(detrended, 24)
    a168 = _acf(detrended, 168) if len(grid) >= 2 * 168 else 0.0
    if a168 >= CYCLE_ACF and a168 >= a24 + 0.1:
        period, acf = 168, a168
    elif a24 >= CYCLE_ACF:
        period, acf = 24, a24
    else:
        return Cycle()
    phase = (hours.astype(np.int64) - int(hours[0])) % period
    medians = [float(np.median(values[phase == p])) for p in range(period) if (phase == p).any()]
    return Cycle(period_h=period, acf=acf, peak=max(medians))


def burstiness(values: np.ndarray, *, cap: float = 2.0) -> float:
    """The coefficient of variation of ``values`` (std / mean), capped at ``cap``; 0 for an empty or all-zero series."""
    if len(values) == 0:
        return 0.0
    m = float(values.mean())
    return 0.0 if m <= 0 else min(cap, float(values.std()) / m)


_SHARE_STEPS = (0.001, 0.01, 0.05, 0.2)
_THROTTLE_STEPS = (0.01, 0.05, 0.1, 0.25)


def _score(x: float, steps: tuple[float, ...]) -> float:
    """0 at 0, 1..4 at the four ``steps`` (log-linear between them), linear below the first, 4 above the last."""
    if not math.isfinite(x) or x <= 0:
        return 0.0
    if x < steps[0]:
        return x / steps[0]
    return float(np.interp(math.log(x), [math.log(s) for s in steps], [1.0, 2.0, 3.0, 4.0]))


def risk_score(values: np.ndarray, size: float, *, throttled: np.ndarray | None = None, ooms: int = 0,
               saturated: bool = False) -> float:
    """The performance risk in [0, 4] of running at ``size``: the larger of the score of the share of
    ``values`` above it (0.1 % -> 1, 1 % -> 2, 5 % -> 3, 20 % -> 4) and of the mean throttled share
    (1 %, 5 %, 10 %, 25 %); at least 3 with an OOM kill (4 from three) or a saturated CPU."""
    share = float(np.mean(values > size)) if len(values) else 0.0
    score = _score(share, _SHARE_STEPS)
    if throttled is not None and np.isfinite(throttled).any():
        score = max(score, _score(float(np.nanmean(throttled)), _THROTTLE_STEPS))
    if ooms:
        score = max(score, 4.0 if ooms >= 3 else 3.0)
    if saturated:
        score = max(score, 3.0)
    return round(min(4.0, score), 2)
