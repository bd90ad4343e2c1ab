"""Ablation judgement (optimizer.justify): a knob stays only when keeping it measurably helps."""

from __future__ import annotations

import random

import pytest

from optimizer.justify import FULL, Measurement, ablation_order, judge

DIRS = {"throughput": "maximize", "cost": "minimize"}


def _rounds(effects: dict[str, dict[str, float]], *, rounds: int = 3, noise: float = 0.03,
            seed: int = 0) -> list[Measurement]:
    """Measurements where putting back knob k multiplies each metric by ``effects[k][metric]``'s inverse;
    throughput carries multiplicative noise, cost none (a quota's cost is exact)."""
    rng = random.Random(seed)
    out = []
    for r, label in ablation_order(list(effects), rounds, seed=seed):
        thr, cost = 1000.0 * (1 + rng.gauss(0, noise)), 0.02
        if label != FULL:
            thr /= effects[label].get("throughput", 1.0)
            cost /= effects[label].get("cost", 1.0)
        out.append(Measurement(r, label, {"throughput": thr, "cost": cost}))
    return out


def test_ablation_order_measures_every_configuration_once_per_round_in_shuffled_orders() -> None:
    order = ablation_order(["a", "b", "c", "d"], 6, seed=1)
    assert len(order) == 6 * 5
    for r in range(6):
        assert sorted(label for rr, label in order if rr == r) == sorted([FULL, "a", "b", "c", "d"])
    assert len({tuple(label for rr, label in order if rr == r) for r in range(6)}) > 1  # not one fixed order
    with pytest.raises(ValueError, match="rounds"):
        ablation_order(["a"], 0)


def test_a_knob_with_a_real_effect_is_kept_and_one_without_is_put_back() -> None:
    ms = _rounds({"helps": {"throughput": 1.25}, "idle": {}, "also_idle": {}})
    ev = {e.knob: e for e in judge(ms, {"helps": (1, 0), "idle": (2, 1), "also_idle": (3, 2)}, DIRS)}
    assert ev["helps"].kept and ev["helps"].reason.startswith("kept: throughput +2")
    thr = next(e for e in ev["helps"].effects if e.metric == "throughput")
    assert thr.low_pct > 0 and 15 < thr.change_pct < 35
    assert not ev["idle"].kept and not ev["also_idle"].kept
    assert "no effect of at least 1 % beyond the noise" in ev["idle"].reason


def test_an_exact_cost_saving_is_evidence_and_its_price_in_throughput_is_said() -> None:
    ms = _rounds({"quota": {"cost": 0.5, "throughput": 0.6}, "idle": {}}, noise=0.01)
    ev = {e.knob: e for e in judge(ms, {"quota": (0.5, 2.0), "idle": (1, 0)}, DIRS)}
    cost = next(e for e in ev["quota"].effects if e.metric == "cost")
    assert (cost.low_pct, cost.high_pct) == pytest.approx((-50.0, -50.0))  # no spread: the interval is the point
    assert ev["quota"].kept and "cost -50.0 %" in ev["quota"].reason and "at the price of throughput -" in \
        ev["quota"].reason
    assert not ev["idle"].kept


def test_a_knob_that_only_hurts_is_put_back_saying_so() -> None:
    ms = _rounds({"hurts": {"throughput": 0.7}, "idle": {}}, noise=0.01)
    ev = {e.knob: e for e in judge(ms, {"hurts": (1, 0), "idle": (1, 0)}, DIRS)}
    assert not ev["hurts"].kept and ev["hurts"].reason.startswith("put back: only worse with it: throughput -")


def test_knobs_without_effect_are_rarely_kept() -> None:
    """The chance that a study keeps any of its knobs without effect stays under alpha (Bonferroni over the
    knobs and the metrics)."""
    studies_with_a_false_keep = 0
    for seed in range(400):
        ms = _rounds({"a": {}, "b": {}, "c": {}, "d": {}, "e": {}}, noise=0.05, seed=seed)
        ev = judge(ms, {k: (1, 0) for k in "abcde"}, DIRS, alpha=0.05)
        studies_with_a_false_keep += any(e.kept for e in ev)
    assert studies_with_a_false_keep / 400 <= 0.06


def test_an_effect_below_min_effect_is_not_enough() -> None:
    ms = _rounds({"tiny": {"cost": 0.995}}, noise=0.0)
    (e,) = judge(ms, {"tiny": (1, 0)}, DIRS, min_effect_pct=1.0)
    assert not e.kept and next(x for x in e.effects if x.metric == "cost").significant


def test_failed_measurements_leave_gaps_and_no_evidence() -> None:
    ms = [Measurement(r, label, {} if label == "a" else {"throughput": 100.0 + r, "cost": 1.0})
          for r, label in ablation_order(["a", "b"], 3, seed=0)]
    ev = {e.knob: e for e in judge(ms, {"a": (1, 0), "b": (1, 0)}, DIRS)}
    assert ev["a"].effects == [] and not ev["a"].kept and ev["a"].reason.endswith("no measurement")


def test_bad_arguments_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        judge([], {}, DIRS, alpha=1.5)
    with pytest.raises(ValueError, match="maximize or minimize"):
        judge([], {}, {"throughput": "up"})
