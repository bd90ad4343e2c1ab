"""The adaptive-rate controller (part C): pure figures in, the next rate and flags out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.profiler.budget import (
    BudgetConfig,
    WindowFigures,
    blocking_slowdown_pct,
    choose_flags,
    measure,
    next_window,
)

CFG = BudgetConfig()  # 1 % budget, 5 % py-spy CPU cap, 5..100 Hz


def _fig(**kw) -> WindowFigures:
    base = dict(rate_hz=100, window_s=30.0, pyspy_cpu_s=0.3, samples=3000, nonblocking=True, threads=1,
                host_busy_frac=1.0, host_busy_cpu_s=60.0)
    return WindowFigures(**{**base, **kw})


def test_measure_records_rate_cpu_and_the_estimated_slowdown():
    m = measure(_fig(pyspy_cpu_s=0.6, host_busy_cpu_s=60.0))
    assert m["rate_hz"] == 100 and m["pyspy_cpu_pct"] == pytest.approx(2.0)
    assert m["est_slowdown_pct"] == pytest.approx(2.0)  # saturated host: 2 x 0.6 s of 60 busy CPU-seconds
    assert m["budget_pct"] == 1.0 and m["nonblocking"] == 1.0 and m["behind"] == 0.0
    idle_host = measure(_fig(pyspy_cpu_s=0.6, host_busy_frac=0.5, host_busy_cpu_s=30.0))
    assert idle_host["est_slowdown_pct"] == 0.0, "nonblocking on a host with idle CPUs costs the target nothing"
    blocking = measure(_fig(nonblocking=False, pyspy_cpu_s=0.3, samples=9000, threads=1))
    assert blocking["est_slowdown_pct"] == pytest.approx(100 * 100 * 1.2e-3)  # rounds x modelled pause > CPU
    many = measure(_fig(nonblocking=False, rate_hz=5, pyspy_cpu_s=0.3, threads=100))
    assert many["est_slowdown_pct"] == pytest.approx(100 * 5 * 21e-3)


def test_figures_round_trip_through_meta_overhead():
    fig = _fig(pyspy_cpu_s=0.45, errors=3, behind_s=0.2, gil=True, threads=12, host_busy_frac=0.9)
    again = WindowFigures.from_overhead(measure(fig))
    assert measure(again) == measure(fig)


def test_the_rate_is_lowered_when_over_budget():
    d = next_window(_fig(pyspy_cpu_s=1.2))  # 4 % of a core, 4 % slowdown on a saturated host
    assert 5 <= d.rate_hz < 50 and "est. slowdown 4.00 %" in d.reason
    after = measure(_fig(rate_hz=d.rate_hz, pyspy_cpu_s=1.2 * d.rate_hz / 100))
    assert after["est_slowdown_pct"] <= CFG.budget_pct


def test_the_rate_never_goes_below_the_floor_and_says_so():
    d = next_window(_fig(rate_hz=5, pyspy_cpu_s=6.0))
    assert d.rate_hz == 5 and "over budget even at the floor 5 Hz" in d.reason


def test_the_rate_rises_when_under_budget_but_by_at_most_the_step_and_never_past_the_max():
    d = next_window(_fig(rate_hz=20, pyspy_cpu_s=0.001, host_busy_frac=0.3))
    assert d.rate_hz == 30  # 20 * 1.5
    d = next_window(_fig(rate_hz=90, pyspy_cpu_s=0.001, host_busy_frac=0.3))
    assert d.rate_hz == 100
    assert next_window(_fig(rate_hz=80, pyspy_cpu_s=0.001), BudgetConfig(max_hz=50)).rate_hz == 50


def test_py_spy_cpu_is_capped_even_when_the_target_does_not_suffer():
    d = next_window(_fig(rate_hz=100, pyspy_cpu_s=3.0, host_busy_frac=0.2))  # 10 % of a core, idle host
    assert d.rate_hz == 40  # 5 % cap * 0.8 headroom / 0.1 % per Hz


def test_behind_in_sampling_or_errors_back_off():
    assert next_window(_fig(rate_hz=100, pyspy_cpu_s=0.001, host_busy_frac=0.2, behind_s=1.3)).rate_hz == 50
    d = next_window(_fig(rate_hz=40, pyspy_cpu_s=0.001, host_busy_frac=0.2, samples=1000, errors=50))
    assert d.rate_hz == 20 and "backing off" in d.reason
    assert next_window(_fig(rate_hz=6, behind_s=2.0)).rate_hz == 5


@given(rate=st.integers(5, 100), cpu=st.floats(0, 30), busy=st.floats(0, 1), behind=st.floats(0, 5),
       threads=st.integers(1, 500), nonblocking=st.booleans())
def test_the_next_rate_is_always_within_floor_and_max(rate, cpu, busy, behind, threads, nonblocking):
    d = next_window(_fig(rate_hz=rate, pyspy_cpu_s=cpu, host_busy_frac=busy, host_busy_cpu_s=busy * 60,
                         behind_s=behind, threads=threads, nonblocking=nonblocking))
    assert CFG.floor_hz <= d.rate_hz <= CFG.max_hz


def test_flags_follow_the_thread_count_and_what_was_forced():
    nb, gil, why = choose_flags(threads=1, mode="cpu", native=False, rate_hz=100)
    assert nb and not gil and "--nonblocking" in why  # blocking 100 Hz would pause ~11 % > 1 %
    nb, gil, why = choose_flags(threads=1, mode="cpu", native=False, rate_hz=5)
    assert not nb and "blocking" in why  # 5 Hz x 1.2 ms = 0.6 %: within the budget
    assert blocking_slowdown_pct(5, 100) > blocking_slowdown_pct(5, 1), "the pause grows with threads"
    nb, _, _ = choose_flags(threads=100, mode="cpu", native=False, rate_hz=5)
    assert nb, "5 Hz pausing 100 threads is over the budget"
    nb, gil, why = choose_flags(threads=100, mode="cpu", native=False, rate_hz=100)
    assert nb and gil and "--gil (100 threads" in why
    assert choose_flags(threads=100, mode="wall", native=False, rate_hz=100)[1] is False
    assert choose_flags(threads=1, mode="cpu", native=True, rate_hz=100)[0] is False, "native needs the pause"
    assert choose_flags(threads=100, mode="cpu", native=False, rate_hz=100, nonblocking=False, gil=False)[:2] == (
        False, False)


def test_next_window_keeps_forced_flags():
    d = next_window(_fig(threads=100), nonblocking=False, gil=False)
    assert (d.nonblocking, d.gil) == (False, False)
    d = next_window(_fig(threads=100))
    assert (d.nonblocking, d.gil) == (True, True)


def test_a_bad_config_is_refused():
    for bad in (dict(budget_pct=0), dict(floor_hz=0), dict(floor_hz=200), dict(backoff=1.0), dict(headroom=2)):
        with pytest.raises(ValueError):
            BudgetConfig(**bad)
