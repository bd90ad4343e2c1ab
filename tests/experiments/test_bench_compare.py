"""The pure comparison of ``novatune bench compare`` (optimizer.benchcompare) on synthetic windows, and the
composition over two stored run documents (experiments.bench.compare.compare_docs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.bench.compare import compare_docs
from optimizer.benchcompare import MIN_WINDOWS, compare_samples, log_spread, summary_exit, with_cpu_share


def _windows(level: float, noise: float, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(level * np.exp(rng.normal(0.0, noise, n)))


@pytest.mark.parametrize("seed", range(20))
def test_a_rerun_from_the_same_distribution_is_not_flagged(seed):
    base = _windows(1000.0, 0.02, 5, seed)
    run = _windows(1000.0, 0.02, 5, seed + 100)
    v = compare_samples(base, run, direction="maximize")
    assert v.verdict == "no change", v.reason


def test_a_small_but_significant_level_shift_between_runs_is_below_the_bar():
    """Tight windows make a 2 % between-run difference 'significant'; the practical bar keeps it no change."""
    base = [1000.0, 1001.0, 999.0, 1000.5, 999.5]
    run = [x * 0.98 for x in base]
    v = compare_samples(base, run, direction="maximize")
    assert v.change_ci[1] < 0  # the windows do show it
    assert v.verdict == "no change"
    assert v.threshold == pytest.approx(0.05)


@pytest.mark.parametrize("seed", range(10))
def test_a_ten_percent_slowdown_with_small_noise_is_a_regression(seed):
    base = _windows(1000.0, 0.01, 5, seed)
    run = _windows(900.0, 0.01, 5, seed + 50)
    v = compare_samples(base, run, direction="maximize")
    assert v.verdict == "regression", v.reason
    assert v.change == pytest.approx(-0.10, abs=0.03)
    assert v.median_change == pytest.approx(v.run_median / v.base_median - 1.0)
    assert v.change_ci[0] < v.change < v.change_ci[1] < 0


def test_a_ten_percent_higher_latency_is_a_regression_of_a_minimized_metric():
    base = _windows(40.0, 0.01, 5, 1)
    run = _windows(44.0, 0.01, 5, 2)
    v = compare_samples(base, run, direction="minimize")
    assert v.verdict == "regression"
    assert v.change < 0
    assert compare_samples(run, base, direction="minimize").verdict == "improvement"


def test_a_ten_percent_speed_up_is_an_improvement():
    v = compare_samples(_windows(1000.0, 0.01, 5, 3), _windows(1100.0, 0.01, 5, 4), direction="maximize")
    assert v.verdict == "improvement"
    assert v.change > 0.05


def test_big_noise_is_inconclusive_no_change():
    base = [1000.0, 600.0, 1400.0, 800.0, 1200.0]
    run = [900.0, 500.0, 1300.0, 700.0, 1150.0]
    v = compare_samples(base, run, direction="maximize")
    assert v.verdict == "no change"
    assert v.conclusive is False
    assert v.threshold > 0.5  # the base's own spread raised the bar


def test_the_bar_comes_from_the_base_spread_not_the_run():
    """A competing load makes the new run noisy: that must not raise the bar that flags it."""
    base = _windows(1000.0, 0.01, 5, 7)
    run = [850.0, 700.0, 820.0, 760.0, 800.0]
    v = compare_samples(base, run, direction="maximize")
    assert v.threshold == pytest.approx(0.05)
    assert v.verdict == "regression"


def test_too_few_windows_give_no_verdict():
    v = compare_samples([1.0, 1.0], [0.5, 0.5, 0.5], direction="maximize")
    assert (v.verdict, v.conclusive) == ("no change", False)
    assert str(MIN_WINDOWS) in v.reason
    assert v.change == pytest.approx(-0.5)


def test_non_finite_windows_are_dropped():
    v = compare_samples([1.0, 1.0, 1.0, math.nan], [1.0, 1.0, 1.0, math.inf], direction="maximize")
    assert (v.n_base, v.n_run) == (3, 3)


@pytest.mark.parametrize("kw", [{"direction": "up"}, {"direction": "maximize", "min_effect": 1.5},
                                {"direction": "maximize", "noise_factor": -1.0},
                                {"direction": "maximize", "confidence": 1.0}])
def test_bad_arguments_are_refused(kw):
    with pytest.raises(ValueError):
        compare_samples([1.0] * 3, [1.0] * 3, **kw)


def test_log_spread_and_exit():
    assert math.isnan(log_spread([1.0]))
    assert log_spread([1.0, 1.0, 1.0]) == 0.0
    assert summary_exit(["no change", "regression"], regression_code=3) == 3
    assert summary_exit(["no change", "improvement"], regression_code=3) == 0


def _doc(rid: str, values: dict[str, list[float]], *, host: str = "vm", release: str = "6.1") -> dict:
    return {"id": rid, "time": "2026-01-01T00:00:00+00:00",
            "machine": {"hostname": host, "cpu_count": 2}, "kernel": {"release": release, "version": "#1"},
            "knobs": {"vm.swappiness": 60},
            "benchmarks": {n: {"values": v, "direction": "maximize", "unit": "x", "min_effect": 0.05}
                           for n, v in values.items()}}


def test_compare_docs_flags_the_slow_benchmark_and_notes_a_different_kernel():
    base = _doc("b", {"cpu": [100.0, 101.0, 99.0, 100.0, 100.5], "io": [10.0, 10.1, 9.9, 10.0, 10.0]})
    run = _doc("r", {"cpu": [90.0, 90.5, 89.5, 90.2, 90.1], "io": [10.0, 9.9, 10.1, 10.0, 10.05],
                     "net": [1.0, 1.0, 1.0]}, release="6.2")
    rep = compare_docs(base, run)
    assert rep["regressions"] == ["cpu"]
    assert rep["benchmarks"]["io"]["verdict"] == "no change"
    assert rep["verdict"] == "regression"
    assert rep["comparable"] is False
    assert any("release" in d for d in rep["differences"])
    assert rep["only_in_run"] == ["net"]


def test_compare_docs_same_machine_is_comparable():
    same = {"cpu": [100.0, 101.0, 99.0, 100.0, 100.5]}
    rep = compare_docs(_doc("b", same), _doc("r", same))
    assert rep["comparable"] is True and rep["differences"] == [] and rep["regressions"] == []


def test_a_different_machine_load_is_reported_but_keeps_the_runs_comparable():
    same = {"cpu": [100.0, 101.0, 99.0, 100.0, 100.5]}
    base, run = _doc("b", same), _doc("r", same)
    base["others_cpu"], run["others_cpu"] = {"cpu": 0.1, "io": 0.5}, {"cpu": 1.2, "io": 0.6}
    rep = compare_docs(base, run)
    assert rep["comparable"] is True
    assert [d for d in rep["differences"] if d.startswith("load:")] == [
        "load: other processes used different CPU while measuring (CPUs, base -> run): cpu 0.10 -> 1.20"]


# --- the CPU share: CPU taken away against the host's drift in speed -------------------------------------------------

STEADY = [1.94, 1.95, 1.94, 1.96, 1.95]  # CPUs a 2-worker benchmark got per window, as measured here


def test_a_drift_in_speed_with_a_steady_share_stays_below_a_wide_bar():
    """A rerun 9 % slower with the same CPUs: the host's drift, below a bar set above it (15 %)."""
    base = _windows(1000.0, 0.02, 5, 3)
    v = compare_samples(base, [x * 0.91 for x in base], direction="maximize", min_effect=0.15)
    final, share = with_cpu_share(v, STEADY, [x * 0.995 for x in STEADY])
    assert v.change_ci[1] < 0 and share.verdict == "no change"
    assert final == v and final.verdict == "no change"


