"""The trend's data-adaptive weight (optimizer.bo.trend_loo_r2 / trend_weight, TREND_MODE)."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import bo


def _points(seed: int = 0, n: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, 2))


def test_loo_r2_high_for_a_linear_response_and_low_for_a_multimodal_one() -> None:
    X = _points()
    linear = 10.0 * X[:, 0] - 6.0 * X[:, 1]
    bumpy = np.sin(25.0 * X[:, 0]) * np.cos(25.0 * X[:, 1])
    assert bo.trend_loo_r2(X, linear) > 0.8
    assert bo.trend_loo_r2(X, bumpy) < 0.0


def test_loo_r2_degenerate_inputs_give_zero() -> None:
    X = _points(n=5)
    assert bo.trend_loo_r2(X, np.ones(5)) == 0.0
    assert bo.trend_loo_r2(X[:2], np.array([1.0, 2.0])) == 0.0


def test_trend_weight_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    X = _points()
    linear = 10.0 * X[:, 0] - 6.0 * X[:, 1]
    bumpy = np.sin(25.0 * X[:, 0]) * np.cos(25.0 * X[:, 1])
    monkeypatch.setattr(bo, "TREND_MODE", "fixed")
    assert bo.trend_weight(X, bumpy) == bo.TREND_WEIGHT
    assert bo.trend_weight(X[:3], linear[:3]) == 0.0  # too few points for any trend
    monkeypatch.setattr(bo, "TREND_MODE", "loo")
    assert bo.trend_weight(X, linear) == pytest.approx(bo.TREND_WEIGHT)
    assert bo.trend_weight(X, bumpy) < bo.trend_weight(X, linear)


def test_propose_with_loo_mode_is_deterministic_per_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bo, "TREND_MODE", "loo")
    X = _points(1, 40)
    y = 1.0 + (X[:, 0] - 0.3) ** 2 + np.sin(9.0 * X[:, 1]) ** 2
    seen = np.arange(6)
    picks = [bo.propose(X[seen], y[seen], np.ones(6, dtype=bool), X[6:], np.random.default_rng(7))
             for _ in range(2)]
    assert picks[0] == picks[1]
    assert 0 <= picks[0] < len(X) - 6


def test_gp_loo_residuals_match_the_explicit_leave_one_out_mean() -> None:
    X = _points(2, 9)
    y = 1.0 + X[:, 0] ** 2 + np.sin(4.0 * X[:, 1])
    gp = bo.GP(X, y)
    yn = (y - gp.m) / gp.s
    d = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)) / gp.ls[0]
    K = bo.GP._matern(d) + gp.lam * np.eye(len(y))
    e = gp.loo_residuals()
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mean_i = K[i, keep] @ np.linalg.solve(K[np.ix_(keep, keep)], yn[keep])
        assert e[i] == pytest.approx((yn[i] - mean_i) * gp.s, rel=1e-6, abs=1e-9)


def test_trend_loo_residuals_match_refits() -> None:
    X = _points(3, 7)
    y = 2.0 * X[:, 0] + np.cos(5.0 * X[:, 1])
    e = bo._trend_loo_residuals(X, y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        pred = bo._trend(X[keep], y[keep], X[i:i + 1])[0]
        assert e[i] == pytest.approx(y[i] - pred, rel=1e-6, abs=1e-9)
