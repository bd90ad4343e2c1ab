"""Cost prediction with a backtested error, on series of known shape (part B)."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.rightsizing.costforecast import huber_fit
from optimizer.rightsizing.costplan import predict_cost
from optimizer.rightsizing.model import UsageSeries

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 86400)  # midnight UTC, so the daily phase is known
DAY = 86400.0
PC, PM = 0.031611, 0.004237  # OpenCost default.json on-demand per vCPU-hour / GiB-hour


def shape(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A known trend with daily and weekly cycles (t in seconds since T0)."""
    d = t / DAY
    cpu = 2.0 + 0.02 * d + 1.0 * np.sin(2 * np.pi * d) + 0.3 * np.sin(2 * np.pi * d / 7)
    mem = 8.0 + 0.05 * d + 0.5 * np.cos(2 * np.pi * d)
    return cpu, mem


def seasonal(days: float, *, noise: float = 0.0, seed: int = 0) -> UsageSeries:
    t = np.arange(0, days * DAY, 300.0)
    cpu, mem = shape(t)
    rng = np.random.default_rng(seed)
    return UsageSeries("svc", T0 + t, (cpu + rng.normal(0, noise, len(t))).clip(0),
                       (mem + rng.normal(0, noise, len(t))).clip(0))


def true_cost(start_s: float, days: float) -> float:
    t = start_s + np.arange(0, days * DAY, 60.0)
    cpu, mem = shape(t)
    return float((cpu * PC + mem * PM).mean() * days * 24)


def test_clean_seasonal_series_is_predicted_and_backtested_closely() -> None:
    usage = seasonal(28, noise=0.05)
    p = predict_cost(usage, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM, horizon_days=30)
    assert p.backtest_error_pct is not None and p.backtest_error_pct < 2.0
    assert "last 7 days" in p.method and "trend" in p.method and "weekly" in p.method
    actual = true_cost(28 * DAY, 30)
    assert p.usd == pytest.approx(actual, rel=0.02)
    assert p.low <= p.usd <= p.high
    assert (p.high - p.low) / p.usd < 0.1


def test_pure_noise_gives_a_wide_band() -> None:
    rng = np.random.default_rng(5)
    n = 14 * 288
    noisy = UsageSeries("n", T0 + 300.0 * np.arange(n), rng.exponential(1.0, n), rng.exponential(4.0, n))
    p = predict_cost(noisy, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM)
    clean = predict_cost(seasonal(28, noise=0.05), cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM)
    assert (p.high - p.low) / p.usd > 0.5
    assert (p.high - p.low) / p.usd > 10 * (clean.high - clean.low) / clean.usd
    assert "last 30 % of the history" in p.method
    # the level is the mean usage (1 core, 4 GiB), not the lower Huber location of skewed noise
    assert p.usd == pytest.approx((1.0 * PC + 4.0 * PM) * 720, rel=0.1)


def test_backtest_catches_a_level_shift() -> None:
    t = np.arange(0, 10 * DAY, 300.0)
    cpu = np.where(t > 7 * DAY, 4.0, 1.0)
    usage = UsageSeries("s", T0 + t, cpu, np.full(len(t), 2.0))
    p = predict_cost(usage, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM)
    assert p.backtest_error_pct is not None and p.backtest_error_pct > 30.0
    assert p.high >= p.usd * (1 + p.backtest_error_pct / 100) - 1e-9


def test_request_sets_the_allocation_floor() -> None:
    t = np.arange(0, 5 * DAY, 300.0)
    usage = UsageSeries("r", T0 + t, np.full(len(t), 1.0), np.full(len(t), 2.0))
    p = predict_cost(usage, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM, cpu_request=5.0)
    assert p.usd == pytest.approx((5.0 * PC + 2.0 * PM) * 720, rel=1e-6)
    assert p.backtest_error_pct == pytest.approx(0.0, abs=1e-6)
    assert "max(request, usage)" in p.method
    bare = predict_cost(usage, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM, horizon_days=7)
    assert bare.usd == pytest.approx((1.0 * PC + 2.0 * PM) * 168, rel=1e-6)


def test_short_history_is_predicted_without_a_backtest() -> None:
    t = np.arange(0, 10 * 3600, 300.0)
    usage = UsageSeries("s", T0 + t, np.full(len(t), 1.5), np.full(len(t), 3.0))
    p = predict_cost(usage, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM)
    assert p.backtest_error_pct is None and "too short to backtest" in p.method
    assert p.usd == pytest.approx((1.5 * PC + 3.0 * PM) * 720)


def test_predict_cost_errors() -> None:
    usage = seasonal(1)
    with pytest.raises(ValueError, match="horizon_days must be > 0"):
        predict_cost(usage, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM, horizon_days=0)
    with pytest.raises(ValueError, match="cpu price must be a finite number >= 0"):
        predict_cost(usage, cpu_usd_per_vcpu_hour=-1.0, memory_usd_per_gib_hour=PM)
    empty = UsageSeries("e", np.array([]), np.array([]), np.array([]))
    with pytest.raises(ValueError, match="no samples"):
        predict_cost(empty, cpu_usd_per_vcpu_hour=PC, memory_usd_per_gib_hour=PM)


def test_huber_fit_resists_outliers() -> None:
    x = np.column_stack([np.ones(200), np.linspace(0, 1, 200)])
    y = 1.0 + 2.0 * x[:, 1]
    y[::20] += 50.0  # 5 % wild outliers
    beta = huber_fit(x, y)
    assert beta == pytest.approx([1.0, 2.0], abs=0.05)
    ols = np.linalg.lstsq(x, y, rcond=None)[0]
    assert abs(ols[0] - 1.0) > 1.0
