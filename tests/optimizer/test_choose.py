import math

import numpy as np
import pytest

from optimizer.choose import choose
from optimizer.pareto import knee_index

MAXMIN = ["maximize", "minimize"]
NAMES = ["throughput_rps", "cost_usd_per_hour"]
VALUES = [[1000, 0.30], [1400, 0.80], [1300, 0.45], [2000, 0.20], [np.nan, np.nan]]
FEASIBLE = [True, True, True, False, False]  # trial 3 broke the SLA, trial 4 failed


def test_knee_is_the_pareto_knee_of_feasible_trials():
    c = choose(VALUES, FEASIBLE, MAXMIN, NAMES)
    assert c.index == 2 and c.rule == "knee"
    assert c.index == knee_index(np.array(VALUES[:3]), MAXMIN)
    assert c.reason == ("trial 2: knee of the Pareto front among 3 feasible trials "
                        "(throughput_rps=1300, cost_usd_per_hour=0.45)")


def test_knee_uses_trial_numbers_in_reason_but_returns_the_index():
    c = choose(VALUES, FEASIBLE, MAXMIN, NAMES, trial_numbers=[10, 11, 12, 13, 14])
    assert c.index == 2 and c.reason.startswith("trial 12:")


def test_max_perf_under_budget():
    c = choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="max-perf-under-budget", budget={"cost_usd_per_hour": 0.6})
    assert c.index == 2  # trial 3 is faster and cheaper but infeasible
    assert c.reason == "trial 2: highest throughput_rps 1300 among 2 trials with cost_usd_per_hour <= 0.6"


def test_min_cost_under_sla_on_a_recorded_metric():
    metrics = [{"latency_p99_ms": 25}, {"latency_p99_ms": 12}, {"latency_p99_ms": 19}, {"latency_p99_ms": 1}, {}]
    c = choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="min-cost-under-sla",
               sla={"latency_p99_ms": ("<=", 20)}, metrics=metrics)
    assert c.index == 2 and "lowest cost_usd_per_hour 0.45" in c.reason and "latency_p99_ms <= 20" in c.reason
    c = choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="min-cost-under-sla",
               sla={"latency_p99_ms": ("<", 19)}, metrics=metrics)
    assert c.index == 1


def test_sla_on_an_objective_and_ge_operator():
    c = choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="min-cost-under-sla", sla={"throughput_rps": (">=", 1350)})
    assert c.index == 1


def test_filters_apply_to_the_knee_too():
    c = choose(VALUES, FEASIBLE, MAXMIN, NAMES, budget={"cost_usd_per_hour": 0.5})
    assert c.index in (0, 2) and "cost_usd_per_hour <= 0.5" in c.reason


def test_best_rule_breaks_ties_on_the_other_objectives():
    vals = [[100, 2.0], [100, 1.0], [90, 0.5]]
    c = choose(vals, [True] * 3, MAXMIN, NAMES, rule="best", target="throughput_rps")
    assert c.index == 1


def test_no_trial_qualifies_names_the_rule_and_the_closest_candidate():
    with pytest.raises(ValueError) as err:
        choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="max-perf-under-budget", budget={"cost_usd_per_hour": 0.25})
    msg = str(err.value)
    assert "max-perf-under-budget" in msg and "cost_usd_per_hour <= 0.25" in msg
    assert "closest is trial 0 (cost_usd_per_hour=0.3, 20.0% over 0.25)" in msg


def test_nothing_feasible_is_a_clear_error():
    with pytest.raises(ValueError, match="'knee': no feasible trial"):
        choose(VALUES, [False] * 5, MAXMIN, NAMES)


def test_input_errors():
    with pytest.raises(ValueError, match="needs a budget"):
        choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="max-perf-under-budget")
    with pytest.raises(ValueError, match="needs an SLA"):
        choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="min-cost-under-sla")
    with pytest.raises(ValueError, match="rule 'cheapest'"):
        choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="cheapest")  # type: ignore[arg-type]  # - a rule that does not exist, on purpose
    with pytest.raises(ValueError, match="neither an objective"):
        choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="min-cost-under-sla", sla={"p99": ("<=", 1)})
    with pytest.raises(ValueError, match="operator '=>'"):
        choose(VALUES, FEASIBLE, MAXMIN, NAMES, rule="min-cost-under-sla", sla={"throughput_rps": ("=>", 1)})
    assert math.isnan(VALUES[4][0])
