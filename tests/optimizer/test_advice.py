"""optimizer.advice: the one recommendation vocabulary, its score, de-duplication and ranking."""

from __future__ import annotations

import pytest

from optimizer.advice import Advice, Change, Evidence, rank, score


def _a(advisor: str = "io", knob: str = "block.vda.read_ahead_kb", value: object = 512, *, impact: float = 0.1,
       conf: float = 0.8, risk: float = 1.0, target: str | None = None, usd: float | None = None,
       title: str = "t", current: object = 128) -> Advice:
    return Advice(advisor=advisor, title=title, why="w", changes=(Change(knob, value, current),),
                  expected_impact=impact, confidence=conf, risk=risk, target=target, usd_per_month=usd,
                  evidence=(Evidence("seen", 1, "", advisor),))


def test_score_grows_with_impact_and_confidence_and_falls_with_risk() -> None:
    base = score(_a())
    assert score(_a(impact=0.2)) > base
    assert score(_a(conf=0.9)) > base
    assert score(_a(risk=3.0)) < base
    assert score(_a(impact=-0.5)) == 0.0  # an expected loss never ranks


def test_money_saved_counts_in_the_score() -> None:
    assert score(_a(usd=50.0)) > score(_a())


def test_rank_orders_best_first_and_merges_the_same_knobs_on_the_same_target() -> None:
    low = _a(impact=0.05, title="low")
    high = _a(advisor="study", impact=0.3, title="high")  # same knob, same (no) target: one recommendation
    other = _a(knob="kernel.numa_balancing", value=0, current=1, advisor="numa", impact=0.1, title="other")
    ranked = rank([low, other, high])
    assert [a.title for a in ranked] == ["high", "other"]
    merged = ranked[0]
    assert set(merged.sources) == {"io", "study"}
    assert {e.source for e in merged.evidence} == {"io", "study"}  # the evidence of both kept


def test_same_knob_on_other_targets_is_not_merged() -> None:
    ranked = rank([_a(knob="affinity.cpus", value="1", target="pid:10"),
                   _a(knob="affinity.cpus", value="1", target="pid:11")])
    assert len(ranked) == 2


def test_rank_drops_changes_that_change_nothing() -> None:
    assert rank([_a(value=128)], current={"block.vda.read_ahead_kb": "128"}) == []
    assert len(rank([_a(value=512)], current={"block.vda.read_ahead_kb": 128})) == 1


def test_ids_are_stable_and_differ_by_value() -> None:
    assert _a().id == _a().id
    assert _a(value=256).id != _a(value=512).id
    assert _a().as_dict()["id"] == _a().id


@pytest.mark.parametrize("kw, msg", [
    ({"advisor": "magic"}, "unknown advisor"),
    ({"conf": 1.5}, "confidence"),
    ({"risk": 7.0}, "risk"),
])
def test_bad_advice_is_refused_with_what_is_allowed(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        _a(**kw)  # type: ignore[arg-type]


def test_an_advice_needs_a_change_or_a_manual_action() -> None:
    with pytest.raises(ValueError, match="manual"):
        Advice(advisor="numa", title="t", why="w")
    assert Advice(advisor="numa", title="t", why="w", manual="numactl --membind=0 ...").key[2] is not None
