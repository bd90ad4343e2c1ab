"""The gain report picks the best stock profile on the screening rounds and judges it (and novatune against
it) on the confirmation rounds only: the luckiest of several profiles does not carry its luck into the
comparison."""

from __future__ import annotations

import random
from typing import Any

from experiments.bench.gain import Arm, _report

PROFILES = ["p1", "p2", "p3", "p4", "p5"]


def _windows(screening: int, confirm: int, lucky: str | None, seed: int = 0) -> list[dict[str, Any]]:
    """Every arm has the same true throughput (100, 2 % noise); ``lucky`` does 30 % better in the screening
    rounds only, as the best of several noisy profiles may."""
    rng = random.Random(seed)
    out = []
    for r in range(screening):
        for a in ["defaults", *PROFILES, "novatune"]:
            v = 100 * (1.3 if a == lucky else 1.0) * rng.gauss(1, 0.02)
            out.append({"round": r, "arm": a, "metrics": {"throughput": v}})
    for r in range(screening, screening + confirm):
        for a in ["defaults", lucky or PROFILES[0], "novatune"]:
            out.append({"round": r, "arm": a, "metrics": {"throughput": 100 * rng.gauss(1, 0.02)}})
    return out


def _arms() -> list[Arm]:
    return [Arm(n, n) for n in ["defaults", *PROFILES, "novatune"]]


def test_the_best_profile_is_judged_on_rounds_it_was_not_picked_on() -> None:
    doc = _report(_windows(5, 6, "p3"), _arms(), "throughput", "maximize", screening=5)
    assert doc["best_profile"] == "p3"
    assert doc["best_profile_picked_on"] == "rounds 1-5" and doc["compared_on"] == "rounds 6-11 (confirmation)"
    vs_def, vs_best = doc["best_profile_vs_defaults"], doc["novatune_vs_best_profile"]
    assert vs_def["rounds"] == 6 and vs_best["rounds"] == 6
    assert abs(vs_def["gain_pct"]) < 5 and abs(vs_best["gain_pct"]) < 5  # its screening luck is gone
    assert not vs_best["significant"]
    assert "as good as the best stock profile p3" in doc["verdict"]
    # every arm against the defaults over all of its rounds
    assert doc["arms"]["p3"]["rounds"] == 11 and doc["arms"]["p1"]["rounds"] == 5
    assert doc["arms"]["novatune"]["vs_defaults"]["rounds"] == 11
    assert doc["arms"]["defaults"]["vs_defaults"] is None  # not compared with itself


def test_without_confirmation_the_pick_keeps_its_luck_and_the_report_says_so() -> None:
    doc = _report(_windows(5, 0, "p3"), _arms(), "throughput", "maximize", screening=5)
    assert doc["best_profile"] == "p3"
    assert "no confirmation: favours the profile" in doc["compared_on"]
    vs_best = doc["novatune_vs_best_profile"]
    assert vs_best["rounds"] == 5 and vs_best["gain_pct"] < -15 and vs_best["significant"]
    assert "worse than the best stock profile p3" in doc["verdict"]


def test_a_latency_picks_the_profile_with_the_lowest_figure() -> None:
    windows = _windows(4, 3, None)
    for w in windows:  # p4 halves the latency in every round
        if w["arm"] == "p4":
            w["metrics"]["throughput"] /= 2
    doc = _report(windows, _arms(), "throughput", "minimize", screening=4)
    assert doc["best_profile"] == "p4"
