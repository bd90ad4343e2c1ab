"""The cost model's figures: the discounts a plan may use, one worked match, and how honest the
cost prediction's backtest is.

    python3 benchmarks/cost_model.py [--bitbrains DIR] [--train-days 20] [--horizon-days 10]

1. Every purchase option the packaged ``discounts.csv`` supports, its discount for m5.large and
   for a type it was not derived or observed for, and the basis (never an advertised maximum).
2. A worked match: a service on m5.2xlarge that needs 2.4 cores and 9 GiB -- the cheapest fitting
   offers, the reserved/spot prices of the first, the saving, and the cgroup/systemd values.
3. Forecast honesty: for each series, ``predict_cost`` on the first ``--train-days`` (its own
   backtest error inside them), then the error of its prediction against the cost of the next
   ``--horizon-days`` that it never saw, and whether that cost fell in the band. Synthetic shapes
   (which the forecast's settings were chosen on) and the Bitbrains VMs (reported on only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.pricing import CATALOG_SOURCE, load_discounts, load_instance_types, load_unit_prices
from optimizer.instance import HOURS_PER_MONTH
from optimizer.rightsizing import costforecast, risk
from optimizer.rightsizing.costplan import SPOT_INTERRUPTION_RISK, predict_cost, purchase_plan, savings
from optimizer.rightsizing.discounts import option_discount, supported_options
from optimizer.rightsizing.model import RISK_LABELS, Recommendation, ResourceRecommendation, UsageSeries
from optimizer.rightsizing.offers import BURSTABLE_BASELINE, PAGE, cgroup_limits, match_offers

BITBRAINS = Path("/work/shared/datasets/utilization/bitbrains_rnd/2013-8")
DAY = 86400.0
T0 = 1_375_315_200.0  # 2013-08-01 00:00 UTC


def read_bitbrains_vm(path: Path) -> UsageSeries:
    """One GWA-T-12 file: used cores = usage MHz / (capacity MHz / cores); memory KiB -> GiB."""
    a = np.loadtxt(path, delimiter=";", skiprows=1, usecols=(0, 1, 2, 3, 5, 6))
    a = a[np.argsort(a[:, 0], kind="stable")]
    keep = np.r_[True, np.diff(a[:, 0]) > 0]
    a = a[keep]
    per_core = np.where(a[:, 1] > 0, a[:, 2] / np.maximum(a[:, 1], 1), np.nan)
    cpu = np.nan_to_num(a[:, 3] / per_core, nan=0.0).clip(0)
    return UsageSeries(f"bitbrains:{path.stem}", a[:, 0], cpu, (a[:, 5] / 2**20).clip(0),
                       cpu_capacity=a[:, 1], mem_capacity=a[:, 4] / 2**20)


def synthetic(days: float = 30) -> dict[str, UsageSeries]:
    t = np.arange(0, days * DAY, 300.0)
    d = t / DAY
    rng = np.random.default_rng(2026)
    daily = np.sin(2 * np.pi * d)
    shapes = {
        "seasonal+trend": (2 + 0.02 * d + daily + 0.3 * np.sin(2 * np.pi * d / 7), 8 + 0.05 * d + 0.5 * daily),
        "noisy seasonal": (2 + daily + rng.normal(0, 0.6, len(t)), 8 + rng.normal(0, 1.0, len(t))),
        "bursty (skewed)": (rng.gamma(0.5, 2.0, len(t)), 4 + rng.gamma(1.0, 1.0, len(t))),
        "batch on/off": (np.where((d % 1) < 1 / 3, 6.0, 0.05), np.where((d % 1) < 1 / 3, 12.0, 0.5)),
        "memory leak": (np.full(len(t), 1.0) + rng.normal(0, 0.1, len(t)), 2 + 0.2 * (d % 10)),
        "level shift": (np.where(d > 22, 3.0, 1.0), np.full(len(t), 4.0)),
    }
    return {k: UsageSeries(k, T0 + t, np.clip(c, 0, None), np.clip(m, 0, None)) for k, (c, m) in shapes.items()}


def cut(u: UsageSeries, start: float, end: float) -> UsageSeries:
    i, j = np.searchsorted(u.t, [start, end])
    return UsageSeries(u.target, u.t[i:j], u.cpu_cores[i:j], u.mem_gib[i:j])


def forward_row(u: UsageSeries, *, train_days: float, horizon_days: float, pc: float, pm: float) -> dict | None:
    t0 = float(u.t[0])
    train = cut(u, t0, t0 + train_days * DAY)
    after = cut(u, t0 + train_days * DAY, t0 + (train_days + horizon_days) * DAY)
    if len(train) < 10 or after.span_hours < horizon_days * 24 * 0.9:
        return None
    start = time.perf_counter()
    p = predict_cost(train, cpu_usd_per_vcpu_hour=pc, memory_usd_per_gib_hour=pm, horizon_days=horizon_days)
    took = time.perf_counter() - start
    actual = float((after.cpu_cores * pc + after.mem_gib * pm).mean()) * horizon_days * 24
    err = abs(p.usd - actual) / actual * 100 if actual > 0 else 0.0
    return {"name": u.target, "usd": p.usd, "actual": actual, "backtest": p.backtest_error_pct, "forward": err,
            "in_band": p.low <= actual <= p.high, "width": (p.high - p.low) / p.usd * 100 if p.usd else 0.0,
            "ms": took * 1000}


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'series':<20} {'predicted $':>11} {'actual $':>9} {'backtest %':>10} {'forward %':>9} "
          f"{'band %':>7} {'in band':>7}")
    for r in rows:
        bt = "-" if r["backtest"] is None else f"{r['backtest']:.1f}"
        print(f"{r['name'][:20]:<20} {r['usd']:>11.2f} {r['actual']:>9.2f} {bt:>10} {r['forward']:>9.1f} "
              f"{r['width']:>7.0f} {'yes' if r['in_band'] else 'no':>7}")
    bts = [r["backtest"] for r in rows if r["backtest"] is not None]
    fws = [r["forward"] for r in rows]
    print(f"median backtest error {statistics.median(bts):.1f} %, median forward error "
          f"{statistics.median(fws):.1f} %, in band {sum(r['in_band'] for r in rows)}/{len(rows)}, "
          f"median {statistics.median(r['ms'] for r in rows):.0f} ms per prediction")


def discounts_section() -> None:
    rows = load_discounts()
    print(f"instance catalog: {CATALOG_SOURCE}")
    print("discount sources used:")
    for src in sorted({r.source for r in rows if r.usable and r.provider == "aws"}):
        print(f"  {src}")
    print("purchase options priced from derived/observed figures (discount below on-demand):")
    for opt in supported_options(rows):
        own, other = option_discount(rows, opt, "m5.large"), option_discount(rows, opt, "r7i.large")
        print(f"  {opt:<40} m5.large {own.pct:5.1f} %   r7i.large {other.pct:5.1f} %")
    for opt, name in (("spot", "m5.large"), ("spot", "r7i.large"), ("reserved_1y_no_upfront", "r7i.large")):
        print(f"  basis of {opt} for {name}: {option_discount(rows, opt, name).basis}")
    skipped = sorted({f"{r.provider} {r.purchase_option} (up to {r.pct_max:g} %)" for r in rows if not r.usable})
    print(f"advertised maxima, never used as a saving: {'; '.join(skipped)}")


def match_section() -> None:
    types, rows = load_instance_types(), load_discounts()
    cpu = ResourceRecommendation("cpu", 2.4, 2.2, 2.6, 8.0, "over-provisioned",
                                 observed={"p50": 1.1, "p90": 1.8, "p95": 2.0, "p99": 2.1, "max": 2.3})
    mem = ResourceRecommendation("memory", 9.0, 9.0, 10.0, 32.0, "over-provisioned",
                                 observed={"p50": 6.0, "p99": 8.0, "max": 8.2, "peak": 8.2})
    rec = Recommendation("example", "balanced", cpu, mem, "over-provisioned", 0.9, 0.0, 336.0)
    cur = types["m5.2xlarge"]
    print(f"\nworked match: 2.4 cores / 9 GiB, now on m5.2xlarge ({cur.vcpus} vCPUs, {cur.memory_gib:g} GiB, "
          f"{cur.usd_per_hour * 730:.2f} USD/month on demand)")
    for o in match_offers(rec, types.values(), rows, current="m5.2xlarge", limit=3):
        print(f"  {o.instance_type:<16} {o.vcpus} vCPUs {o.memory_gib:g} GiB  {o.usd_per_month:7.2f} USD/month  "
              f"saves {o.savings_usd_per_month:7.2f}  risk {o.risk:.1f}")
    best = match_offers(rec, types.values(), rows, current="m5.2xlarge", limit=1)[0]
    for opt in ("reserved_1y_no_upfront", "reserved_3y_no_upfront", "spot"):
        o = match_offers(rec, [types[best.instance_type]], rows, options=(opt,), limit=1)[0]
        s = savings(cur.usd_per_hour * 730, o.usd_per_month)
        print(f"  {best.instance_type} {opt:<24} {o.usd_per_month:7.2f} USD/month ({o.discount_pct:g} % off), "
              f"saves {s.usd_per_month:.2f} ({s.pct:.0f} %)")
    lim = cgroup_limits(rec, cpus_online=4)
    print(f"  as cgroup limits on a 4-CPU host: {lim.systemd} cpu.max {lim.cpu_max!r}")


def constants_section() -> None:
    print(f"\na month is {HOURS_PER_MONTH:g} hours; memory limits are rounded up to a {PAGE}-byte page")
    print(f"risk labels 0..4: {', '.join(RISK_LABELS)}; spot adds {SPOT_INTERRUPTION_RISK} to an interruptible "
          "target's risk and makes a non-interruptible one's at least 3")
    print("risk scale: " + ", ".join(f"{k}={getattr(risk, k)}" for k in (
        "CPU_COMFORT", "CPU_SHARE_HIGH", "CPU_EXCESS_HIGH", "MEM_COMFORT", "MEM_SHARE_VERY_HIGH", "THROTTLED")))
    print(f"burstable types kept only when the median CPU <= {BURSTABLE_BASELINE} x their vCPUs")
    print("forecast: " + ", ".join(f"{k}={getattr(costforecast, k)}" for k in (
        "DAILY_DAYS", "TREND_DAYS", "WEEKLY_DAYS", "TREND_SE", "HOLDOUT_DAYS", "LONG_DAYS", "HOLDOUT_FRAC",
        "MIN_TRAIN_HOURS", "MIN_HOLDOUT_HOURS", "BAND_PERCENTILES")))


def plan_section() -> None:
    types, rows = load_instance_types(), load_discounts()
    u = synthetic()["noisy seasonal"]
    d = purchase_plan.__kwdefaults__ or {}
    plan = purchase_plan(u, types.values(), rows, unit="m5.large")
    print(f"\npurchase plan for the 'noisy seasonal' shape in m5.large units (default baseline quantile "
          f"{d.get('baseline_quantile')}, option {d.get('baseline_option')}):")
    print(f"  {plan.baseline_instances} x {plan.unit_type} on {plan.baseline_option}: "
          f"{plan.baseline_usd_per_month:.2f} USD/month; peaks {plan.peak_instance_hours:.0f} instance-hours "
          f"on {plan.peak_option}: {plan.peak_usd_per_month:.2f}; total {plan.total_usd_per_month:.2f} against "
          f"{plan.all_on_demand_usd_per_month:.2f} all on demand (peak count on demand all month: "
          f"{plan.static_on_demand_usd_per_month:.2f}); break-even busy share {plan.break_even_share:.3f}, "
          f"count needed that often {plan.break_even_instances}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bitbrains", type=Path, default=BITBRAINS)
    ap.add_argument("--train-days", type=float, default=20.0)
    ap.add_argument("--horizon-days", type=float, default=10.0)
    args = ap.parse_args()
    discounts_section()
    constants_section()
    match_section()
    plan_section()
    prices = load_unit_prices()
    pc, pm = prices.cpu_usd_per_vcpu_hour, prices.memory_usd_per_gib_hour
    print(f"\nforecast honesty: train {args.train_days:g} days, predict {args.horizon_days:g}; prices "
          f"{pc} USD/vCPU-h, {pm} USD/GiB-h ({prices.source})")
    kw = dict(train_days=args.train_days, horizon_days=args.horizon_days, pc=pc, pm=pm)
    rows = [r for u in synthetic().values() if (r := forward_row(u, **kw)) is not None]
    print_rows("synthetic shapes (the settings were chosen on these)", rows)
    files = sorted(args.bitbrains.glob("*.csv")) if args.bitbrains.is_dir() else []
    if not files:
        print(f"\nno Bitbrains files in {args.bitbrains}; skipped")
        return
    rows = [r for f in files if (r := forward_row(read_bitbrains_vm(f), **kw)) is not None]
    print_rows(f"Bitbrains GWA-T-12 Rnd, {len(rows)} VMs (reported on only)", rows)


if __name__ == "__main__":
    main()
