"""novatune's own BO (the `auto` sampler): propose(), SurrogateSampler in real Optuna studies, auto's rule."""

import numpy as np
import optuna
import pytest

from optimizer.bo import SurrogateSampler, auto_sampler_name, propose

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_propose_finds_the_minimum_of_a_smooth_grid():
    X = np.linspace(0, 1, 41)[:, None]
    f = (X[:, 0] - 0.73) ** 2 + 0.1
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(8):
        rem = np.array([i for i in range(len(X)) if i not in seen])
        k = propose(X[seen], f[seen], np.ones(len(seen), bool), X[rem], rng)
        seen.append(int(rem[k]))
    assert min(f[seen]) <= 0.1 + 0.002


def test_propose_avoids_infeasible_penalty_and_uses_prior():
    X = np.eye(5)
    rng = np.random.default_rng(1)
    prior = np.array([0.9, 0.1, 0.5, 0.5, 0.5])
    assert propose(X[:0], np.zeros(0), np.zeros(0, bool), X, rng, prior_seen=prior[:0], prior_candidates=prior) == 1


def _objective(trial):
    x = trial.suggest_float("x", -3, 3)
    y = trial.suggest_int("y", 0, 10)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    return (x - 1.2) ** 2 + 0.1 * (y - 7) ** 2 + {"a": 2.0, "b": 0.0, "c": 1.0}[c]


def test_beats_random_on_a_synthetic_function():
    wins, bo_best, rnd_best = 0, [], []
    for seed in range(4):
        s = optuna.create_study(sampler=SurrogateSampler(seed=seed, n_candidates=300, n_local=100))
        s.optimize(_objective, n_trials=18)
        r = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        r.optimize(_objective, n_trials=18)
        bo_best.append(s.best_value)
        rnd_best.append(r.best_value)
        wins += s.best_value < r.best_value
    assert wins >= 3 and np.mean(bo_best) < np.mean(rnd_best)


def test_multi_objective_with_constraints():
    def obj(trial):
        x = trial.suggest_float("x", 0, 1)
        c = trial.suggest_categorical("c", ["p", "q"])
        trial.set_constraint("x_max", x - 0.8)  # feasible when x <= 0.8
        return x + (c == "q"), (1 - x) ** 2

    s = optuna.create_study(
        directions=["minimize", "maximize"], sampler=SurrogateSampler(seed=0, n_candidates=200, n_local=50)
    )
    s.optimize(obj, n_trials=12)
    assert len(s.trials) == 12 and all(t.state.name == "COMPLETE" for t in s.trials)
    assert any(all(v <= 0 for v in t.constraints.values()) for t in s.trials)


def test_constraints_func():
    seen = []

    def cons(t):
        seen.append(t.number)
        return [t.params["x"] - 0.5]

    s = optuna.create_study(sampler=SurrogateSampler(seed=0, n_candidates=200, n_local=50, constraints_func=cons))
    s.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=8)
    assert len(seen) == 8


def test_auto_sampler_name_rule():
    assert auto_sampler_name("numeric", 3, 30, True) == "gp"
    assert auto_sampler_name("numeric", 3, 30, False) == "surrogate"
    assert auto_sampler_name("mixed", 9, 10, False) == "surrogate"
    assert auto_sampler_name("categorical", 20, 100, True) == "tpe"
    assert auto_sampler_name("mixed", 5, 500, True) == "nsga2"
    with pytest.raises(ValueError):
        auto_sampler_name("weird", 1, 1, False)
