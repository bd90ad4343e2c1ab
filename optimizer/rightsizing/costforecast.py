"""Cost prediction for the next days of one target, with its backtested error. Pure.

Usage is averaged per hour, then each resource is fitted with a robust (Huber, by iteratively
reweighted least squares) regression on a
linear trend and Fourier terms of the day and the week -- each only when the history is long
enough to show it (:data:`TREND_DAYS`, :data:`DAILY_DAYS`, :data:`WEEKLY_DAYS`); a slope within
:data:`TREND_SE` standard errors of zero is dropped rather than extrapolated. The forecast is
priced as OpenCost prices an allocation: ``cores x vCPU-hour + GiB x GiB-hour`` per hour, where
the allocation is ``max(request, usage)`` when a request is given.

The band (``low``..``high``) assumes the fit's hourly errors persist over the horizon (as a level
shift would): the :data:`BAND_PERCENTILES` of the residual hourly cost, times the hours, widened
to at least the backtest's relative error. The backtest holds out the last 7 days (or the last
30 % when the history is shorter than 21 days), fits the rest, predicts the held-out hours and
compares the total cost: ``backtest_error_pct = |predicted - actual| / actual x 100``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from optimizer.rightsizing.model import UsageSeries

__all__ = [
    "BAND_PERCENTILES", "DAILY_DAYS", "TREND_DAYS", "WEEKLY_DAYS", "CostPrediction", "fit_hourly", "huber_fit",
    "predict_cost",
]

HOUR = 3600.0
DAY = 86400.0
#: days of history before a trend, a daily and a weekly cycle are fitted
TREND_DAYS = 3.0
DAILY_DAYS = 2.0
WEEKLY_DAYS = 14.0
#: a fitted slope within this many standard errors of 0 is dropped (not extrapolated)
TREND_SE = 2.0
#: the backtest holds out this many days when the history has LONG_DAYS, else HOLDOUT_FRAC of it
HOLDOUT_DAYS = 7.0
LONG_DAYS = 21.0
HOLDOUT_FRAC = 0.3
#: the band: these percentiles of the residual hourly cost, persisting over the horizon
BAND_PERCENTILES = (10.0, 90.0)
#: the shortest training part and held-out part of a backtest, in hourly bins
MIN_TRAIN_HOURS = 24
MIN_HOLDOUT_HOURS = 6


@dataclass(frozen=True)
class CostPrediction:
    """Predicted cost (USD) over ``horizon_days``, its band, and the backtest of the method.

    ``backtest_error_pct`` is None when the history is too short to hold part of it out
    (``method`` says so); ``cpu_cores_mean``/``mem_gib_mean`` are the forecast's mean allocation.
    """

    usd: float
    low: float
    high: float
    backtest_error_pct: float | None
    method: str
    horizon_days: float = 30.0
    cpu_cores_mean: float = 0.0
    mem_gib_mean: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hourly(t: np.ndarray, values: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Hourly means (bins from the first sample), their bin-centre times."""
    idx = np.floor((t - t[0]) / HOUR).astype(np.int64)
    bins, inverse, counts = np.unique(idx, return_inverse=True, return_counts=True)
    means = [np.bincount(inverse, weights=v) / counts for v in values]
    return t[0] + (bins + 0.5) * HOUR, means


def _features(t: np.ndarray, *, t0: float, trend: bool, daily: bool, weekly: bool) -> np.ndarray:
    cols = [np.ones_like(t)]
    if trend:
        cols.append((t - t0) / DAY)
    for on, period, k in ((daily, DAY, 3), (weekly, 7 * DAY, 2)):
        if on:
            for j in range(1, k + 1):
                w = 2 * np.pi * j * t / period
                cols += [np.sin(w), np.cos(w)]
    return np.column_stack(cols)


