import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.noise import (
    TrialEstimate,
    merge_duplicates,
    noisy_pareto_mask,
    params_key,
    pooled_noise,
    remeasure_candidates,
    significantly_better,
)
from optimizer.pareto import pareto_mask

MAXMIN = ["maximize", "minimize"]


def est(values, half, n=5):
    """Estimate with a symmetric interval of relative half-width ``half`` per objective."""
    return TrialEstimate(
        tuple(values), tuple(v - abs(v) * half for v in values), tuple(v + abs(v) * half for v in values), n
    )


def test_from_samples_gives_median_and_interval_per_objective():
    e = TrialEstimate.from_samples([[100, 1.0], [104, 1.0], [98, 1.1], [101, 1.0]])
    assert e.values == (100.5, 1.0) and e.n == 4
    assert e.ci_low[0] <= 100.5 <= e.ci_high[0] and e.ci_high[0] - e.ci_low[0] > 0
    single = TrialEstimate.from_samples([[100, 1.0]])
    assert math.isnan(single.ci_low[0]) and single.n == 1


def test_from_metrics_reads_what_the_runner_stores():
    m = {"throughput_rps": 1000.0, "throughput_rps_ci_low": 950.0, "throughput_rps_ci_high": 1040.0,
         "cost_usd_per_hour": 0.5}
    e = TrialEstimate.from_metrics(m, ["throughput_rps", "cost_usd_per_hour"], n=3)
    assert e.values == (1000.0, 0.5) and e.ci_low[0] == 950.0 and math.isnan(e.ci_low[1]) and e.n == 3


def test_difference_inside_the_noise_is_not_better():
    a, b = est([103.0], 0.05), est([100.0], 0.05)
    assert not significantly_better(a, b, "maximize")
    assert not significantly_better(b, a, "maximize")
    c = est([120.0], 0.05)
    assert significantly_better(c, b, "maximize")
    assert not significantly_better(c, b, "minimize")
    assert significantly_better(b, c, "minimize")


def test_single_repeats_borrow_the_pooled_noise():
    a, b = est([103.0], 0.0, n=1), est([100.0], 0.0, n=1)
    a = TrialEstimate(a.values, (math.nan,), (math.nan,), 1)
    b = TrialEstimate(b.values, (math.nan,), (math.nan,), 1)
    assert significantly_better(a, b, "maximize")  # nothing known about the noise: the medians decide
    assert not significantly_better(a, b, "maximize", rel_noise=0.05)
    assert significantly_better(a, b, "maximize", rel_noise=0.01)


def test_pooled_noise_is_median_relative_half_width():
    ests = [est([100.0, 2.0], 0.02), est([50.0, 1.0], 0.04), est([10.0, 5.0], 0.10)]
    assert pooled_noise(ests) == pytest.approx([0.04, 0.04])
    unknown = TrialEstimate((1.0,), (math.nan,), (math.nan,), 1)
    assert math.isnan(pooled_noise([unknown])[0])


def test_points_inside_each_others_noise_all_stay_on_the_front():
    ests = [est([100, 1.00], 0.05), est([102, 0.99], 0.05), est([150, 0.50], 0.05)]
    plain = pareto_mask(np.array([e.values for e in ests]), MAXMIN)
    assert plain.tolist() == [False, False, True]
    # 2 is significantly better than both in both objectives: it still dominates them
    assert noisy_pareto_mask(ests, MAXMIN).tolist() == [False, False, True]
    close = [est([100, 1.00], 0.05), est([102, 0.99], 0.05), est([90, 1.5], 0.05)]
    assert pareto_mask(np.array([e.values for e in close]), MAXMIN).tolist() == [False, True, False]
    # 1 beats 0 only inside the noise: both stay; 2 is significantly worse in cost: dominated
    assert noisy_pareto_mask(close, MAXMIN).tolist() == [True, True, False]