def test_cpu_taken_away_is_a_regression_even_below_the_throughput_bar():
    base = _windows(1000.0, 0.02, 5, 4)
    v = compare_samples(base, [x * 0.92 for x in base], direction="maximize", min_effect=0.15)
    assert v.verdict == "no change"
    final, share = with_cpu_share(v, STEADY, [x * 0.9 for x in STEADY])
    assert share.verdict == "regression" and share.change == pytest.approx(-0.10, abs=0.005)
    assert final.verdict == "regression" and final.conclusive
    assert final.reason.startswith("got 10.0% less CPU (1.95 -> 1.75 CPUs")
    assert final.change == v.change and final.change_ci == v.change_ci  # the figures stay the benchmark's


def test_less_cpu_without_running_worse_is_not_a_regression():
    base = _windows(1000.0, 0.02, 5, 5)
    v = compare_samples(base, [x * 1.03 for x in base], direction="maximize", min_effect=0.15)
    final, share = with_cpu_share(v, STEADY, [x * 0.9 for x in STEADY])
    assert share.verdict == "regression" and final.verdict == "no change"


def test_a_latency_with_less_cpu_is_a_regression_of_a_minimized_metric():
    base = _windows(40.0, 0.02, 5, 6)
    v = compare_samples(base, [x * 1.06 for x in base], direction="minimize", min_effect=0.15)
    final, _ = with_cpu_share(v, STEADY, [x * 0.85 for x in STEADY])
    assert v.verdict == "no change" and final.verdict == "regression"


def test_compare_docs_uses_the_share_when_both_runs_have_it():
    base = _doc("b", {"cpu": [100.0, 101.0, 99.0, 100.0, 100.5]})
    run = _doc("r", {"cpu": [96.0, 96.5, 95.5, 96.2, 96.1]})  # -4 %: below the 5 % bar
    assert compare_docs(base, run)["regressions"] == []
    base["benchmarks"]["cpu"]["cpu_share"] = STEADY
    run["benchmarks"]["cpu"]["cpu_share"] = [x * 0.88 for x in STEADY]
    rep = compare_docs(base, run)
    assert rep["regressions"] == ["cpu"]
    share = rep["benchmarks"]["cpu"]["cpu_share"]
    assert share["verdict"] == "regression" and share["base_median"] == pytest.approx(1.95)
    assert compare_docs(base, run, share_min_effect=0.2)["regressions"] == []  # the analysis' override
    del run["benchmarks"]["cpu"]["cpu_share"]  # a run stored before shares were recorded
    assert compare_docs(base, run)["benchmarks"]["cpu"]["cpu_share"] is None