def huber_fit(x: np.ndarray, y: np.ndarray, *, k: float = 1.345) -> np.ndarray:
    """Huber M-estimate of ``y ~ x @ beta`` (scikit-learn's :class:`~sklearn.linear_model.HuberRegressor`,
    no penalty; ``x`` carries its own constant column): a residual beyond ``k`` scales counts linearly, not
    squared, so a burst or an outage moves the fit little."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import HuberRegressor
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    scale = float(np.median(np.abs(y))) or float(np.mean(np.abs(y))) or 1.0
    # one BLAS thread, as in signals.trend: BLAS threads make a small fit many times slower on a busy host
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = HuberRegressor(epsilon=k, alpha=0.0, fit_intercept=False, max_iter=500).fit(x, y / scale)
    return np.asarray(fit.coef_, dtype=np.float64) * scale


def _significant_slope(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> bool:
    """Is the trend coefficient (column 1) more than :data:`TREND_SE` standard errors from 0?"""
    r = y - x @ beta
    dof = max(1, len(y) - x.shape[1])
    sigma2 = float(r @ r) / dof
    try:
        cov = sigma2 * np.linalg.inv(x.T @ x)
    except np.linalg.LinAlgError:
        return False
    se = float(np.sqrt(max(cov[1, 1], 0.0)))
    return bool(abs(beta[1]) > TREND_SE * se)


def fit_hourly(t: np.ndarray, y: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """Fit ``y`` (hourly values at times ``t``) and return a predictor (>= 0) and its description."""
    span_days = float(t[-1] - t[0]) / DAY if len(t) > 1 else 0.0
    trend, daily, weekly = span_days >= TREND_DAYS, span_days >= DAILY_DAYS, span_days >= WEEKLY_DAYS
    terms = [name for name, on in (("trend", trend), ("daily", daily), ("weekly", weekly)) if on]
    if not terms or len(t) < 12:
        level = float(np.mean(y)) if len(y) else 0.0
        return (lambda tt: np.full(len(tt), level)), "the mean level (too short for a trend or a cycle)"
    t0 = float(t[0])
    x = _features(t, t0=t0, trend=trend, daily=daily, weekly=weekly)
    beta = huber_fit(x, y)
    if trend and not _significant_slope(x, y, beta):
        trend = False
        terms = [*terms[1:], f"no trend (its slope was within {TREND_SE:g} standard errors of 0)"]
        x = _features(t, t0=t0, trend=trend, daily=daily, weekly=weekly)
        beta = huber_fit(x, y)
    # the robust fit finds the shape; the level is set so the fit's mean is the data's mean (a
    # Huber location sits between the median and the mean of skewed usage, and cost is a mean)
    beta[0] += float(np.mean(y - x @ beta))

    def predict(tt: np.ndarray) -> np.ndarray:
        xx = _features(tt, t0=t0, trend=trend, daily=daily, weekly=weekly)
        return np.maximum(xx @ beta, 0.0)

    return predict, "Huber regression on " + " + ".join(terms)


def _hour_cost(cpu: np.ndarray, mem: np.ndarray, prices: tuple[float, float],
               requests: tuple[float | None, float | None]) -> np.ndarray:
    cr, mr = requests
    alloc_cpu = cpu if cr is None else np.maximum(cpu, cr)
    alloc_mem = mem if mr is None else np.maximum(mem, mr)
    return alloc_cpu * prices[0] + alloc_mem * prices[1]


def _backtest(th: np.ndarray, cpu: np.ndarray, mem: np.ndarray, prices: tuple[float, float],
              requests: tuple[float | None, float | None]) -> float | None:
    span_days = float(th[-1] - th[0]) / DAY
    cut_t = th[-1] - HOLDOUT_DAYS * DAY if span_days >= LONG_DAYS else th[-1] - HOLDOUT_FRAC * (th[-1] - th[0])
    train = th <= cut_t
    if train.sum() < MIN_TRAIN_HOURS or (~train).sum() < MIN_HOLDOUT_HOURS:
        return None
    fc, _ = fit_hourly(th[train], cpu[train])
    fm, _ = fit_hourly(th[train], mem[train])
    test_t = th[~train]
    predicted = float(_hour_cost(fc(test_t), fm(test_t), prices, requests).sum())
    actual = float(_hour_cost(cpu[~train], mem[~train], prices, requests).sum())
    if actual <= 0:
        return 0.0 if predicted <= 0 else 100.0
    return abs(predicted - actual) / actual * 100.0


def predict_cost(
    usage: UsageSeries,
    *,
    cpu_usd_per_vcpu_hour: float,
    memory_usd_per_gib_hour: float,
    horizon_days: float = 30,
    cpu_request: float | None = None,
    mem_request: float | None = None,
) -> CostPrediction:
    """Predict the cost of the next ``horizon_days`` after the last sample (see the module doc).

    Raises:
        ValueError: an empty series, a negative or non-finite price or request, or a horizon <= 0.
    """
    if len(usage) == 0:
        raise ValueError(f"{usage.target}: no samples, so no cost prediction")
    for name, v in (("cpu price", cpu_usd_per_vcpu_hour), ("memory price", memory_usd_per_gib_hour),
                    ("cpu_request", cpu_request or 0.0), ("mem_request", mem_request or 0.0)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    if not (np.isfinite(horizon_days) and horizon_days > 0):
        raise ValueError(f"horizon_days must be > 0, got {horizon_days}")
    prices, requests = (cpu_usd_per_vcpu_hour, memory_usd_per_gib_hour), (cpu_request, mem_request)
    th, (cpu, mem) = _hourly(usage.t, [usage.cpu_cores, usage.mem_gib])
    fc, how = fit_hourly(th, cpu)
    fm, _ = fit_hourly(th, mem)
    n = max(1, round(horizon_days * 24))
    future = th[-1] + HOUR * np.arange(1, n + 1)
    pc, pm = fc(future), fm(future)
    per_hour = _hour_cost(pc, pm, prices, requests)
    usd = float(per_hour.sum()) * (horizon_days * 24 / n)
    resid = _hour_cost(cpu, mem, prices, requests) - _hour_cost(fc(th), fm(th), prices, requests)
    hours = horizon_days * 24
    lo_q, hi_q = BAND_PERCENTILES
    low = usd + hours * float(np.percentile(resid, lo_q)) if len(resid) > 1 else usd
    high = usd + hours * float(np.percentile(resid, hi_q)) if len(resid) > 1 else usd
    err = _backtest(th, cpu, mem, prices, requests)
    if err is not None:
        low, high = min(low, usd * (1 - err / 100)), max(high, usd * (1 + err / 100))
    method = (f"{how} of hourly CPU and memory ({len(th)} h of history), priced per vCPU-hour and GiB-hour"
              + (", allocation = max(request, usage)" if cpu_request or mem_request else "")
              + ("; backtest: relative error of the total cost over the held-out "
                 + ("last 7 days" if float(th[-1] - th[0]) / DAY >= LONG_DAYS else "last 30 % of the history")
                 if err is not None else "; history too short to backtest"))
    return CostPrediction(usd=usd, low=max(0.0, low), high=max(high, usd), backtest_error_pct=err, method=method,
                          horizon_days=float(horizon_days), cpu_cores_mean=float(pc.mean()),
                          mem_gib_mean=float(pm.mean()))