def test_noisy_front_needs_at_least_as_good_medians_everywhere():
    # 1 is much faster, but slightly (insignificantly) more expensive: it does not dominate 0
    ests = [est([100, 1.00], 0.05), est([200, 1.01], 0.05)]
    assert noisy_pareto_mask(ests, MAXMIN).tolist() == [True, True]


def test_noisy_front_excludes_infeasible_and_non_finite():
    ests = [est([100, 1.0], 0.01), est([500, 0.1], 0.01), TrialEstimate((math.nan, 1.0), (0, 0), (0, 0), 1)]
    assert noisy_pareto_mask(ests, MAXMIN, feasible=[True, False, True]).tolist() == [True, False, False]


def test_merge_duplicates_pools_repeats_of_the_same_configuration():
    params = [{"a": 5, "b": "x"}, {"a": 6, "b": "x"}, {"b": "x", "a": 5.0}, {"a": 5, "b": "y"}]
    samples = [[[1.0], [2.0]], [[3.0]], [[4.0]], []]
    groups = merge_duplicates(params, samples)
    assert [g.indices for g in groups] == [(0, 2), (1,), (3,)]
    assert groups[0].samples[:, 0].tolist() == [1.0, 2.0, 4.0]
    assert groups[0].estimate().n == 3 and groups[0].estimate().values == (2.0,)
    assert groups[2].samples.shape == (0, 1)
    assert params_key({"x": 0.1 + 0.2}) == params_key({"x": 0.3})


def test_remeasure_prefers_uncertain_front_points_and_merges_duplicates():
    params = [{"k": i} for i in range(5)] + [{"k": 1}]
    ests = [
        est([100, 1.0], 0.01, n=9),   # 0: on the front, already precise -> no
        est([140, 1.5], 0.10, n=2),   # 1: on the front, wide -> yes (duplicate of 5)
        est([60, 3.0], 0.01, n=2),    # 2: clearly dominated -> no
        est([120, 1.2], 0.03, n=2),   # 3: on the front, few repeats -> yes
        est([99, 1.0], 0.03, n=1),    # 4: inside 0's noise -> on the noisy front, 1 repeat -> yes
        est([141, 1.5], 0.10, n=2),   # 5: same params as 1
    ]
    out = remeasure_candidates(ests, params, MAXMIN, max_n=5)
    assert 2 not in out and 0 not in out and 5 not in out
    assert out[0] == 1  # widest interval first
    assert set(out) == {1, 3, 4}
    assert remeasure_candidates(ests, params, MAXMIN, max_n=1) == [1]


def test_remeasure_includes_points_whose_noise_reaches_the_front():
    ests = [est([100, 1.0], 0.01, n=9), est([97, 1.0], 0.05, n=3), est([50, 1.0], 0.05, n=3)]
    params = [{"k": i} for i in range(3)]
    assert noisy_pareto_mask(ests, MAXMIN).tolist() == [True, True, False]
    out = remeasure_candidates(ests, params, MAXMIN, max_n=3)
    assert 1 in out and 2 not in out and 0 not in out


def test_remeasure_skips_infeasible():
    ests = [est([100, 1.0], 0.1, n=1), est([200, 0.5], 0.1, n=1)]
    assert remeasure_candidates(ests, [{"k": 0}, {"k": 1}], MAXMIN, feasible=[True, False]) == [0]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20), st.sampled_from([0.0, 0.05, 0.2])), min_size=1,
             max_size=12)
)
def test_noisy_front_contains_the_plain_front_and_equals_it_without_noise(rows):
    ests = [est([a, b], h) for a, b, h in rows]
    plain = pareto_mask(np.array([[a, b] for a, b, _ in rows], dtype=float), MAXMIN)
    noisy = noisy_pareto_mask(ests, MAXMIN)
    assert np.all(noisy[plain])
    exact = [est([a, b], 0.0) for a, b, _ in rows]
    assert noisy_pareto_mask(exact, MAXMIN).tolist() == plain.tolist()
