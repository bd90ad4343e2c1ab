from dataclasses import dataclass

import pytest

from optimizer.instance import HOURS_PER_MONTH, cheapest_fitting, plan_resize


@dataclass(frozen=True)
class T:
    name: str
    vcpus: int
    memory_gib: float
    usd_per_hour: float
    arch: str = "x86_64"


TYPES = [T("m5.large", 2, 8, 0.096), T("c5.large", 2, 4, 0.085), T("m5.xlarge", 4, 16, 0.192),
         T("c6g.large", 2, 4, 0.068, "arm64"), T("r5.large", 2, 16, 0.126)]


def test_plan_resize_deltas():
    p = plan_resize(TYPES[2], TYPES[1])
    assert (p.vcpus_delta, p.memory_gib_delta) == (-2, -12)
    assert p.usd_per_hour_delta == pytest.approx(-0.107)
    assert p.usd_per_month_delta == pytest.approx(-0.107 * HOURS_PER_MONTH)
    assert not p.arch_change and plan_resize(TYPES[1], TYPES[3]).arch_change


def test_cheapest_fitting():
    assert cheapest_fitting(TYPES, vcpus=2, memory_gib=4, arch="x86_64").name == "c5.large"
    assert cheapest_fitting(TYPES, vcpus=2, memory_gib=4).name == "c6g.large"
    assert cheapest_fitting(TYPES, vcpus=2, memory_gib=10).name == "r5.large"
    assert cheapest_fitting(TYPES, vcpus=64, memory_gib=1) is None


def test_on_the_real_catalogue():
    from collectors.pricing import load_instance_types

    types = load_instance_types()
    best = cheapest_fitting(types.values(), vcpus=2, memory_gib=8, arch="x86_64")
    assert best is not None and best.vcpus >= 2 and best.memory_gib >= 8
    assert all(t.usd_per_hour >= best.usd_per_hour for t in types.values()
               if t.vcpus >= 2 and t.memory_gib >= 8 and t.arch == "x86_64")
