"""What a validation counts as degraded (Judge), and samples from any sampler's shape (Health.of)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.rightsizing.health import Health, Judge, Thresholds


def test_oom_kill_degrades_at_once() -> None:
    judge = Judge(Health(oom_kills=3))
    assert judge.feed(Health(oom_kills=3)) is None
    assert (judge.feed(Health(oom_kills=4)) or "").startswith("OOM kill: 1 process")


def test_throttling_needs_consecutive_samples_above_the_bar() -> None:
    judge = Judge(Health(throttled_ratio=0.0), Thresholds(throttled_ratio=0.25, consecutive=2))
    assert judge.feed(Health(throttled_ratio=0.9)) is None  # one sample: a spike
    assert judge.feed(Health(throttled_ratio=0.1)) is None  # the streak is broken
    assert judge.feed(Health(throttled_ratio=0.5)) is None
    why = judge.feed(Health(throttled_ratio=0.6)) or ""
    assert why.startswith("throttling 0.6 above 0.25 on 2 samples") and "before the change: 0" in why


def test_throttling_the_baseline_already_had_is_not_blamed_on_the_change() -> None:
    judge = Judge(Health(throttled_ratio=0.5), Thresholds(throttled_ratio=0.25, throttled_margin=0.1))
    for _ in range(5):
        assert judge.feed(Health(throttled_ratio=0.55)) is None
    judge.feed(Health(throttled_ratio=0.7))
    assert (judge.feed(Health(throttled_ratio=0.7)) or "").startswith("throttling 0.7 above 0.6")


def test_memory_pressure_and_unknown_fields() -> None:
    judge = Judge(Health(memory_pressure=1.0), Thresholds(consecutive=1))
    assert judge.feed(Health()) is None  # nothing known: nothing judged
    assert (judge.feed(Health(memory_pressure=35.0)) or "").startswith("memory pressure 35%")


def test_health_of_mappings_objects_and_aliases() -> None:
    @dataclass
    class UsageSample:  # another sampler's shape
        throttled_ratio: float
        oom_kill: int
        mem_gib: float

    assert Health.of(UsageSample(0.2, 2, 1.5)) == Health(throttled_ratio=0.2, oom_kills=2, working_set_gib=1.5)
    assert Health.of({"psi_some_avg10": 4.0, "throttled_ratio": math.nan, "oom_kills": True, "x": 1}) == \
        Health(memory_pressure=4.0)
