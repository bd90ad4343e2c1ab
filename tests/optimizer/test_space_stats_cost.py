import math

import optuna
import pytest

from optimizer.cost import Sizing, cost_per_1k_requests, hourly_cost
from optimizer.space import CategoricalParam, FloatParam, IntParam, LessThan, SearchSpace
from optimizer.stats import estimate


def _space():
    return SearchSpace(
        params=(
            IntParam("vm.dirty_background_ratio", 1, 50),
            IntParam("vm.dirty_ratio", 5, 60),
            FloatParam("sizing.vcpus", 0.25, 2.0),
            CategoricalParam("thp.enabled", ("always", "madvise", "never")),
        ),
        orderings=(LessThan("vm.dirty_background_ratio", "vm.dirty_ratio"),),
    )


def test_suggest_never_breaks_an_ordering():
    space = _space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(300):
        trial = study.ask()
        values = space.suggest(trial)
        assert list(values) == space.names
        assert values["vm.dirty_background_ratio"] < values["vm.dirty_ratio"], values
        assert space.is_valid(values)
        study.tell(trial, 0.0)


def test_distributions_are_static_so_model_based_samplers_stay_relative():
    """A dynamic range would make TPE/GP sample the ordered knobs independently (at random)."""
    space = _space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    dists = set()
    for _ in range(50):
        trial = study.ask()
        space.suggest(trial)
        dists.add(repr(trial.distributions["vm.dirty_background_ratio"]))
        study.tell(trial, 0.0)
    assert len(dists) == 1
    sampler = optuna.samplers.TPESampler(seed=0, multivariate=True)
    assert set(sampler.infer_relative_search_space(study, study.trials[-1])) == set(space.names)


@pytest.mark.parametrize(
    "proposal, applied",
    [
        ({"vm.dirty_background_ratio": 30, "vm.dirty_ratio": 20},
         {"vm.dirty_background_ratio": 19, "vm.dirty_ratio": 20}),
        ({"vm.dirty_background_ratio": 20, "vm.dirty_ratio": 20},
         {"vm.dirty_background_ratio": 19, "vm.dirty_ratio": 20}),
        ({"vm.dirty_background_ratio": 5, "vm.dirty_ratio": 5}, {"vm.dirty_background_ratio": 4, "vm.dirty_ratio": 5}),
        ({"vm.dirty_background_ratio": 3, "vm.dirty_ratio": 40},
         {"vm.dirty_background_ratio": 3, "vm.dirty_ratio": 40}),
    ],
)
def test_repair_moves_the_lower_knob_just_below_the_upper(proposal, applied):
    space = _space()
    assert space.repair(proposal) == applied
    assert space.is_valid(space.repair(proposal))


def test_repair_raises_the_upper_when_the_lower_cannot_go_lower():
    space = SearchSpace(
        (IntParam("vm.dirty_background_ratio", 10, 30), IntParam("vm.dirty_ratio", 5, 60)),
        orderings=(LessThan("vm.dirty_background_ratio", "vm.dirty_ratio"),),
    )
    assert space.repair({"vm.dirty_background_ratio": 10, "vm.dirty_ratio": 7}) == {
        "vm.dirty_background_ratio": 10, "vm.dirty_ratio": 11}


def test_is_valid_rejects_out_of_range_and_bad_order():
    space = _space()
    ok = {"vm.dirty_background_ratio": 10, "vm.dirty_ratio": 20, "sizing.vcpus": 1.0, "thp.enabled": "never"}
    assert space.is_valid(ok)
    assert not space.is_valid({**ok, "vm.dirty_background_ratio": 20})
    assert not space.is_valid({**ok, "sizing.vcpus": 3.0})
    assert not space.is_valid({**ok, "thp.enabled": "sometimes"})


def test_impossible_ordering_is_refused():
    with pytest.raises(ValueError, match="must be < vm.dirty_ratio"):
        SearchSpace(
            params=(IntParam("vm.dirty_background_ratio", 30, 50), IntParam("vm.dirty_ratio", 5, 30)),
            orderings=(LessThan("vm.dirty_background_ratio", "vm.dirty_ratio"),),
        )


def test_param_checks():
    with pytest.raises(ValueError):
        IntParam("x", 5, 1)
    with pytest.raises(ValueError):
        FloatParam("x", 0.0, 1.0, log=True)
    with pytest.raises(ValueError):
        CategoricalParam("x", ())


def test_estimate_median_and_ci():
    est = estimate([10.0, 12.0, 11.0, 50.0, 11.5])
    assert est.median == 11.5
    assert est.ci_low <= est.median <= est.ci_high
    one = estimate([3.0])
    assert one.median == 3.0 and math.isnan(one.ci_low)
    with pytest.raises(ValueError):
        estimate([])


def test_cost_model():
    usd = hourly_cost(Sizing(vcpus=2, memory_gib=4), cpu_usd_per_vcpu_hour=0.03, memory_usd_per_gib_hour=0.004)
    assert usd == pytest.approx(0.076)
    assert cost_per_1k_requests(0.036, 10.0) == pytest.approx(0.001)
    assert cost_per_1k_requests(1.0, 0.0) == math.inf
    with pytest.raises(ValueError):
        Sizing(vcpus=0, memory_gib=1)


def test_a_conditional_knob_is_proposed_only_while_its_condition_holds():
    from optimizer.space import When

    space = SearchSpace(
        (CategoricalParam("thp.enabled", ("always", "madvise", "never")),
         CategoricalParam("thp.defrag", ("always", "defer", "never")), IntParam("vm.swappiness", 1, 100)),
        conditions=(When("thp.defrag", "thp.enabled", ("always", "madvise")),),
    )
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = space.suggest(trial)
        seen.add(values["thp.enabled"])
        assert ("thp.defrag" in values) == (values["thp.enabled"] != "never"), values
        assert space.is_valid(values)
        study.tell(trial, float(values["vm.swappiness"]))
    assert seen == {"always", "madvise", "never"}
    assert not space.is_valid({"thp.enabled": "never", "thp.defrag": "defer", "vm.swappiness": 5})
    assert space.active({"thp.enabled": "never", "thp.defrag": "defer", "vm.swappiness": 5}) == {
        "thp.enabled": "never", "vm.swappiness": 5}
    with pytest.raises(ValueError, match="parent must be categorical"):
        SearchSpace(space.params, conditions=(When("thp.defrag", "vm.swappiness", (1,)),))
