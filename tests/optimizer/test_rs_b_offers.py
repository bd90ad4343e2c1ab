"""Matching a recommendation to catalog offers, spot suitability and cgroup limits (part B)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.rightsizing.discounts import Discount, option_discount, supported_options
from optimizer.rightsizing.model import Recommendation, ResourceRecommendation, UsageSeries
from optimizer.rightsizing.offers import cgroup_limits, is_burstable, match_offers, spot_suitability

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Type:
    name: str
    vcpus: int
    memory_gib: float
    usd_per_hour: float
    arch: str = "x86_64"


CATALOG = [
    Type("a.large", 2, 4, 0.10),
    Type("b.large", 2, 8, 0.12),
    Type("c.xlarge", 4, 8, 0.20),
    Type("b.xlarge", 4, 16, 0.24),
    Type("g.xlarge", 4, 16, 0.19, "arm64"),
    Type("t3.xlarge", 4, 16, 0.16),
    Type("b.2xlarge", 8, 32, 0.48),
]


def disc(option: str, term: str, payment: str, scope: str, lo: float | None, hi: float, kind: str) -> Discount:
    first = scope.split(" ")[0]
    return Discount("aws", option, term, payment, scope, lo, hi, kind, "test basis", "test source",
                    first if "." in first and kind != "up_to" else None)


DISCOUNTS = [
    disc("spot", "none", "n/a", "EC2", None, 90, "up_to"),
    disc("reserved_instance", "1y/3y", "any", "EC2", None, 72, "up_to"),
    disc("reserved_instance_standard", "1y", "No Upfront", "b.xlarge us-east-1", 40, 40, "derived"),
    disc("spot", "none", "n/a", "b.xlarge us-east-1", 50, 60, "observed"),
    disc("spot", "none", "n/a", "c.xlarge us-east-1", 45, 45, "observed"),
]


def rec(cpu: float, mem: float, *, p50: float = 1.0, target: str = "svc") -> Recommendation:
    c = ResourceRecommendation("cpu", cpu, cpu * 0.9, cpu * 1.1, None, "optimized",
                               observed={"p50": p50, "p90": cpu * 0.7, "p95": cpu * 0.75, "p99": cpu * 0.8,
                                         "max": cpu * 0.85})
    m = ResourceRecommendation("memory", mem, mem, mem * 1.1, None, "optimized",
                               observed={"p50": mem * 0.6, "p99": mem * 0.85, "max": mem * 0.87, "peak": mem * 0.87})
    return Recommendation(target, "balanced", c, m, "over-provisioned", 0.8, 0.0, 336.0)


def series(cpu: np.ndarray, mem: np.ndarray, *, step: float = 300.0) -> UsageSeries:
    return UsageSeries("svc", T0 + step * np.arange(len(cpu)), cpu, mem)


def test_cheapest_fitting_type_and_its_dollars() -> None:
    offers = match_offers(rec(2.4, 9.0), CATALOG, DISCOUNTS)
    # any arch, t3.xlarge left out: the median (1.0 core) is above its credit baseline (0.2 x 4)
    assert [o.instance_type for o in offers] == ["g.xlarge", "b.xlarge", "b.2xlarge"]
    assert offers[0].usd_per_month == pytest.approx(0.19 * 730)
    assert offers[0].purchase_option == "on_demand" and offers[0].discount_pct == 0.0
    assert offers[0].savings_usd_per_month is None
    assert offers[0].family == "g"


def test_current_type_sets_arch_and_savings() -> None:
    offers = match_offers(rec(2.4, 9.0), CATALOG, DISCOUNTS, current="b.2xlarge", limit=1)
    assert [o.instance_type for o in offers] == ["b.xlarge"]
    assert offers[0].usd_per_month == pytest.approx(175.2)
    assert offers[0].savings_usd_per_month == pytest.approx(0.48 * 730 - 0.24 * 730)
    anyarch = match_offers(rec(2.4, 9.0), CATALOG, DISCOUNTS, current="b.2xlarge", arch="any", limit=1)
    assert anyarch[0].instance_type == "g.xlarge"
    # a (cores, GiB) current size is priced at the cheapest non-burstable type holding it: c.xlarge
    sized = match_offers(rec(1.5, 3.0), CATALOG, DISCOUNTS, current=(3, 8), arch="x86_64", limit=1)
    assert sized[0].instance_type == "a.large"
    assert sized[0].savings_usd_per_month == pytest.approx((0.20 - 0.10) * 730)


def test_burstable_kept_with_a_note_for_a_light_load() -> None:
    offers = match_offers(rec(2.4, 9.0, p50=0.5), CATALOG, DISCOUNTS, arch="x86_64")
    assert offers[0].instance_type == "t3.xlarge"
    assert offers[0].usd_per_month == pytest.approx(0.16 * 730)
    assert "burstable" in offers[0].note
    assert offers[1].note == ""
    assert is_burstable(CATALOG[5]) and not is_burstable(CATALOG[3])


def test_purchase_options_use_derived_and_observed_figures_only() -> None:
    opts = supported_options(DISCOUNTS)
    assert opts == ("on_demand", "spot", "reserved_1y_no_upfront")
    offers = match_offers(rec(2.4, 9.0), CATALOG, DISCOUNTS, current="b.2xlarge", options=opts, limit=20)
    by = {(o.instance_type, o.purchase_option): o for o in offers}
    assert by["b.xlarge", "reserved_1y_no_upfront"].usd_per_month == pytest.approx(0.24 * 0.6 * 730)
    assert "assumed" not in by["b.xlarge", "reserved_1y_no_upfront"].discount_basis
    assert "assumed" in by["b.2xlarge", "reserved_1y_no_upfront"].discount_basis
    # spot: the low end of b.xlarge's observed 50-60 %, never the advertised 90 %
    assert by["b.xlarge", "spot"].discount_pct == 50.0
    assert by["b.xlarge", "spot"].usd_per_month == pytest.approx(0.24 * 0.5 * 730)
    # a type without an observation: the lowest observed discount (c.xlarge's 45 %), said so
    assert by["b.2xlarge", "spot"].discount_pct == 45.0
    assert "not observed for b.2xlarge" in by["b.2xlarge", "spot"].discount_basis
    assert max(o.discount_pct for o in offers) == 50.0
    assert [o.usd_per_month for o in offers] == sorted(o.usd_per_month for o in offers)
    assert offers[0].instance_type == "b.xlarge" and offers[0].purchase_option == "spot"


def test_advertised_maxima_alone_price_nothing() -> None:
    only_max = [d for d in DISCOUNTS if d.kind == "up_to"]
    assert supported_options(only_max) == ("on_demand",)
    with pytest.raises(ValueError, match="no derived or observed discount for purchase option 'spot'"):
        option_discount(only_max, "spot", "b.xlarge")
    with pytest.raises(ValueError, match="allowed: on_demand"):
        match_offers(rec(2.4, 9.0), CATALOG, only_max, options=("spot",))


def test_match_offers_bad_input() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        match_offers(rec(2.4, 9.0), CATALOG, DISCOUNTS, limit=0)
    with pytest.raises(ValueError, match="unknown instance type 'z.huge'"):
        match_offers(rec(2.4, 9.0), CATALOG, DISCOUNTS, current="z.huge")
    assert match_offers(rec(64, 512), CATALOG, DISCOUNTS) == []
    with pytest.raises(ValueError, match="'savings_plan_compute'; allowed: on_demand, spot, reserved_1y_no_upfront"):
        match_offers(rec(64, 512), CATALOG, DISCOUNTS, options=("savings_plan_compute",))


def test_risk_from_usage_when_given() -> None:
    n = 2000
    cpu = np.full(n, 1.0)
    cpu[::10] = 4.5  # 10 % of the samples above 4 cores
    usage = series(cpu, np.full(n, 6.0))
    offers = match_offers(rec(2.4, 9.0), CATALOG, DISCOUNTS, usage=usage, arch="x86_64")
    by = {o.instance_type: o for o in offers}
    assert by["b.xlarge"].risk >= 3.0
    assert by["b.2xlarge"].risk < 1.0


def _days(n_days: int, step: float = 300.0) -> np.ndarray:
    return np.arange(0, n_days * 86400, step)


def test_spot_suitability_shapes() -> None:
    t = _days(3)
    hour = (t % 86400) / 3600
    steady = UsageSeries("s", T0 + t, 2.0 + 0.1 * np.sin(t / 5000), np.full(len(t), 8.0))
    verdict = spot_suitability(steady)
    assert not verdict.suitable and "continuously" in verdict.reason and verdict.idle_share == 0.0
    on = (hour >= 1) & (hour < 9)
    batch = UsageSeries("b", T0 + t, np.where(on, 2.0, 0.01), np.where(on, 4.0, 0.3))
    verdict = spot_suitability(batch)
    assert verdict.suitable and "jobs" in verdict.reason
    assert verdict.idle_share == pytest.approx(16 / 24, abs=0.01)
    cache = UsageSeries("c", T0 + t, np.where(on, 2.0, 0.01), np.full(len(t), 8.0))
    verdict = spot_suitability(cache)
    assert not verdict.suitable and "holds state" in verdict.reason
    short = UsageSeries("x", T0 + _days(1)[:120], np.where(on[:120], 2.0, 0.0), np.full(120, 0.1))
    verdict = spot_suitability(short)
    assert not verdict.suitable and "too short" in verdict.reason


def test_cgroup_limits_values() -> None:
    lim = cgroup_limits(rec(2.4, 9.0), cpus_online=4)
    assert (lim.cpu_quota_us, lim.cpu_period_us) == (240_000, 100_000)
    assert lim.cpu_max == "240000 100000"
    assert lim.memory_max_bytes == 9 * 2**30
    assert lim.allowed_cpus == "0-2"
    assert lim.systemd == {"CPUQuota": "240%", "MemoryMax": 9 * 2**30, "AllowedCPUs": "0-2"}
    assert lim.notes == ()


def test_cgroup_limits_rounding_and_caps() -> None:
    odd = cgroup_limits(rec(0.5, 1.0000001), cpus_online=8, period_us=50_000)
    assert odd.cpu_quota_us == 25_000 and odd.systemd["CPUQuota"] == "50%" and odd.allowed_cpus == "0"
    assert odd.memory_max_bytes % 4096 == 0
    assert 2**30 < odd.memory_max_bytes <= 2**30 + 4096
    capped = cgroup_limits(rec(2.4, 9.0), cpus_online=2)
    assert capped.allowed_cpus == "0-1" and capped.systemd["AllowedCPUs"] == "0-1"
    assert capped.systemd["CPUQuota"] == "200%" and capped.cpu_quota_us == 200_000
    assert "2 CPUs online" in capped.notes[0]
    tiny = cgroup_limits(rec(0.001, 0.5), cpus_online=1)
    assert tiny.cpu_quota_us == 1000 and tiny.systemd["CPUQuota"] == "1%"


def test_cgroup_limits_errors() -> None:
    with pytest.raises(ValueError, match="cpus_online must be >= 1"):
        cgroup_limits(rec(2.4, 9.0), cpus_online=0)
    with pytest.raises(ValueError, match="period_us must be in"):
        cgroup_limits(rec(2.4, 9.0), cpus_online=4, period_us=500)


@settings(max_examples=200, deadline=None)
@given(cores=st.floats(0.01, 64.0), gib=st.floats(0.01, 512.0), online=st.integers(1, 128),
       period=st.integers(1000, 1_000_000))
def test_cgroup_limits_properties(cores: float, gib: float, online: int, period: int) -> None:
    lim = cgroup_limits(rec(cores, gib), cpus_online=online, period_us=period)
    n = min(math.ceil(round(cores, 6)), online)
    assert lim.allowed_cpus == ("0" if n == 1 else f"0-{n - 1}")
    assert lim.cpu_quota_us >= 1000 and lim.cpu_quota_us <= n * period
    assert lim.cpu_quota_us >= min(cores, online) * period - 1
    assert lim.memory_max_bytes % 4096 == 0 and 0 <= lim.memory_max_bytes - gib * 2**30 < 4096 + 1e-3
    assert lim.systemd["MemoryMax"] == lim.memory_max_bytes and lim.systemd["AllowedCPUs"] == lim.allowed_cpus
    assert int(str(lim.systemd["CPUQuota"]).rstrip("%")) >= min(cores, online) * 100 - 1e-6
