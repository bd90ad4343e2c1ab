"""The keep / roll-back decision on constructed data, and the sequential procedure around it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.decision import (
    DEFAULT_INITIAL_PAIRS,
    DEFAULT_MAX_PAIRS,
    METHODS,
    Guard,
    decide,
    pairs_for_window,
    parse_guard,
    sequential,
)

TP = Guard("throughput", "maximize")
LAT = Guard("latency_p95_ms", "minimize")


def noisy(center: float, n: int, *, cv: float = 0.02, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(center * np.exp(rng.normal(0.0, cv, n)))


@pytest.mark.parametrize("method", METHODS)
def test_clear_degradation_rolls_back_naming_the_metric(method: str) -> None:
    before = {"throughput": noisy(1000, 8), "latency_p95_ms": noisy(10, 8, seed=1)}
    after = {"throughput": noisy(700, 8, seed=2), "latency_p95_ms": noisy(10, 8, seed=3)}
    d = decide(before, after, [TP, LAT], method=method)
    assert d.decision == "roll_back"
    assert "throughput" in d.reason and "latency" not in d.reason
    tp = d.metrics[0]
    assert tp.change == pytest.approx(-0.30, abs=0.03)
    assert tp.change_ci[1] < -0.10 and tp.p_value < 0.01 and tp.effect_size == pytest.approx(-1.0)


@pytest.mark.parametrize("method", METHODS)
def test_no_change_with_noise_is_kept(method: str) -> None:
    before = {"throughput": noisy(1000, 8, seed=4), "latency_p95_ms": noisy(10, 8, seed=5)}
    after = {"throughput": noisy(1000, 8, seed=6), "latency_p95_ms": noisy(10, 8, seed=7)}
    d = decide(before, after, [TP, LAT], method=method)
    assert d.decision == "keep", d.reason
    assert all(v.verdict == "ok" and v.change_ci[0] >= -0.10 for v in d.metrics)


def test_straddling_the_limit_is_inconclusive() -> None:
    before = {"throughput": noisy(1000, 6, cv=0.10, seed=8)}
    after = {"throughput": noisy(900, 6, cv=0.10, seed=9)}
    d = decide(before, after, [TP])
    assert d.decision == "inconclusive"
    lo, hi = d.metrics[0].change_ci
    assert lo < -0.10 < hi and "does not exclude" in d.reason


def test_too_few_windows_is_inconclusive() -> None:
    d = decide({"throughput": [1.0, 1.0]}, {"throughput": [0.5, 0.5]}, [TP])
    assert d.decision == "inconclusive" and "too few windows" in d.reason and d.metrics == ()
    d = decide({"throughput": [1.0, 1.1, 0.9]}, {}, [TP])
    assert d.decision == "inconclusive" and "throughput (3 before, 0 after" in d.reason


def test_latency_direction_is_opposite_to_throughput() -> None:
    before, after = noisy(10, 8, seed=10), noisy(13, 8, seed=11)  # 30 % higher
    as_latency = decide({"m": before}, {"m": after}, [Guard("m", "minimize")])
    as_rate = decide({"m": before}, {"m": after}, [Guard("m", "maximize")])
    assert as_latency.decision == "roll_back" and as_latency.metrics[0].change == pytest.approx(-0.30, abs=0.03)
    assert as_rate.decision == "keep" and as_rate.metrics[0].change == pytest.approx(0.30, abs=0.03)
    assert as_latency.metrics[0].effect_size < 0 < as_rate.metrics[0].effect_size


def test_non_finite_windows_are_dropped_and_pairs_stay_aligned() -> None:
    before = {"throughput": [100.0, math.nan, 101, 99, 100, 100.5]}
    after = {"throughput": [100.0, 100, math.inf, 99.5, 100.2, 100.1]}
    d = decide(before, after, [TP], paired=True)
    assert d.decision == "keep" and d.metrics[0].n_before == 5 and d.metrics[0].n_after == 5


@pytest.mark.parametrize("text", ["p95", "p95:10", "p95:+10%", "p95:-100%", ":-10%", "p95:-ten%", "9x:-1%"])
def test_bad_guard_strings_name_the_allowed_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"METRIC:-N%|between -100%"):
        parse_guard(text)


def test_good_guard_strings() -> None:
    assert parse_guard("p95_latency_ms:-10%") == ("p95_latency_ms", pytest.approx(-0.10))
    assert parse_guard(" throughput:-2.5% ") == ("throughput", pytest.approx(-0.025))
    assert parse_guard("x:0%") == ("x", 0.0)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one guard"):
        decide({}, {}, [])
    with pytest.raises(ValueError, match="method must be one of t, hl, bootstrap"):
        decide({}, {}, [TP], method="z")
    with pytest.raises(ValueError, match="confidence"):
        decide({}, {}, [TP], confidence=1.0)
    with pytest.raises(ValueError, match="direction must be maximize or minimize"):
        Guard("x", "up")  # type: ignore[arg-type]


class Pairs:
    """A measure_pair: after = before x ratio, with small noise; counts its calls."""

    def __init__(self, ratio: float, *, cv: float = 0.02, seed: int = 0) -> None:
        self.ratio, self.cv, self.calls = ratio, cv, 0
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> tuple[dict[str, float], dict[str, float]]:
        self.calls += 1
        b, a = 1000 * math.exp(self.rng.normal(0, self.cv)), 1000 * math.exp(self.rng.normal(0, self.cv))
        return {"throughput": b}, {"throughput": a * self.ratio}


def test_sequential_stops_at_the_first_clear_answer() -> None:
    src = Pairs(0.6)
    d, pairs = sequential(src, [TP], initial_pairs=4, max_pairs=16)
    assert d.decision == "roll_back" and pairs == 4 and src.calls == 4


def test_sequential_extends_while_inconclusive_then_stops_at_the_maximum() -> None:
    src = Pairs(0.9, cv=0.03, seed=1)  # exactly at the limit: never clear
    d, pairs = sequential(src, [TP], initial_pairs=4, max_pairs=12, batch=2)
    assert d.decision == "inconclusive" and pairs == 12 and src.calls == 12
    assert d.metrics[0].n_before == 12


def test_sequential_extends_until_it_can_tell() -> None:
    src = Pairs(1.0, cv=0.10, seed=2)  # noisy at first: needs more than 3 pairs to show no harm
    d, pairs = sequential(src, [TP], initial_pairs=3, max_pairs=40, batch=2)
    assert d.decision == "keep" and 3 < pairs < 40


def test_sequential_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError, match="initial_pairs"):
        sequential(Pairs(1.0), [TP], initial_pairs=5, max_pairs=4)


def test_pairs_for_window() -> None:
    assert pairs_for_window(600, 30) == (DEFAULT_INITIAL_PAIRS, 10)
    assert pairs_for_window(600, 15) == (DEFAULT_INITIAL_PAIRS, 20)
    assert pairs_for_window(600, 30, max_window_s=1200) == (DEFAULT_INITIAL_PAIRS, 20)
    assert pairs_for_window(120, 20) == (3, 3)
    assert DEFAULT_INITIAL_PAIRS <= DEFAULT_MAX_PAIRS
    with pytest.raises(ValueError, match="need at least 3"):
        pairs_for_window(100, 30)
    with pytest.raises(ValueError, match="positive"):
        pairs_for_window(600, 0)


def _keep_share(effect: float, noise: np.ndarray, method: str) -> float:
    """Share kept over fixed noise draws when the after side is ``effect`` better."""
    kept = 0
    for row in noise:
        b, a = list(row[0]), list(row[1] * (1.0 + effect))
        kept += decide({"throughput": b}, {"throughput": a}, [TP], method=method).decision == "keep"
    return kept / len(noise)


@settings(max_examples=25, deadline=None)
@given(worse=st.floats(0.0, 0.4), more=st.floats(0.0, 0.3), cv=st.floats(0.01, 0.2),
       n=st.integers(3, 10), seed=st.integers(0, 2**16), method=st.sampled_from(["t", "hl"]))
def test_a_larger_degradation_is_never_kept_more_often(worse: float, more: float, cv: float, n: int, seed: int,
                                                       method: str) -> None:
    rng = np.random.default_rng(seed)
    noise = 1000 * np.exp(rng.normal(0.0, cv, size=(12, 2, n)))
    small, large = -worse / 2, -worse / 2 - more  # large is the bigger degradation
    assert _keep_share(large, noise, method) <= _keep_share(small, noise, method)
