"""The cost optimizer: cost against performance risk, a purchase plan, a 30-day prediction, savings.

* :func:`size_risk` -- performance risk of a size, 0..4 (see :mod:`.risk`).
* :func:`cost_front` -- the Pareto front of monthly cost against risk over candidate sizes
  (catalog types from the cheapest that holds the median usage up to the current size) and
  purchase options (on-demand, spot, reserved; :mod:`.discounts`).
* :func:`purchase_plan` -- a steady baseline of instances on a commitment at the derived discount,
  the peaks on demand (or spot when the target is interruptible), against all on-demand.
* :func:`predict_cost` -- next ``horizon_days`` of cost, OpenCost style, with a backtested error
  (:mod:`.costforecast`).
* :func:`savings` -- what a move saves per month and year.

Everything is pure: plain data in, plain data out, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from optimizer.instance import HOURS_PER_MONTH, InstanceLike
from optimizer.pareto import pareto_mask
from optimizer.rightsizing.costforecast import CostPrediction, predict_cost
from optimizer.rightsizing.discounts import ON_DEMAND, SPOT, Discount, option_discount, supported_options
from optimizer.rightsizing.model import UsageSeries
from optimizer.rightsizing.offers import (
    Offer,
    SpotSuitability,
    current_type,
    is_burstable,
    price_offer,
    resolve_arch,
    spot_suitability,
)
from optimizer.rightsizing.risk import size_risk

__all__ = [
    "SPOT_INTERRUPTION_RISK",
    "CostPrediction",
    "PurchasePlan",
    "Savings",
    "cost_front",
    "predict_cost",
    "purchase_plan",
    "savings",
    "size_risk",
]

#: risk added to a spot offer of an interruptible target (an interruption is a performance event);
#: a target that is not interruptible gets at least "high" (3) on spot
SPOT_INTERRUPTION_RISK = 1.0
#: when the current size is unknown, candidates go up to the cheapest type holding this x the peak
_PEAK_HEADROOM = 1.25


def _median_fit(usage: UsageSeries) -> tuple[float, float]:
    return float(np.median(usage.cpu_cores)), float(np.median(usage.mem_gib))


def _candidates(usage: UsageSeries, pool: list[InstanceLike], cur: InstanceLike | None,
                arch: str | None) -> list[InstanceLike]:
    """Types that hold the median usage, priced up to the dearer of the current type and the cheapest
    type holding the peak with headroom (so an under-provisioned target sees larger sizes too)."""
    mc, mm = _median_fit(usage)
    fit = [t for t in pool if t.vcpus >= mc and t.memory_gib >= mm and (arch is None or t.arch == arch)]
    top = (float(usage.cpu_cores.max()) * _PEAK_HEADROOM, float(usage.mem_gib.max()) * _PEAK_HEADROOM)
    holding = [t for t in fit if t.vcpus >= top[0] and t.memory_gib >= top[1]]
    ceiling = min((t.usd_per_hour for t in holding), default=max((t.usd_per_hour for t in fit), default=0.0))
    if cur is not None:
        ceiling = max(ceiling, cur.usd_per_hour)
    out = [t for t in fit if t.usd_per_hour <= ceiling + 1e-12]
    if cur is not None and all(t.name != cur.name for t in out):
        out.append(cur)
    return out


def _spot_risk(size: float, spot: SpotSuitability) -> float:
    return min(4.0, size + SPOT_INTERRUPTION_RISK) if spot.suitable else max(3.0, size)


def cost_front(
    usage: UsageSeries,
    types: Iterable[InstanceLike],
    discounts: Sequence[Discount],
    *,
    current: str | InstanceLike | tuple[float, float] | None = None,
    arch: str | None = None,
    options: Sequence[str] | None = None,
    include_burstable: bool = False,
) -> list[Offer]:
    """The offers on the Pareto front of monthly cost against performance risk, cheapest first.

    Candidates are the catalog types that hold the median CPU and memory, priced up to the dearer
    of the current type (``current``: a name, a type, a (cores, GiB) size; default the series' last
    known capacity) and the cheapest type holding 1.25 x the peak, and of ``arch`` (as in
    :func:`.offers.match_offers`: default the current type's), each under each of ``options`` (default: every
    option the discount data support). An offer's risk is :func:`size_risk` of its size; on spot it
    is raised by :data:`SPOT_INTERRUPTION_RISK` for an interruptible target and to at least 3 for
    one that is not. Burstable types are left out unless ``include_burstable``. No returned offer is
    dominated (another no costlier and no riskier, and better in one); the list is sorted by cost
    (risk falls along it).

    Raises:
        ValueError: an empty series, an unknown option or current type.
    """
    if len(usage) == 0:
        raise ValueError(f"{usage.target}: no samples, so no cost front")
    pool = [t for t in types if include_burstable or not is_burstable(t)]
    if current is None and usage.current("cpu") and usage.current("memory"):
        current = (float(usage.current("cpu") or 0.0), float(usage.current("memory") or 0.0))
    cur = None if current is None else current_type(pool, current, arch=None if arch == "any" else arch)
    cur_month = None if cur is None else cur.usd_per_hour * HOURS_PER_MONTH
    arch = resolve_arch(arch, current, cur)
    opts = tuple(options) if options is not None else supported_options(discounts)
    spot = spot_suitability(usage)
    points: list[Offer] = []
    for t in _candidates(usage, pool, cur, arch):
        r = size_risk(usage, t.vcpus, t.memory_gib)
        for option in opts:
            risk = _spot_risk(r, spot) if option == SPOT else r
            points.append(price_offer(t, option, discounts, risk=risk, spot=spot, current_usd_per_month=cur_month))
    if not points:
        return []
    # a cheap sweep first (by cost, keep what lowers the running minimum risk), then the exact mask
    points.sort(key=lambda o: (o.usd_per_month, o.risk, o.vcpus, o.instance_type, o.purchase_option))
    kept: list[Offer] = []
    best = np.inf
    for o in points:
        if o.risk < best or (kept and o.risk == kept[-1].risk and o.usd_per_month == kept[-1].usd_per_month):
            kept.append(o)
            best = min(best, o.risk)
    mask = pareto_mask(np.array([[o.usd_per_month, o.risk] for o in kept]), ["minimize", "minimize"])
    return [o for o, m in zip(kept, mask) if m]


@dataclass(frozen=True)
class PurchasePlan:
    """A baseline on a commitment plus peaks on demand (or spot), per month, against all on-demand.

    Counts are instances of ``unit_type``; ``baseline_instances`` run all month under
    ``baseline_option``; ``peak_instance_hours`` (per month) above them run under ``peak_option``.
    ``total_usd_per_month == baseline_usd_per_month + peak_usd_per_month``;
    ``all_on_demand_usd_per_month`` prices the same instance-hours on demand;
    ``static_on_demand_usd_per_month`` keeps the peak count on demand all month.
    ``break_even_share``: a baseline instance pays off when it is needed at least this share of the
    time (1 - discount); ``break_even_instances``: the largest count the history needed that often
    (the cost-optimal baseline if the history repeats; the default quantile is more cautious);
    ``notes`` give the bases of the figures and the assumptions.
    """

    unit_type: str
    baseline_instances: int
    baseline_option: str
    baseline_usd_per_month: float
    peak_option: str
    peak_instance_hours: float
    peak_usd_per_month: float
    total_usd_per_month: float
    all_on_demand_usd_per_month: float
    static_on_demand_usd_per_month: float
    savings_usd_per_month: float
    break_even_share: float
    break_even_instances: int = 0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def _needed(usage: UsageSeries, unit: InstanceLike) -> np.ndarray:
    """Instances of ``unit`` needed at each sample (at least one: the target keeps running)."""
    need = np.maximum(np.ceil(np.round(usage.cpu_cores / unit.vcpus, 9)),
                      np.ceil(np.round(usage.mem_gib / unit.memory_gib, 9)))
    return np.maximum(need, 1.0)


def _break_even_count(need: np.ndarray, share: float) -> int:
    """The largest count ``b`` with ``need >= b`` in at least ``share`` of the samples."""
    levels = np.unique(need)
    busy = [int(b) for b in levels if float((need >= b).mean()) >= share - 1e-12]
    return max(busy, default=0)


def purchase_plan(
    usage: UsageSeries,
    types: Iterable[InstanceLike],
    discounts: Sequence[Discount],
    *,
    unit: str | InstanceLike | None = None,
    baseline_quantile: float = 0.15,
    baseline_option: str = "reserved_1y_no_upfront",
    peak_option: str | None = None,
    arch: str | None = None,
) -> PurchasePlan:
    """Split the target's instance-hours into a committed baseline and on-demand/spot peaks.

    The demand at each sample is the number of ``unit`` instances that hold it (default unit: the
    cheapest non-burstable type that holds the median usage); the baseline is the
    ``baseline_quantile`` level of that demand (p10-p20 keeps the commitment used most of the
    time), the rest is the peak, billed by the instance-hour. ``peak_option`` defaults to spot when
    :func:`.offers.spot_suitability` says the target is interruptible and the data price spot, else
    on-demand. Assumes the history is representative of the commitment's term.

    Raises:
        ValueError: an empty series, a quantile outside [0, 1], an unknown option or unit, or no type
            holding the median.
    """
    if len(usage) == 0:
        raise ValueError(f"{usage.target}: no samples, so no purchase plan")
    if not 0.0 <= baseline_quantile <= 1.0:
        raise ValueError(f"baseline_quantile must be in [0, 1], got {baseline_quantile}")
    pool = list(types)
    if unit is None:
        u = current_type([t for t in pool if not is_burstable(t)], _median_fit(usage), arch=arch)
    else:
        u = current_type(pool, unit, arch=arch)
    spot = spot_suitability(usage)
    if peak_option is None:
        peak_option = SPOT if spot.suitable and SPOT in supported_options(discounts) else ON_DEMAND
    base = option_discount(discounts, baseline_option, u.name)
    peak = option_discount(discounts, peak_option, u.name)
    need = _needed(usage, u)
    count = int(np.quantile(need, baseline_quantile, method="lower"))
    peak_hours = float(np.maximum(need - count, 0.0).mean()) * HOURS_PER_MONTH
    od_month = u.usd_per_hour * HOURS_PER_MONTH
    base_usd = count * od_month * (1.0 - base.pct / 100.0)
    peak_usd = peak_hours * u.usd_per_hour * (1.0 - peak.pct / 100.0)
    total = base_usd + peak_usd
    all_od = float(need.mean()) * od_month
    notes = (
        f"baseline: {base.basis}",
        f"peaks: {peak.basis}" + ("" if peak_option != SPOT else f" ({spot.reason})"),
        f"demand in {u.name} instances ({u.vcpus} vCPUs, {u.memory_gib:g} GiB); baseline = its "
        f"p{baseline_quantile * 100:g}; assumes the {usage.span_hours / 24:.1f}-day history is "
        f"representative of the {base.term} term",
    )
    return PurchasePlan(
        unit_type=u.name, baseline_instances=count, baseline_option=baseline_option, baseline_usd_per_month=base_usd,
        peak_option=peak_option, peak_instance_hours=peak_hours, peak_usd_per_month=peak_usd,
        total_usd_per_month=total, all_on_demand_usd_per_month=all_od,
        static_on_demand_usd_per_month=float(need.max()) * od_month, savings_usd_per_month=all_od - total,
        break_even_share=1.0 - base.pct / 100.0,
        break_even_instances=_break_even_count(need, 1.0 - base.pct / 100.0), notes=notes,
    )


@dataclass(frozen=True)
class Savings:
    """What a move from the current to the recommended size saves (negative: it costs more)."""

    current_usd_per_month: float
    recommended_usd_per_month: float
    usd_per_month: float
    usd_per_year: float
    pct: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def savings(current_usd_per_month: float, recommended_usd_per_month: float) -> Savings:
    """The monthly and yearly saving and its share of the current cost (0 % when the current is free).

    Raises:
        ValueError: a negative or non-finite cost.
    """
    for name, v in (("current", current_usd_per_month), ("recommended", recommended_usd_per_month)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"the {name} cost must be a finite number >= 0, got {v}")
    saved = current_usd_per_month - recommended_usd_per_month
    pct = 100.0 * saved / current_usd_per_month if current_usd_per_month > 0 else 0.0
    return Savings(current_usd_per_month, recommended_usd_per_month, saved, saved * 12.0, pct)
