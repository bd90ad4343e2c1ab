"""BoundedGPSampler: the training set stays bounded and keeps good trials; trials outside the space are left out."""

from __future__ import annotations

import importlib.util

import optuna
import pytest
from optuna.study import StudyDirection

from optimizer.gp import BOUNDED, BoundedGPSampler, InRangeGPSampler, in_space, select_training_trials


def _study(n: int, *, constrained: bool = False) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(n):
        t = study.ask()
        x = t.suggest_float("x", 0, 1)
        if constrained:
            t.set_constraint("sla", 1.0 if i % 3 == 0 else -1.0)
        study.tell(t, [x, x * x + (i % 7) / 10])
    return study


def test_small_studies_are_used_whole():
    trials = _study(20).trials
    assert select_training_trials(trials, [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE], 50) == trials


def test_selection_is_bounded_keeps_the_front_and_the_newest():
    study = _study(300, constrained=True)
    trials = study.trials
    chosen = select_training_trials(trials, study.directions, 100)
    assert len(chosen) == 100
    numbers = [t.number for t in chosen]
    assert numbers == sorted(numbers)
    assert {t.number for t in trials[-50:]} <= set(numbers)  # the most recent half
    feasible_front = [t for t in study.best_trials]  # Optuna's own feasible Pareto front
    assert {t.number for t in feasible_front} <= set(numbers)
    older = [t for t in chosen if t.number < 200]  # below the newest 100: only the "best" half reaches here
    assert older and all(t.constraints["sla"] <= 0 for t in older)  # infeasible ones never count as best


def test_bad_bound_is_refused():
    with pytest.raises(ValueError, match="max_trials must be >= 2"):
        BoundedGPSampler(max_trials=1)


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="GPSampler needs PyTorch: pip install 'novatune[gp]'"
)
def test_bounded_gp_runs_a_constrained_study_and_fits_on_the_bound():
    assert BOUNDED, "the installed Optuna lacks GPSampler._sample_relative_impl: the bound would not apply"
    seen: list[int] = []

    class Spy(BoundedGPSampler):
        def _sample_relative_impl(self, study, completed, running, space):
            seen.append(len(select_training_trials(completed, study.directions, self.max_trials)))
            return super()._sample_relative_impl(study, completed, running, space)

    study = _study(30, constrained=True)
    study.sampler = Spy(seed=1, max_trials=12, n_startup_trials=5)
    for _ in range(3):
        t = study.ask()
        x = t.suggest_float("x", 0, 1)
        t.set_constraint("sla", -1.0)
        study.tell(t, [x, x * x])
    assert seen and max(seen) == 12
    assert all(0 <= t.params["x"] <= 1 for t in study.trials)


def test_in_space_says_which_trials_lie_inside():
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.trial import create_trial

    space = {"x": IntDistribution(1, 50), "c": CategoricalDistribution(["a", "b"])}
    inside = create_trial(params={"x": 50, "c": "b"}, distributions=space, value=1.0)
    assert in_space(inside, space)
    assert not in_space(inside, {"x": IntDistribution(1, 49)})
    assert not in_space(inside, {"c": CategoricalDistribution(["a"])})
    assert in_space(inside, {"other": IntDistribution(0, 1)})  # a knob the trial has no value for


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="GPSampler needs PyTorch: pip install 'novatune[gp]'"
)
@pytest.mark.parametrize("sampler", [InRangeGPSampler, BoundedGPSampler])
def test_a_best_trial_outside_the_space_does_not_stop_the_gp(sampler):
    """Trial 0 is the machine as found (swappiness 60, say) and the best so far; the spec's range is 1-50.

    Optuna's GP starts its acquisition search from the best trials and asserts they are on the space's grid:
    fitted on every trial, each of these asks failed (AssertionError in optim_mixed)."""
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    for seed in range(3):
        study = optuna.create_study(direction="maximize", sampler=sampler(seed=seed, n_startup_trials=3))
        study.enqueue_trial({"x": 60})
        with pytest.warns(UserWarning, match="out of range"):
            study.optimize(lambda t: 100.0 + 0 * t.suggest_int("x", 1, 50), n_trials=1)
        for x, value in [(5, 1.0), (20, 2.0), (40, 3.0)]:
            study.add_trial(create_trial(params={"x": x}, distributions={"x": IntDistribution(1, 50)}, value=value))
        study.optimize(lambda t: float(t.suggest_int("x", 1, 50)), n_trials=3)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 7
        assert all(1 <= t.params["x"] <= 50 for t in study.trials[1:])
