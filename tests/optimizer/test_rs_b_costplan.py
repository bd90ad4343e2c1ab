"""Risk of a size, the cost/risk Pareto front, purchase plans and savings (part B)."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.pareto import pareto_mask
from optimizer.rightsizing.costplan import cost_front, purchase_plan, savings, size_risk
from optimizer.rightsizing.model import UsageSeries
from optimizer.rightsizing.offers import SpotSuitability, price_offer
from optimizer.rightsizing.risk import risk_from_stats
from tests.optimizer.test_rs_b_offers import CATALOG, DISCOUNTS, T0

OPTIONS = ("on_demand", "spot", "reserved_1y_no_upfront")


def series(cpu: object, mem: object, **kw: object) -> UsageSeries:
    c = np.asarray(cpu, dtype=float)
    m = np.broadcast_to(np.asarray(mem, dtype=float), c.shape)
    return UsageSeries("svc", T0 + 300.0 * np.arange(len(c)), c, m, **kw)  # type: ignore[arg-type]


def test_size_risk_scale_by_hand() -> None:
    flat = series(np.full(100, 1.0), 4.0)
    assert size_risk(flat, 4, 16) == 0.0
    assert size_risk(flat, 1, 16) == pytest.approx(1.0)  # p99 at 100 % of the size, none above: "low"
    # 10 % of the samples at 3 cores on a 2-core size: 1 + 2 x min(1, .1/.05) + min(1, .5/.5)
    cpu = np.r_[np.full(90, 1.0), np.full(10, 3.0)]
    assert size_risk(series(cpu, 4.0), 2, 16) == pytest.approx(4.0)
    # 2 % at 2.5 cores on 2: 1 + 2 x .4 + .25/.5
    cpu = np.r_[np.full(98, 1.0), np.full(2, 2.5)]
    assert size_risk(series(cpu, 4.0), 2, 16) == pytest.approx(2.3)
    # memory: one sample of 200 above the size is an OOM kill: 3 + .005/.01
    mem = np.full(200, 4.0)
    mem[7] = 9.0
    assert size_risk(series(np.full(200, 0.5), mem), 4, 8) == pytest.approx(3.5)
    # a peak at 90 % of the size, none above: (0.9 - 0.8) / 0.2 x 2
    assert size_risk(series(np.full(100, 0.5), np.r_[np.full(99, 5.0), 7.2]), 4, 8) == pytest.approx(1.0)


def test_size_risk_oom_and_throttling() -> None:
    n = 100
    cap = dict(mem_capacity=np.full(n, 8.0), cpu_capacity=np.full(n, 2.0))
    oom = series(np.full(n, 0.5), 3.0, oom_times=(T0 + 3000,), **cap)
    assert size_risk(oom, 4, 8) >= 3.0   # killed at 8 GiB: 8 GiB or less is high
    assert size_risk(oom, 4, 16) < 1.0   # more than the capacity it was killed at
    thr = np.zeros(n)
    thr[:10] = 0.4  # 10 % of intervals throttled at a 2-core quota
    throttled = series(np.full(n, 1.9), 3.0, throttled_ratio=thr, **cap)
    assert size_risk(throttled, 2, 16) >= 3.0
    assert size_risk(throttled, 4, 16) < 1.0
    unthrottled = series(np.full(n, 1.9), 3.0, **cap)
    assert size_risk(unthrottled, 2, 16) < 1.0


def test_size_risk_falls_as_the_size_grows() -> None:
    rng = np.random.default_rng(3)
    usage = series(rng.gamma(2.0, 0.6, 3000), rng.normal(6, 0.8, 3000).clip(0.1))
    risks = [size_risk(usage, c, m) for c, m in [(1, 4), (2, 6), (2, 8), (3, 8), (4, 10), (6, 12), (8, 16)]]
    assert risks == sorted(risks, reverse=True)
    assert risks[0] == 4.0 and risks[-1] < 1.0
    with pytest.raises(ValueError, match="cpu_cores > 0"):
        size_risk(usage, 0, 4)


def _usage_for_front() -> UsageSeries:
    rng = np.random.default_rng(11)
    t = np.arange(0, 3 * 86400, 300.0)
    cpu = 1.2 + 0.8 * np.sin(2 * np.pi * t / 86400) ** 2 + rng.normal(0, 0.1, len(t))
    return series(cpu.clip(0.05), (5.0 + rng.normal(0, 0.3, len(t))).clip(0.1))


def test_cost_front_is_non_dominated_sorted_and_complete() -> None:
    usage = _usage_for_front()
    front = cost_front(usage, CATALOG, DISCOUNTS, current="b.2xlarge", options=OPTIONS)
    assert len(front) >= 2
    costs = [o.usd_per_month for o in front]
    risks = [o.risk for o in front]
    assert costs == sorted(costs) and risks == sorted(risks, reverse=True)
    assert pareto_mask(np.array([costs, risks]).T, ["minimize", "minimize"]).all()
    assert all(o.usd_per_month <= 0.48 * 730 + 1e-9 for o in front)
    assert all(o.instance_type != "t3.xlarge" for o in front)
    assert all(o.arch == "x86_64" for o in front)
    # every candidate priced by hand is matched or beaten by a front point
    spot = SpotSuitability(False, "")
    for t in CATALOG:  # the candidates: x86 like the current, not burstable, holding the median
        if (t.arch != "x86_64" or t.name.startswith("t3") or t.vcpus < np.median(usage.cpu_cores)
                or t.memory_gib < np.median(usage.mem_gib)):
            continue
        for opt in OPTIONS:
            o = price_offer(t, opt, DISCOUNTS, risk=size_risk(usage, t.vcpus, t.memory_gib), spot=spot)
            risk = max(3.0, o.risk) if opt == "spot" else o.risk  # steady target: spot is at least high
            assert any(f.usd_per_month <= o.usd_per_month + 1e-9 and f.risk <= risk + 1e-9 for f in front), (t, opt)


def test_cost_front_exact_points_on_a_hand_catalog() -> None:
    # a flat 1.5 cores / 3 GiB: a.large (2 vCPU) runs at 75 %, the rest have headroom (risk 0)
    usage = series(np.full(600, 1.5), 3.0)
    front = cost_front(usage, CATALOG, DISCOUNTS, current="b.xlarge", options=("on_demand", "reserved_1y_no_upfront"))
    got = [(o.instance_type, o.purchase_option, round(o.usd_per_month, 4), round(o.risk, 4)) for o in front]
    # a.large and b.large 75 % of 2 cores -> risk (0.75 - 0.7) / 0.3; c.xlarge 37.5 % -> 0
    assert got == [("a.large", "reserved_1y_no_upfront", round(0.10 * 0.6 * 730, 4), round(0.05 / 0.3, 4)),
                   ("c.xlarge", "reserved_1y_no_upfront", round(0.20 * 0.6 * 730, 4), 0.0)]
    assert front[0].savings_usd_per_month == pytest.approx(0.24 * 730 - 0.10 * 0.6 * 730)


def test_purchase_plan_by_hand() -> None:
    # a.large units (2 vCPU, 4 GiB): 60 samples need 1, 30 need 2, 10 need 3
    cpu = np.r_[np.full(60, 1.5), np.full(30, 3.5), np.full(10, 5.5)]
    plan = purchase_plan(series(cpu, 2.0), CATALOG, DISCOUNTS, unit="a.large")
    assert plan.baseline_instances == 1
    assert plan.baseline_usd_per_month == pytest.approx(0.10 * 730 * 0.6)
    assert plan.peak_option == "on_demand"  # 8 h of history: too short to call it interruptible
    assert plan.peak_instance_hours == pytest.approx((30 * 1 + 10 * 2) / 100 * 730)
    assert plan.peak_usd_per_month == pytest.approx(36.5)
    assert plan.total_usd_per_month == pytest.approx(plan.baseline_usd_per_month + plan.peak_usd_per_month)
    assert plan.total_usd_per_month == pytest.approx(80.3)
    assert plan.all_on_demand_usd_per_month == pytest.approx(1.5 * 73.0)
    assert plan.static_on_demand_usd_per_month == pytest.approx(3 * 73.0)
    assert plan.savings_usd_per_month == pytest.approx(109.5 - 80.3)
    assert plan.break_even_share == pytest.approx(0.6)
    assert plan.break_even_instances == 1  # 2+ instances are needed 40 % of the time, under 60 %
    assert "assumed for a.large" in plan.notes[0]
    higher = purchase_plan(series(cpu, 2.0), CATALOG, DISCOUNTS, unit="a.large", baseline_quantile=0.7)
    assert higher.baseline_instances == 2
    # 40 % off: the 2nd instance is needed 40 % of the time, exactly the break-even share
    cheap = [d for d in DISCOUNTS if d.kind != "derived"] + [
        type(DISCOUNTS[0])("aws", "reserved_instance_standard", "1y", "No Upfront", "b.xlarge us-east-1", 60, 60,
                           "derived", "b", "s", "b.xlarge")]
    assert purchase_plan(series(cpu, 2.0), CATALOG, cheap, unit="a.large").break_even_instances == 2


def test_purchase_plan_spot_peaks_for_a_batch_target() -> None:
    t = np.arange(0, 3 * 86400, 300.0)
    on = ((t % 86400) / 3600) < 8
    usage = UsageSeries("b", T0 + t, np.where(on, 7.0, 0.01), np.where(on, 12.0, 0.3))
    plan = purchase_plan(usage, CATALOG, DISCOUNTS, unit="b.xlarge")
    assert plan.peak_option == "spot"
    assert plan.baseline_instances == 1
    need2 = on.mean()  # 2 instances while on, 1 otherwise
    assert plan.peak_usd_per_month == pytest.approx(need2 * 730 * 0.24 * 0.5)
    assert plan.total_usd_per_month < plan.all_on_demand_usd_per_month


def test_purchase_plan_errors() -> None:
    usage = series(np.full(10, 1.0), 2.0)
    with pytest.raises(ValueError, match="baseline_quantile"):
        purchase_plan(usage, CATALOG, DISCOUNTS, baseline_quantile=1.5)
    with pytest.raises(ValueError, match="no derived or observed discount for purchase option 'reserved_3y"):
        purchase_plan(usage, CATALOG, DISCOUNTS, baseline_option="reserved_3y_all_upfront")


def test_savings() -> None:
    s = savings(560.64, 140.16)
    assert s.usd_per_month == pytest.approx(420.48)
    assert s.usd_per_year == pytest.approx(5045.76)
    assert s.pct == pytest.approx(75.0)
    assert savings(100.0, 120.0).usd_per_month == pytest.approx(-20.0)
    assert savings(0.0, 0.0).pct == 0.0
    with pytest.raises(ValueError, match="current cost must be a finite number >= 0"):
        savings(-1.0, 2.0)


def _stats(a: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def test_risk_from_stats_tracks_size_risk() -> None:
    rng = np.random.default_rng(3)
    usage = series(rng.gamma(2.0, 0.6, 3000), rng.normal(6, 0.8, 3000).clip(0.1))
    cs, ms = _stats(usage.cpu_cores), _stats(usage.mem_gib)
    for cores, gib in [(1, 4), (2, 8), (3, 9), (4, 10), (6, 12), (8, 16)]:
        exact, approx = size_risk(usage, cores, gib), risk_from_stats(cs, ms, cores, gib)
        assert abs(exact - approx) <= 1.0, (cores, gib, exact, approx)
    assert risk_from_stats(cs, ms, 16, 32) == 0.0
    assert risk_from_stats(cs, {"p50": 4.0, "peak": 9.0}, 16, 8) >= 3.0  # a peak above memory: OOM
    with pytest.raises(ValueError, match="mem_gib > 0"):
        risk_from_stats(cs, ms, 2, 0)


def test_throttling_at_an_unknown_capacity_stands_at_the_usage() -> None:
    n = 100
    thr = np.zeros(n)
    thr[:10] = 0.5
    usage = series(np.full(n, 1.9), 3.0, throttled_ratio=thr, cpu_capacity=np.full(n, np.nan))
    assert size_risk(usage, 2, 16) >= 3.0  # throttled at about 1.9/0.95 = 2 cores
    assert size_risk(usage, 4, 16) < 1.0


def test_cost_front_reaches_above_an_under_provisioned_current() -> None:
    cpu = np.r_[np.full(300, 1.8), np.full(300, 3.6)]  # half the time above a.large's 2 vCPUs
    usage = series(cpu, 3.0, cpu_capacity=np.full(600, 2.0), mem_capacity=np.full(600, 4.0))
    # the current size comes from the capacities; candidates go up to the type holding 1.25 x the peak
    front = cost_front(usage, CATALOG, DISCOUNTS, options=("on_demand",), arch="x86_64")
    names = [o.instance_type for o in front]
    assert names == ["a.large", "c.xlarge", "b.2xlarge"]
    assert front[0].risk == 4.0 and front[1].risk == pytest.approx((0.9 - 0.7) / 0.3) and front[2].risk == 0.0
    assert front[-1].savings_usd_per_month == pytest.approx((0.10 - 0.48) * 730)  # costs more than now
    unknown = cost_front(series(cpu, 3.0), CATALOG, DISCOUNTS, options=("on_demand",), arch="x86_64")
    # without a current size a.large does not hold the median (2.7 cores) and is no candidate
    assert [o.instance_type for o in unknown] == names[1:] and unknown[0].savings_usd_per_month is None


def test_cost_front_never_dominated_on_random_catalogs() -> None:
    rng = np.random.default_rng(7)
    for trial in range(20):
        cat = [type(CATALOG[0])(f"x{i}.size", int(rng.integers(1, 17)), float(rng.integers(1, 65)),
                                float(rng.uniform(0.01, 1.0))) for i in range(25)]
        usage = series(rng.gamma(2.0, 0.8, 500), rng.gamma(4.0, 1.0, 500))
        front = cost_front(usage, cat, DISCOUNTS, options=("on_demand", "spot", "reserved_1y_no_upfront"))
        pts = np.array([[o.usd_per_month, o.risk] for o in front])
        if len(pts) == 0:
            continue
        assert pareto_mask(pts, ["minimize", "minimize"]).all(), trial
        assert (np.diff(pts[:, 0]) >= 0).all() and (np.diff(pts[:, 1]) <= 0).all(), trial


def test_results_serialise_to_json() -> None:
    import json

    from optimizer.rightsizing.costplan import predict_cost
    from optimizer.rightsizing.offers import cgroup_limits, spot_suitability
    from tests.optimizer.test_rs_b_offers import rec

    usage = _usage_for_front()
    docs = [o.to_dict() for o in cost_front(usage, CATALOG, DISCOUNTS, options=OPTIONS)]
    docs += [purchase_plan(usage, CATALOG, DISCOUNTS).to_dict(), savings(10.0, 4.0).to_dict(),
             spot_suitability(usage).to_dict(), cgroup_limits(rec(2.4, 9.0), cpus_online=4).to_dict(),
             predict_cost(usage, cpu_usd_per_vcpu_hour=0.03, memory_usd_per_gib_hour=0.004).to_dict()]
    back = json.loads(json.dumps(docs))
    assert back[-2]["cpu_max"] == "240000 100000" and back[-2]["systemd"]["CPUQuota"] == "240%"
    assert back[-4]["usd_per_month"] == 6.0
