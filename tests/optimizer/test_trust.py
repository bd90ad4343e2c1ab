import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    LessThan,
    SearchSpace,
)
from optimizer.trust import TrustRegion

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = SearchSpace(
    (
        IntParam("vm.dirty_background_ratio", 1, 50),
        IntParam("vm.dirty_ratio", 2, 90),
        IntParam("vm.swappiness", 0, 100, step=10),
        FloatParam("net.busy_poll_frac", 0.0, 1.0, step=0.05),
        FloatParam("buf_kib", 1.0, 1024.0, log=True),
        CategoricalParam("block.sda.scheduler", ("none", "mq-deadline", "bfq")),
        CategoricalParam("vm.thp", ("always", "madvise", "never")),
    ),
    (LessThan("vm.dirty_background_ratio", "vm.dirty_ratio"),),
)
CENTER = {
    "vm.dirty_background_ratio": 10,
    "vm.dirty_ratio": 12,
    "vm.swappiness": 60,
    "net.busy_poll_frac": 0.3,
    "buf_kib": 32.0,
    "block.sda.scheduler": "mq-deadline",
    "vm.thp": "madvise",
}


def region(**kw):
    return TrustRegion(CENTER, kw.pop("max_step", 0.1), SPACE, **kw)


def test_fraction_boxes_respect_bounds_and_grid():
    r = region()
    assert r.bounds("vm.dirty_background_ratio") == (6, 14)  # 10 % of 49 -> 4.9 -> grid
    assert r.bounds("vm.swappiness") == (50, 70)
    assert r.bounds("net.busy_poll_frac") == pytest.approx((0.2, 0.4))
    lo, hi = r.bounds("buf_kib")  # log knob: factor 1024 ** 0.1 = 2 either way
    assert (lo, hi) == pytest.approx((16.0, 64.0))


def test_absolute_steps_and_frozen_knobs():
    r = region(max_step={"vm.swappiness": 0, "vm.dirty_ratio": 30})
    assert r.bounds("vm.swappiness") == (60, 60)
    assert r.bounds("vm.dirty_ratio") == (2, 42)
    assert r.bounds("vm.dirty_background_ratio") == (6, 14)  # default_fraction


def test_clamp_pulls_a_big_jump_into_the_region():
    r = region()
    out = r.clamp({**CENTER, "vm.swappiness": 0, "net.busy_poll_frac": 0.93, "buf_kib": 1000.0})
    assert out["vm.swappiness"] == 50 and isinstance(out["vm.swappiness"], int)
    assert out["net.busy_poll_frac"] == pytest.approx(0.4)
    assert out["buf_kib"] == pytest.approx(64.0)
    assert r.contains(out)
    assert r.clamp(CENTER) == CENTER and r.contains(CENTER)


def test_clamp_never_breaks_the_ordering():
    r = region()
    out = r.clamp({**CENTER, "vm.dirty_background_ratio": 50, "vm.dirty_ratio": 2})
    assert out["vm.dirty_background_ratio"] < out["vm.dirty_ratio"]
    assert SPACE.is_valid(out) and r.contains(out)


def test_categorical_policy_allows_n_changes_in_declared_order():
    prop = {**CENTER, "block.sda.scheduler": "bfq", "vm.thp": "never"}
    assert not region().contains(prop)
    out = region().clamp(prop)
    assert out["block.sda.scheduler"] == "bfq" and out["vm.thp"] == "madvise"
    assert region(max_categorical_changes=2).clamp(prop) == prop
    frozen = region(max_categorical_changes=0).clamp(prop)
    assert frozen["block.sda.scheduler"] == "mq-deadline"
    assert region().clamp({**CENTER, "vm.thp": "bogus"})["vm.thp"] == "madvise"


def test_contains_rejects_outside_off_grid_and_unknown():
    r = region()
    assert not r.contains({"vm.swappiness": 80})
    assert not r.contains({"vm.swappiness": 55})  # off the 10-grid
    assert not r.contains({"vm.swappiness": 60.0})  # int knob
    assert not r.contains({"vm.nope": 1})
    assert not r.contains({"vm.dirty_background_ratio": 12, "vm.dirty_ratio": 12})
    assert r.contains({"vm.swappiness": 70})


