"""The right-sizing recommender (part A): histogram, signals, recommend(), synthetic shapes, replay scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.rightsizing import synthetic
from optimizer.rightsizing.histogram import DecayingHistogram
from optimizer.rightsizing.model import FINDINGS, PROFILES, UsageSeries
from optimizer.rightsizing.recommend import MIN_HOURS, recommend
from optimizer.rightsizing.replay import RULES, fixed_rule, replay, score, split
from optimizer.rightsizing.signals import burstiness, hourly, risk_score, seasonality, trend

T0 = 1_700_000_000.0


def series(cpu, mem, *, interval=300.0, cap_cpu=None, cap_mem=None, ooms=(), throttled=None, target="t"):
    n = len(cpu)
    t = T0 + np.arange(n) * interval
    return UsageSeries(target=target, t=t, cpu_cores=np.asarray(cpu, float), mem_gib=np.asarray(mem, float),
                       cpu_capacity=None if cap_cpu is None else np.full(n, float(cap_cpu)),
                       mem_capacity=None if cap_mem is None else np.full(n, float(cap_mem)),
                       throttled_ratio=throttled, oom_times=ooms)


# -- histogram --------------------------------------------------------------------------------------------

def test_histogram_percentiles_match_the_samples_within_a_bucket():
    v = np.random.default_rng(0).uniform(0, 10, 5000)
    h = DecayingHistogram.from_samples(v, np.zeros_like(v), half_life_s=3600, first_bucket=0.01, ratio=1.05)
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(v, q))
        assert exact <= h.percentile(q) <= exact * 1.05 + 0.01
    assert h.percentile(1.0) >= v.max()


def test_histogram_decay_halves_the_weight_of_old_samples():
    # 100 samples of 1.0 one half-life old vs 100 of 5.0 now: weights 50 vs 100 -> the median is 5
    t = np.r_[np.zeros(100), np.full(100, 3600.0)]
    v = np.r_[np.ones(100), np.full(100, 5.0)]
    h = DecayingHistogram.from_samples(v, t, half_life_s=3600)
    assert h.total_weight == pytest.approx(150.0)
    assert h.percentile(0.5) >= 5.0
    assert h.percentile(0.3) < 1.1  # 1/3 of the weight is the old samples
    flat = DecayingHistogram.from_samples(v, t, half_life_s=math.inf)
    assert flat.percentile(0.45) < 1.1


def test_histogram_refuses_bad_input():
    with pytest.raises(ValueError, match="finite"):
        DecayingHistogram.from_samples(np.array([-1.0]), np.array([0.0]), half_life_s=1)
    with pytest.raises(ValueError):
        DecayingHistogram.from_samples(np.ones(3), np.ones(2), half_life_s=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DecayingHistogram.from_samples(np.ones(3), np.zeros(3), half_life_s=1).percentile(1.5)
    assert DecayingHistogram.from_samples(np.zeros(0), np.zeros(0), half_life_s=1).percentile(0.9) == 0.0


# -- signals ----------------------------------------------------------------------------------------------

def test_hourly_mean_and_max():
    t = T0 + np.arange(24) * 300.0  # two hours
    v = np.r_[np.ones(12), np.full(12, 3.0)]
    v[5] = 9.0
    h, m = hourly(t, v, how="max")
    assert list(h) == [0.0, 1.0] and list(m) == [9.0, 3.0]
    _, a = hourly(t, v, how="mean")
    assert a[0] == pytest.approx((11 + 9) / 12) and a[1] == 3.0


def test_trend_finds_a_rise_and_ignores_noise():
    hours = np.arange(240.0)
    rng = np.random.default_rng(1)
    rising = 1.0 + 0.1 * hours / 24 + rng.normal(0, 0.02, 240)
    tr = trend(hours, rising)
    assert tr.significant and tr.slope_per_day == pytest.approx(0.1, rel=0.1)
    flat = trend(hours, 1.0 + rng.normal(0, 0.05, 240))
    assert not flat.significant
    assert not trend(hours[:10], rising[:10]).significant  # too short


def test_seasonality_daily_and_weekly_and_none():
    hours = np.arange(24 * 21.0)
    daily = 1 + np.sin(2 * np.pi * hours / 24)
    c = seasonality(hours, daily)
    assert c.period_h == 24 and c.peak == pytest.approx(2.0, abs=0.05)
    weekly = np.where((hours // 24) % 7 >= 5, 0.2, 1.0) * (1 + 0.1 * np.sin(2 * np.pi * hours / 24))
    assert seasonality(hours, weekly).period_h == 168
    noise = np.random.default_rng(2).normal(1, 0.1, len(hours))
    assert not seasonality(hours, noise).found


def test_burstiness_and_risk_scale():
    assert burstiness(np.ones(10)) == 0.0 and burstiness(np.zeros(5)) == 0.0
    assert burstiness(np.r_[np.zeros(99), [100.0]]) == 2.0  # capped
    v = np.r_[np.ones(95), np.full(5, 3.0)]  # 5 % above 2
    assert risk_score(v, 2.0) == pytest.approx(3.0)
    assert risk_score(v, 5.0) == 0.0
    assert risk_score(v, 5.0, ooms=1) == 3.0 and risk_score(v, 5.0, ooms=3) == 4.0
    assert risk_score(v, 5.0, throttled=np.full(100, 0.25)) == pytest.approx(4.0)


# -- recommend --------------------------------------------------------------------------------------------

def test_steady_overprovisioned_vm():
    rng = np.random.default_rng(3)
    n = 14 * 288
    u = series(2.0 + rng.normal(0, 0.1, n).clip(-0.3, 0.3), 9.0 + rng.normal(0, 0.05, n), cap_cpu=8, cap_mem=32)
    r = recommend(u)
    assert r.finding == "over-provisioned" and r.cpu.finding == "over-provisioned"
    assert 2.0 < r.cpu.target < 3.2 and 9.0 < r.memory.target < 12.0
    assert r.memory.target >= r.memory.observed["peak"]
    assert r.needs_hours == 0 and 0 < r.confidence <= 1 and r.risk < 1
    assert any("memory: peak" in s for s in r.reasons) and all(isinstance(s, str) for s in r.reasons)
    d = r.to_dict()
    assert d["risk_label"] == "very-low" and d["finding"] in FINDINGS


def test_short_series_is_insufficient_data_with_needs_hours():
    u = series([1.0, 1.2, 0.9], [2.0, 2.0, 2.1], cap_cpu=4, cap_mem=8)
    r = recommend(u)
    assert r.finding == "insufficient-data" and r.needs_hours > 0
    assert r.memory.target >= 2.1 and r.cpu.target > 0
    hours18 = series(np.ones(18 * 12), np.ones(18 * 12))
    r = recommend(hours18)
    assert r.finding == "insufficient-data"
    assert r.needs_hours == pytest.approx(MIN_HOURS - hours18.span_hours, abs=0.01)
    assert "needs" in r.reasons[0]
    empty = UsageSeries(target="e", t=np.zeros(0), cpu_cores=np.zeros(0), mem_gib=np.zeros(0))
    assert recommend(empty).finding == "insufficient-data"
    one = series([0.5], [1.0])
    assert recommend(one).finding == "insufficient-data"


def test_bad_profile_is_a_value_error_naming_the_allowed():
    with pytest.raises(ValueError, match="savings, balanced, reliability"):
        recommend(series(np.ones(400), np.ones(400)), profile="cheap")


def test_saturated_cpu_is_under_provisioned_and_sized_above_capacity():
    rng = np.random.default_rng(4)
    n = 7 * 288
    cpu = np.minimum(rng.uniform(3.0, 5.0, n), 4.0)  # demand often above the 4 cores it has: clipped
    r = recommend(series(cpu, np.full(n, 4.0), cap_cpu=4, cap_mem=16))
    assert r.cpu.finding == "under-provisioned" and r.finding == "under-provisioned"
    assert r.cpu.target > 4.0 and r.cpu.risk >= 3
    assert any("saturated" in s for s in r.reasons)


def test_throttled_cpu_is_censored_too():
    n = 3 * 288
    r = recommend(series(np.full(n, 1.0), np.ones(n), cap_cpu=2, cap_mem=4, throttled=np.full(n, 0.3)))
    assert r.cpu.finding == "under-provisioned" and r.cpu.target > 2.0


def test_oom_bumps_memory_and_marks_risk():
    n = 3 * 288
    mem = np.full(n, 3.9)
    plain = recommend(series(np.ones(n), mem, cap_cpu=2, cap_mem=4))
    oom = recommend(series(np.ones(n), mem, cap_cpu=2, cap_mem=4, ooms=(T0 + 3600,)))
    assert oom.memory.target >= max(3.9 * 1.2, 3.9 + 100 / 1024)
    assert oom.memory.target >= plain.memory.target
    assert oom.memory.finding == "under-provisioned" and oom.memory.risk >= 3
    assert any("OOM" in s for s in oom.reasons)


def test_trend_and_cycle_raise_the_target():
    days = 10
    n = days * 288
    t_days = np.arange(n) / 288
    rising = recommend(series(1.0 + 0.2 * t_days, np.full(n, 2.0) + 0.1 * t_days, cap_cpu=8, cap_mem=16))
    assert rising.cpu.trend_per_day == pytest.approx(0.2, rel=0.15)
    assert rising.cpu.target > 1.0 + 0.2 * days * 1.5  # extrapolated beyond the last value
    assert any("rising" in s for s in rising.reasons)
    hour = (np.arange(n) * 300 / 3600) % 24
    cyc = 0.2 + 1.8 * (np.abs(hour - 14) < 2)  # 4 busy hours a day at 2 cores
    r = recommend(series(cyc, np.ones(n), cap_cpu=4, cap_mem=4))
    assert r.cpu.seasonal and r.cpu.target >= 2.0


def test_current_unknown_is_optimized_with_the_risk_of_the_recommendation():
    n = 3 * 288
    r = recommend(series(np.ones(n), np.ones(n)))
    assert r.cpu.current is None and r.cpu.finding == "optimized"
    assert any("current size unknown" in s for s in r.reasons)


def test_stale_history_halves_confidence():
    n = 3 * 288
    u = series(np.ones(n), np.ones(n), cap_cpu=2, cap_mem=2)
    fresh, stale = recommend(u), recommend(u, now=float(u.t[-1]) + 30 * 86400)
    assert stale.confidence == pytest.approx(fresh.confidence / 2, abs=0.002)


def test_confidence_grows_with_history():
    rng = np.random.default_rng(5)
    long = series(1 + rng.normal(0, 0.1, 20 * 288).clip(-0.5), np.ones(20 * 288))
    assert recommend(long.head(2 * 288)).confidence < recommend(long).confidence


_shape = st.sampled_from(synthetic.SHAPES)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_shape, seed=st.integers(0, 10_000), days=st.floats(0.05, 6))
def test_property_memory_at_least_peak_and_profiles_monotone(shape, seed, days):
    u = synthetic.generate(shape, seed=seed, days=days, interval_s=600)
    recs = [recommend(u, profile=p) for p in PROFILES]
    peak = float(u.mem_gib.max())
    for r in recs:
        assert r.memory.target >= peak
        assert r.finding in FINDINGS and 0 <= r.risk <= 4 and 0 <= r.confidence <= 1
        assert math.isfinite(r.cpu.target) and r.cpu.target > 0
    for a, b in zip(recs, recs[1:], strict=False):
        assert a.cpu.target <= b.cpu.target * (1 + 1e-9)
        assert a.memory.target <= b.memory.target * (1 + 1e-9)


@pytest.mark.parametrize("shape", synthetic.SHAPES)
def test_balanced_memory_is_at_least_every_fixed_rule(shape):
    u = synthetic.generate(shape, seed=11, days=6)
    target = recommend(u).memory.target
    assert all(target >= fixed_rule(u.mem_gib, rule) for rule in RULES)


# -- synthetic --------------------------------------------------------------------------------------------

def test_synthetic_shapes_are_seeded_and_shaped():
    a, b = synthetic.generate("bursty", seed=1), synthetic.generate("bursty", seed=1)
    assert np.array_equal(a.cpu_cores, b.cpu_cores)
    assert not np.array_equal(a.cpu_cores, synthetic.generate("bursty", seed=2).cpu_cores)
    assert synthetic.generate("short", seed=1, days=10).span_hours <= 72
    full = synthetic.generate("near-full", seed=1)
    assert np.mean(full.cpu_cores >= 0.95 * full.cpu_capacity) > 0.3
    leak = synthetic.generate("leak", seed=1, days=8)
    assert leak.mem_gib[-288:].mean() > 1.5 * leak.mem_gib[:288].mean()
    f = synthetic.fleet("steady", 3, seed=1)
    assert list(f) == ["steady-1-0", "steady-1-1", "steady-1-2"]
    with pytest.raises(ValueError, match="allowed"):
        synthetic.generate("square", seed=1)


# -- replay -----------------------------------------------------------------------------------------------

def test_split_and_rules_and_score():
    u = series(np.arange(10.0), np.ones(10))
    assert split(u, 0.5) == 5 and split(u, 0.01) == 1
    with pytest.raises(ValueError):
        split(u, 1.0)
    v = np.arange(101.0)
    assert fixed_rule(v, "p90+15%") == pytest.approx(90 * 1.15)
    assert fixed_rule(v, "max+10%") == pytest.approx(110.0)
    s = score(4.0, np.array([1.0, 2.0, 5.0, 4.0]))
    assert s.under_pct == 25.0 and s.unused_pct == pytest.approx(100 * (3 + 2 + 0 + 0) / 16)
    assert set(RULES) == {"p90+15%", "p95+20%", "p99+20%", "max+10%"}


def test_replay_reads_only_the_training_part():
    # a spike after the split must not change the recommendation, and is what the test part scores
    n = 4 * 288
    cpu = np.ones(n)
    cpu[n // 2 + 10] = 50.0
    u = series(cpu, np.ones(n), cap_cpu=4, cap_mem=4)
    res = replay({"a": u}, train_frac=0.5)
    v = res.vms[0]
    assert v.n_train == n // 2 and v.n_test == n - n // 2
    assert v.recommendation.cpu.target == recommend(u.head(n // 2)).cpu.target
    assert v.scores["cpu"]["recommender"].above == 1
    summ = res.summary()
    assert summ["test_samples"] == n - n // 2
    assert summ["cpu"]["recommender"]["under_provisioned_pct"] == pytest.approx(100 / (n - n // 2), abs=1e-3)


def test_replay_dominance_is_strict_on_both_figures():
    n = 4 * 288
    u = series(np.ones(n), np.ones(n), cap_cpu=4, cap_mem=4)

    def huge(train, profile):
        r = recommend(train, profile=profile)
        from dataclasses import replace
        return replace(r, cpu=replace(r.cpu, target=100.0))

    s = replay({"a": u}, rec_fn=huge).summary()
    # every rule has 0 under-provisioning like the recommender: none is strictly better on both, all weakly
    assert s["cpu"]["dominated_by"] == []
    assert set(s["cpu"]["weakly_dominated_by"]) == set(RULES)

    def tiny(train, profile):
        r = recommend(train, profile=profile)
        from dataclasses import replace
        return replace(r, cpu=replace(r.cpu, target=1.0 - 1e-6))

    noisy = series(1 + 0.01 * np.sin(np.arange(n)), np.ones(n), cap_cpu=4, cap_mem=4)
    s = replay({"a": noisy}, rec_fn=tiny).summary()
    assert s["cpu"]["recommender"]["under_provisioned_pct"] > 40
    assert "max+10%" not in s["cpu"]["dominated_by"]  # more unused capacity than the tiny size


def test_one_sample_vm_is_recommended_not_scored():
    res = replay({"one": series([1.0], [1.0]), "ok": series(np.ones(100), np.ones(100))})
    s = res.summary()
    assert s["vms"] == 2 and s["scored"] == 1
    assert res.vms[0].recommendation.finding == "insufficient-data"


def test_old_bursts_are_not_forgotten_by_the_decay():
    # bursts in the first days only: the decayed percentile alone would forget them, the level keeps them
    n = 10 * 288
    cpu = np.full(n, 0.2)
    cpu[: 4 * 288 : 10] = 2.0  # 10 % of the first 4 days: 4 % of the history
    r = recommend(series(cpu, np.ones(n), cap_cpu=4, cap_mem=4))
    assert r.cpu.target >= float(np.percentile(cpu, 98))
