"""Samplers by name: each one builds and runs a study with constraints; bad choices are refused."""

from __future__ import annotations

import importlib.util
import warnings

import optuna
import pytest

from optimizer import samplers
from optimizer.samplers import GRID_MAX, build_sampler, grid_values
from optimizer.space import CategoricalParam, FloatParam, IntParam, LessThan, SearchSpace

SPACE = SearchSpace(
    (
        IntParam("vm.dirty_ratio", 10, 40),
        IntParam("vm.dirty_background_ratio", 2, 20),
        FloatParam("sizing.vcpus", 0.2, 2.0),
        CategoricalParam("thp.enabled", ("always", "madvise", "never")),
    ),
    (LessThan("vm.dirty_background_ratio", "vm.dirty_ratio"),),
)
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _run(name: str, n_obj: int, trials: int = 14) -> optuna.Study:
    choice = build_sampler(name, SPACE, n_objectives=n_obj, budget=trials, seed=3)
    study = optuna.create_study(directions=["maximize", "minimize"][:n_obj], sampler=choice.sampler)
    for point in choice.enqueue[:trials]:
        study.enqueue_trial(point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(trials):
            t = study.ask()
            p = SPACE.suggest(t)
            assert SPACE.is_valid(p)
            t.set_constraint("latency_p95_ms", 10 - p["sizing.vcpus"] * 10)
            thr = p["sizing.vcpus"] * 100 - p["vm.dirty_background_ratio"]
            study.tell(t, [thr, p["sizing.vcpus"]][:n_obj])
    return study


@pytest.mark.parametrize("name", ["random", "tpe", "nsga2", "grid", "cmaes", "gp"])
def test_each_sampler_runs_a_constrained_study(name):
    if name == "gp" and not HAS_TORCH:
        pytest.skip("gp needs PyTorch: pip install 'novatune[gp]'")
    n_obj = 1 if name == "cmaes" else 2
    study = _run(name, n_obj)
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 14


def test_grid_enqueues_only_valid_points_in_a_seeded_order():
    a = build_sampler("grid", SPACE, n_objectives=1, budget=10, seed=1)
    b = build_sampler("grid", SPACE, n_objectives=1, budget=10, seed=1)
    assert a.enqueue == b.enqueue and a.name == "grid"
    assert all(SPACE.is_valid(p) for p in a.enqueue)
    full = 1
    for v in grid_values(SPACE).values():
        full *= len(v)
    assert 0 < len(a.enqueue) < full  # the orderings removed some
    assert grid_values(SPACE)["thp.enabled"] == ["always", "madvise", "never"]


@pytest.mark.parametrize(
    "name, n_obj, space, message",
    [
        ("simulated-annealing", 1, SPACE, "unknown sampler 'simulated-annealing'; allowed: auto, random, tpe"),
        ("cmaes", 2, SPACE, "cmaes optimises one objective"),
        ("cmaes", 1, SearchSpace((CategoricalParam("thp.enabled", ("always", "never")),)),
         "needs at least one numeric"),
        ("grid", 1, SearchSpace(tuple(IntParam(f"k{i}", 0, 100) for i in range(6))), f"more than {GRID_MAX}"),
    ],
)
def test_bad_sampler_choices_say_why(name, n_obj, space, message):
    with pytest.raises(ValueError, match=message):
        build_sampler(name, space, n_objectives=n_obj, budget=10, seed=0)


@pytest.mark.skipif(HAS_TORCH, reason="checks the message shown when PyTorch is absent")
def test_gp_without_torch_says_how_to_install_it():
    with pytest.raises(ValueError, match=r"needs PyTorch: pip install 'novatune\[gp\]'"):
        build_sampler("gp", SPACE, n_objectives=1, budget=10, seed=0)


def test_gp_without_torch_is_refused_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(samplers, "torch_installed", lambda: False)
    with pytest.raises(ValueError, match=r"needs PyTorch: pip install 'novatune\[gp\]'"):
        build_sampler("gp", SPACE, n_objectives=1, budget=10, seed=0)
    numeric = SearchSpace((IntParam("vm.swappiness", 0, 100),))
    choice = build_sampler("auto", numeric, n_objectives=1, budget=20, seed=0)
    assert choice.name == "surrogate" and choice.reason.endswith("without PyTorch")


@pytest.mark.parametrize("budget, startup, population", [(6, 4, 4), (21, 7, 7), (90, 10, 20)])
def test_study_settings_scale_with_the_budget(budget, startup, population):
    s = samplers.study_settings(budget)
    assert (s.n_startup_trials, s.population_size, s.cmaes_startup_trials, s.bounded_gp) == (
        startup, population, 1, True)
    tpe = build_sampler("tpe", SPACE, n_objectives=1, budget=budget, seed=0).sampler
    assert tpe._n_startup_trials == startup
    nsga = build_sampler("nsga2", SPACE, n_objectives=2, budget=budget, seed=0).sampler
    assert nsga._population_size == population


def test_optuna_sampler_takes_the_settings_it_is_given():
    s = samplers.SamplerSettings(n_startup_trials=3, population_size=4, cmaes_startup_trials=3, bounded_gp=False)
    gp = samplers.optuna_sampler("gp", seed=0, settings=s)
    assert type(gp).__name__ == "InRangeGPSampler"  # Optuna's GPSampler, without trials outside the space
    bounded = samplers.optuna_sampler("gp", seed=0, settings=samplers.study_settings(30))
    assert type(bounded).__name__ == "BoundedGPSampler"
    grid = samplers.optuna_sampler("grid", seed=0, settings=s, grid={"a": [1, 2]})
    assert isinstance(grid, optuna.samplers.GridSampler)
    for bad, message in (("grid", "no grid"), ("annealing", "unknown sampler 'annealing'")):
        with pytest.raises(ValueError, match=message):
            samplers.optuna_sampler(bad, seed=0, settings=s)