def test_move_recenters_and_keeps_the_policy():
    r = region(max_categorical_changes=0)
    moved = r.move({**CENTER, "vm.swappiness": 70})
    assert moved.bounds("vm.swappiness") == (60, 80) and moved.max_categorical_changes == 0
    assert r.bounds("vm.swappiness") == (50, 70)  # the old one is unchanged


def test_invalid_centers_and_steps_are_refused():
    with pytest.raises(ValueError, match="ordering"):
        TrustRegion({**CENTER, "vm.dirty_background_ratio": 20}, 0.1, SPACE)
    with pytest.raises(ValueError, match="no value for"):
        TrustRegion({"vm.swappiness": 60}, 0.1, SPACE)
    with pytest.raises(ValueError, match="outside"):
        TrustRegion({**CENTER, "vm.swappiness": 200}, 0.1, SPACE)
    with pytest.raises(ValueError, match="not in the space"):
        TrustRegion(CENTER, {"vm.nope": 1}, SPACE)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TrustRegion(CENTER, 1.5, SPACE)


def test_center_off_grid_is_snapped():
    r = TrustRegion({**CENTER, "vm.swappiness": 64}, 0.1, SPACE)
    assert r.center["vm.swappiness"] == 60


_proposals = st.fixed_dictionaries(
    {
        "vm.dirty_background_ratio": st.integers(-10, 120),
        "vm.dirty_ratio": st.integers(-10, 120),
        "vm.swappiness": st.integers(-10, 200),
        "net.busy_poll_frac": st.floats(-1, 2, allow_nan=False),
        "buf_kib": st.floats(0.01, 5000, allow_nan=False),
        "block.sda.scheduler": st.sampled_from(["none", "mq-deadline", "bfq", "x"]),
        "vm.thp": st.sampled_from(["always", "madvise", "never"]),
    }
)
_centers = st.integers(1, 49).flatmap(
    lambda bg: st.fixed_dictionaries(
        {**{k: st.just(v) for k, v in CENTER.items()}, "vm.dirty_background_ratio": st.just(bg),
         "vm.dirty_ratio": st.integers(bg + 1, 90)}
    )
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_centers, _proposals, st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]))
def test_clamp_always_returns_a_valid_configuration_inside_the_region(center, proposal, frac):
    r = TrustRegion(center, frac, SPACE)
    out = r.clamp(proposal)
    assert SPACE.is_valid(out), out
    assert r.contains(out), out
    assert r.clamp(out) == out  # idempotent


@settings(max_examples=100, deadline=None, derandomize=True)
@given(_centers, st.sampled_from([0.0, 0.05, 0.3]))
def test_suggest_samples_inside_the_region(center, frac):
    r = TrustRegion(center, frac, SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        t = study.ask()
        out = r.suggest(t)
        assert r.contains(out) and SPACE.is_valid(out), out
        study.tell(t, 0.0)


def test_suggest_with_tpe_over_many_trials_and_dynamic_categoricals():
    r = region()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=5))
    changed = set()
    for _ in range(30):
        t = study.ask()
        out = r.suggest(t)
        assert r.contains(out)
        changed |= {k for k in ("block.sda.scheduler", "vm.thp") if out[k] != CENTER[k]}
        assert sum(out[k] != CENTER[k] for k in ("block.sda.scheduler", "vm.thp")) <= 1
        study.tell(t, float(out["vm.swappiness"]))
    assert changed == {"block.sda.scheduler", "vm.thp"}  # both get their turn


def test_distributions_are_the_boxes():
    d = region().distributions()
    assert (d["vm.swappiness"].low, d["vm.swappiness"].high, d["vm.swappiness"].step) == (50, 70, 10)
    assert d["buf_kib"].log and d["block.sda.scheduler"].choices == ("none", "mq-deadline", "bfq")
