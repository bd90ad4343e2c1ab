"""Gain comparisons (optimizer.gain): paired by round, intervals, exact sign-flip p-values, null results."""

from __future__ import annotations

import random

import pytest

from optimizer.gain import arm_order, compare, verdict


def _rounds(factors: dict[str, float], rounds: int = 6, noise: float = 0.03,
            seed: int = 0) -> dict[str, dict[int, float]]:
    """Per arm and round: 100 x factor x a drift shared by the round x its own noise."""
    rng = random.Random(seed)
    out: dict[str, dict[int, float]] = {a: {} for a in factors}
    for r in range(rounds):
        drift = 1 + rng.uniform(-0.2, 0.2)  # the machine's drift: the same for every arm of a round
        for a, f in factors.items():
            out[a][r] = 100 * f * drift * (1 + rng.gauss(0, noise))
    return out


def test_every_arm_once_per_round_in_shuffled_orders() -> None:
    order = arm_order(["defaults", "p1", "p2", "novatune"], 5, seed=3)
    for r in range(5):
        assert sorted(a for rr, a in order if rr == r) == ["defaults", "novatune", "p1", "p2"]
    assert len({tuple(a for rr, a in order if rr == r) for r in range(5)}) > 1
    with pytest.raises(ValueError, match="at least 2"):
        arm_order(["a", "b"], 1)
    with pytest.raises(ValueError, match="distinct"):
        arm_order(["a", "a"], 3)


def test_a_real_gain_is_found_through_the_rounds_drift() -> None:
    v = _rounds({"defaults": 1.0, "novatune": 1.3})
    c = compare(v, "novatune", "defaults", metric="throughput", direction="maximize")
    assert c.better and 25 < c.gain_pct < 35 and c.low_pct > 15
    assert c.p_value == pytest.approx(2 / 2 ** 6)  # every round agrees: the smallest two-sided p of 6 rounds
    assert "better than the defaults" in verdict(c, None)


def test_lower_is_better_for_a_latency() -> None:
    v = _rounds({"defaults": 1.0, "novatune": 0.5})
    c = compare(v, "novatune", "defaults", metric="latency_p99_ms", direction="minimize")
    assert c.better and c.gain_pct == pytest.approx(100.0, rel=0.15)  # half the latency: twice as good


def test_no_difference_is_a_null_result_and_said_so() -> None:
    v = _rounds({"defaults": 1.0, "novatune": 1.0}, noise=0.05, seed=4)
    c = compare(v, "novatune", "defaults", metric="throughput", direction="maximize")
    assert not c.significant and c.low_pct < 0 < c.high_pct
    assert verdict(c, None).startswith("no gain shown: novatune is within the noise of the defaults")


def test_false_gains_are_rare_at_alpha() -> None:
    hits = sum(compare(_rounds({"d": 1.0, "n": 1.0}, noise=0.05, seed=s), "n", "d", metric="t",
                       direction="maximize").significant for s in range(1000))
    assert hits / 1000 <= 0.07  # nominal 0.05 (0.054 over 3000 seeds)


def test_against_the_best_profile() -> None:
    v = _rounds({"defaults": 1.0, "tp": 1.25, "novatune": 1.26}, noise=0.02)
    vs_d = compare(v, "novatune", "defaults", metric="t", direction="maximize")
    vs_p = compare(v, "novatune", "tp", metric="t", direction="maximize")
    assert verdict(vs_d, vs_p).endswith("as good as the best stock profile tp (difference within the noise)")
    worse = compare(_rounds({"tp": 1.5, "novatune": 1.0}, noise=0.02), "novatune", "tp", metric="t",
                    direction="maximize")
    assert "worse than the best stock profile tp" in verdict(vs_d, worse)


def test_missing_rounds_are_skipped_and_too_few_refused() -> None:
    v = {"a": {0: 100.0, 1: 110.0, 2: float("nan")}, "b": {0: 90.0, 1: 0.0, 2: 95.0}}
    with pytest.raises(ValueError, match="1 paired rounds with a positive t; at least 2 needed"):
        compare(v, "a", "b", metric="t", direction="maximize")
    with pytest.raises(ValueError, match="maximize or minimize"):
        compare(v, "a", "b", metric="t", direction="up")


def test_a_choice_that_keeps_the_defaults_is_neither_better_nor_worse_and_an_a_a_gap_is_flagged() -> None:
    same = {"defaults": {r: 100.0 + r for r in range(6)}, "novatune": {r: 100.0 + r + (r % 2) for r in range(6)}}
    c = compare(same, "novatune", "defaults", metric="throughput", direction="maximize")
    text = verdict(c, None, identical=True)
    assert text.startswith("novatune keeps the defaults (its choice changes nothing): no gain and no loss")
    assert "biased" not in text
    apart = {"defaults": {r: 100.0 for r in range(6)}, "novatune": {r: 80.0 + r % 2 for r in range(6)}}
    c = compare(apart, "novatune", "defaults", metric="throughput", direction="maximize")
    assert c.worse
    text = verdict(c, None, identical=True)
    assert "worse" not in text and "this run's measurement is biased beyond its intervals" in text
