import itertools
import math
import warnings

import numpy as np
import optuna
import pytest

from optimizer.convergence import ConvergenceMonitor, terminator_says_stop

MAXMIN = ["maximize", "minimize"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_single_objective_converges_after_patience_without_significant_gain():
    m = ConvergenceMonitor(["minimize"], patience=3, min_rel_improvement=0.01)
    states = [m.update([v]) for v in [10.0, 9.0, 8.95, 8.99, 9.5]]
    assert [s.converged for s in states] == [False, False, False, False, True]
    last = states[-1]
    assert last.trials_since_improvement == 3
    assert last.best == [8.95]
    assert last.improved_at == 1  # 8.95 is < 1 % better than 9: it did not count
    assert last.best_trial == 2
    assert last.reason == "best value improved < 1% over the last 3 trials (best 8.95 at trial 2)"


def test_a_significant_improvement_resets_the_counter():
    m = ConvergenceMonitor(["maximize"], patience=2, min_rel_improvement=0.05)
    m.update([100.0])
    m.update([101.0])
    s = m.update([120.0])
    assert not s.converged and s.trials_since_improvement == 0 and s.improved_at == 2
    assert "improved 20.0% at trial 2" in s.reason


def test_slow_creep_counts_once_it_adds_up_over_the_anchor():
    m = ConvergenceMonitor(["maximize"], patience=5, min_rel_improvement=0.01)
    m.update([100.0])
    states = [m.update([100.0 + 0.4 * k]) for k in range(1, 4)]  # +0.4 %, +0.8 %, +1.2 % vs anchor
    assert [s.trials_since_improvement for s in states] == [1, 2, 0]


def test_failed_and_infeasible_trials_count_toward_patience():
    m = ConvergenceMonitor(["maximize"], patience=3)
    m.update([5.0])
    m.update(None)
    m.update([50.0], feasible=False)  # infeasible: its value is not progress
    s = m.update([float("nan")])
    assert s.converged and s.best == [5.0] and s.trials_since_improvement == 3


def test_min_trials_delays_convergence():
    m = ConvergenceMonitor(["maximize"], patience=1, min_trials=4)
    states = [m.update([1.0]) for _ in range(4)]
    assert [s.converged for s in states] == [False, False, False, True]
    assert "waiting for min_trials=4" in states[1].reason


def test_hypervolume_uses_baseline_normalised_frozen_reference():
    m = ConvergenceMonitor(MAXMIN, patience=8, reference_margin=0.5)
    s = m.update([100.0, 1.0])
    # normalised baseline loss (-1, 1); reference (-0.5, 1.5) -> HV 0.5 * 0.5
    assert s.hypervolume == pytest.approx(0.25)
    assert s.reference == pytest.approx([-0.5, 1.5])
    s = m.update([120.0, 1.0])
    assert s.hypervolume == pytest.approx(0.7 * 0.5)
    assert s.trials_since_improvement == 0 and "hypervolume" in s.reason


def test_a_point_that_would_only_move_the_reference_is_not_an_improvement():
    m = ConvergenceMonitor(MAXMIN, patience=2)
    m.update([100.0, 1.0])
    before = m.update([120.0, 1.2]).hypervolume
    # very cheap but very slow: with a reference from "all points so far" this widens the nadir
    # and the hypervolume jumps; with the frozen reference it adds nothing.
    s = m.update([10.0, 0.9])
    assert s.hypervolume == pytest.approx(before)
    assert s.trials_since_improvement == 1
    s = m.update([5.0, 100.0])  # a terrible point far outside: still nothing
    assert s.converged and s.hypervolume == pytest.approx(before)
    assert s.reason.startswith("hypervolume improved < 1% over the last 2 trials (best ")
    assert s.reason.endswith("at trial 1)")


def test_hypervolume_history_is_monotone_and_nan_until_first_feasible():
    m = ConvergenceMonitor(MAXMIN, patience=10)
    m.update(None)
    for v in ([100.0, 1.0], [90.0, 0.8], [130.0, 1.1], [95.0, 1.3]):
        s = m.update(v)
    assert math.isnan(s.history[0])
    h = s.history[1:]
    assert all(b >= a for a, b in itertools.pairwise(h))
    assert s.best == [130.0, 0.8]


def test_reference_from_several_first_trials():
    m = ConvergenceMonitor(MAXMIN, reference_trials=2)
    s = m.update([100.0, 1.0])
    assert s.hypervolume is None and "no reference point yet (1 of 2" in s.reason
    s = m.update([80.0, 0.5])
    assert s.reference == pytest.approx([-0.8 + 0.5, 1.0 + 0.5])
    assert s.hypervolume > 0


def test_replay_matches_feeding_one_by_one():
    vals = np.array([[100, 1.0], [np.nan, np.nan], [110, 1.0], [110.5, 1.0], [109, 1.0]])
    feas = [True, False, True, True, True]
    s = ConvergenceMonitor.replay(vals, feas, MAXMIN, patience=2)
    assert s.converged and s.trials_seen == 5 and s.improved_at == 2


def test_terminator_verdict_is_reported_as_reason():
    m = ConvergenceMonitor(["maximize"], patience=10, min_trials=2)
    m.update([1.0], terminator=(True, "ignored before min_trials"))
    s = m.update([5.0], terminator=(True, "regret bound 0.01 is below the statistical error 0.2"))
    assert s.converged and s.reason == "optuna terminator: regret bound 0.01 is below the statistical error 0.2"


def test_update_from_optuna_trials_reads_state_and_constraints():
    study = optuna.create_study(direction="maximize")
    m = ConvergenceMonitor(["maximize"], patience=2)
    for value, viol, state in [(1.0, 0.0, "ok"), (9.0, 1.0, "ok"), (None, None, "fail"), (1.005, -1.0, "ok")]:
        t = study.ask()
        if state == "fail":
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            t.set_constraint("latency", viol)
            study.tell(t, value)
        s = m.update_from_trial(study.trials[-1])
    assert s.converged and s.best == [1.005]


def test_validation():
    with pytest.raises(ValueError, match="direction"):
        ConvergenceMonitor(["up"])
    with pytest.raises(ValueError, match="2 objectives"):
        ConvergenceMonitor(MAXMIN).update([1.0])


def _study(values):
    study = optuna.create_study(direction="minimize")
    for v in values:
        t = study.ask()
        t.suggest_float("x", 0, 1)
        study.tell(t, v)
    return study


def test_terminator_adapter_never_raises_and_explains():
    stop, reason = terminator_says_stop(optuna.create_study(directions=MAXMIN))
    assert not stop and reason.startswith("terminator unavailable: ") and "single-objective" in reason
    try:
        import torch  # noqa: F401 - only whether PyTorch imports
    except ImportError:
        stop, reason = terminator_says_stop(_study([1.0] * 25))
        assert not stop and reason.startswith("terminator unavailable: ") and "torch" in reason


def test_terminator_adapter_stagnation_runs_without_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the adapter silences optuna's deprecation warnings
        stop, reason = terminator_says_stop(_study([1.0] + [2.0] * 5), evaluator="stagnation",
                                            min_n_trials=3, max_stagnation_trials=3)
    assert stop and "stagnation" in reason
    stop, reason = terminator_says_stop(_study([1.0, 2.0]), evaluator="stagnation", min_n_trials=3)
    assert not stop and "waits for 3 complete trials (2 so far)" in reason
