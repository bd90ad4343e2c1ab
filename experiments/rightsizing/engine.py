"""Right-sizing and cost, composed: what the CLI (``novatune rightsize``, ``novatune cost``) and the API
(``/rightsizing``, ``/cost``) answer.

One :class:`Rightsizing` over the data directory joins the usage history (:class:`~collectors.usage.history.
UsageStore`), the recommender (:func:`optimizer.rightsizing.recommend.recommend`), the offers and the cost
model (:mod:`optimizer.rightsizing.offers`, :mod:`~optimizer.rightsizing.costplan`,
:mod:`~optimizer.rightsizing.costforecast`, priced from the packaged catalog :mod:`collectors.pricing`) and the
approval workflow (:mod:`experiments.rightsizing.proposals`, :mod:`~experiments.rightsizing.workflow`).

* A target observed live (``cgroup:/PATH``, ``unit:NAME.service``, ``pid:N``) gets a *proposal*: the
  recommended CPU quota and memory limit as ``rightsize.*`` values, which move ``proposed -> approved ->
  applied -> validated | rolled_back`` (or ``rejected``). :meth:`Rightsizing.recommendations` records a new
  proposal only when the target has no open one with the same values, so listing twice does not pile up.
* A target imported from a trace or from Prometheus (a VM elsewhere) gets the same recommendation and an
  instance-type *plan* with its exact price delta; nothing can be applied to it from here.

Cost of a target: its instance type when it is a VM (the cheapest catalog type holding its current size, and
the cheapest holding the recommendation), and for every target the allocation cost OpenCost computes (cores
x vCPU-hour + GiB x GiB-hour, from ``collectors/data/unit-prices.csv``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from collectors.errors import NovatuneError
from collectors.pricing import InstanceType, UnitPrices, load_discounts, load_instance_types, load_unit_prices
from collectors.usage.history import TargetInfo, UsageStore
from experiments.rightsizing.proposals import Proposal, ProposalStore, UnknownProposal, values_from_recommendation
from experiments.rightsizing.workflow import propose
from experiments.settings import Paths, Settings
from optimizer.instance import HOURS_PER_MONTH
from optimizer.rightsizing.costforecast import predict_cost
from optimizer.rightsizing.costplan import cost_front, purchase_plan, savings
from optimizer.rightsizing.discounts import Discount
from optimizer.rightsizing.model import PROFILES, Recommendation, UsageSeries
from optimizer.rightsizing.offers import cgroup_limits, cheapest_holding, match_offers, spot_suitability
from optimizer.rightsizing.recommend import recommend

__all__ = ["LIVE_KINDS", "Analysis", "Rightsizing", "RightsizingError", "Watch"]

#: target names whose cgroup novatune can act on (the rest are plans only)
LIVE_KINDS = ("cgroup:", "unit:", "pid:")
#: a proposal in these states stands for its target's current size (listing again does not add another)
OPEN_STATES = ("proposed", "approved", "applied", "validated")


class RightsizingError(NovatuneError, ValueError):
    """A request the engine cannot take: an unknown profile, a horizon out of range (exit 2, HTTP 422; the
    message says what is allowed)."""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True)
class Watch:
    """A validation's sampler of the target and its baseline (taken before the change)."""

    sampler: Callable[[], Any]
    baseline: Any


@dataclass(frozen=True)
class Analysis:
    """One target under one profile: its history, recommendation, offers and costs, and its proposal."""

    target: str
    live: bool
    usage: UsageSeries
    recommendation: Recommendation
    offers: list[dict[str, Any]]
    limits: dict[str, Any] | None
    cost: dict[str, Any]
    proposal: Proposal | None = None

    def to_dict(self) -> dict[str, Any]:
        rec = self.recommendation
        return {
            "target": self.target,
            "kind": "live" if self.live else "plan-only",
            "proposal": None if self.proposal is None else self.proposal.id,
            "state": None if self.proposal is None else self.proposal.state,
            "finding": rec.finding,
            "cpu_cores": round(rec.cpu.target, 3),
            "mem_gib": round(rec.memory.target, 3),
            "current_cpu_cores": rec.cpu.current,
            "current_mem_gib": rec.memory.current,
            "confidence": round(rec.confidence, 3),
            "risk": round(rec.risk, 2),
            "risk_label": rec.risk_label,
            "history_hours": round(rec.history_hours, 2),
            "needs_hours": round(rec.needs_hours, 2),
            "recommendation": rec.to_dict(),
            "limits": self.limits,
            "offers": self.offers,
            "cost": self.cost,
        }


def _check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise RightsizingError(f"unknown right-sizing profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return profile


def _live(info: TargetInfo) -> bool:
    """A target novatune observed itself, named as a cgroup, unit or pid (an imported trace's names are plans
    only, whatever they look like)."""
    return info.source == "observe" and info.name.startswith(LIVE_KINDS)


def _monthly(t: InstanceType | None) -> float | None:
    return None if t is None else round(t.usd_per_hour * HOURS_PER_MONTH, 2)


class Rightsizing:
    """Right-sizing over the data directory ``paths`` with ``settings`` (profile, retention, validation).

    Raises (from its methods): ``UnknownTarget`` (404) for a target with no history, ``UnknownProposal`` (404),
    ``InvalidTransition`` (409), ``TargetRefused`` (422) for a target the operator did not allow,
    :class:`RightsizingError` (exit 2 / 422).
    """

    def __init__(self, paths: Paths, settings: Settings, *, cpus_online: int | None = None) -> None:
        self.paths = paths
        self.settings = settings
        self.usage = UsageStore(paths.usage_db, retention_days=settings.usage_retention_days)
        self.proposals = ProposalStore(paths.rightsizing_db)
        self.cpus_online = cpus_online

    # ------------------------------------------------------------------ the price data (read once)
    @cached_property
    def types(self) -> dict[str, InstanceType]:
        return load_instance_types()

    @cached_property
    def discounts(self) -> list[Discount]:
        return load_discounts()

    @cached_property
    def unit_prices(self) -> UnitPrices:
        return load_unit_prices()

    # ------------------------------------------------------------------ analysis
    def targets(self) -> list[TargetInfo]:
        return self.usage.targets()

    def analyse(self, target: str | TargetInfo, *, profile: str | None = None, now: float | None = None) -> Analysis:
        """The recommendation, offers, cgroup values and costs of one stored target (no proposal recorded); given
        as its name, or as the :class:`TargetInfo` a caller listing every target already has."""
        prof = _check_profile(profile or self.settings.rightsizing_profile)
        name = target if isinstance(target, str) else target.name
        usage = self.usage.series(name)  # UnknownTarget first, for a target with no history
        info = target if isinstance(target, TargetInfo) else next((t for t in self.targets() if t.name == name), None)
        target = name
        rec = recommend(usage, profile=prof, now=now, min_hours=self.settings.rightsizing_min_history_h)
        live = info is not None and _live(info)
        limits = None
        if live:
            lim = cgroup_limits(rec, cpus_online=self._cpus())
            limits = {"cpu_quota_us": lim.cpu_quota_us, "cpu_period_us": lim.cpu_period_us,
                      "memory_max_bytes": lim.memory_max_bytes, "allowed_cpus": lim.allowed_cpus,
                      "systemd": dict(lim.systemd), "notes": list(lim.notes)}
        offers = [o.to_dict() for o in match_offers(rec, self.types.values(), self.discounts,
                                                      current=self._current_size(usage), limit=3)]
        return Analysis(target=target, live=live, usage=usage, recommendation=rec, offers=offers, limits=limits,
                        cost=self._cost(usage, rec))

    def _cpus(self) -> int:
        return self.cpus_online or os.cpu_count() or 1

    def _current_size(self, usage: UsageSeries) -> tuple[float, float] | None:
        cpu, mem = usage.current("cpu"), usage.current("memory")
        return None if cpu is None or mem is None else (cpu, mem)

    def _priced(self, size: tuple[float, float]) -> InstanceType | None:
        t = cheapest_holding(self.types.values(), *size)
        return None if t is None else self.types.get(t.name)

    def _cost(self, usage: UsageSeries, rec: Recommendation) -> dict[str, Any]:
        """Allocation cost (unit prices) of the current and recommended sizes, and the instance-type plan."""
        up = self.unit_prices

        def alloc(cpu: float | None, mem: float | None) -> float | None:
            if cpu is None or mem is None:
                return None
            return round((cpu * up.cpu_usd_per_vcpu_hour + mem * up.memory_usd_per_gib_hour) * HOURS_PER_MONTH, 2)

        size = self._current_size(usage)
        cur_t = self._priced(size) if size is not None else None
        new_t = self._priced((rec.cpu.target, rec.memory.target))
        cur_usd, new_usd = _monthly(cur_t), _monthly(new_t)
        out: dict[str, Any] = {
            "allocation_usd_per_month": {"current": alloc(rec.cpu.current, rec.memory.current),
                                         "recommended": alloc(rec.cpu.target, rec.memory.target),
                                         "basis": up.source},
            "instance_plan": {
                "current_type": None if cur_t is None else cur_t.name, "current_usd_per_month": cur_usd,
                "recommended_type": None if new_t is None else new_t.name, "recommended_usd_per_month": new_usd,
                "usd_per_month_delta": None if cur_usd is None or new_usd is None else round(new_usd - cur_usd, 2),
                "note": "plan only: a VM is resized by its cloud provider; prices: collectors/data/"
                        "aws-ec2-us-east-1.csv (us-east-1 on-demand, Linux, 2026-07-20)",
            },
        }
        a = out["allocation_usd_per_month"]
        if a["current"] is not None and a["recommended"] is not None:
            s = savings(a["current"], a["recommended"])
            out["savings_usd_per_month"] = round(s.usd_per_month, 2)
            out["savings_pct"] = round(s.pct, 1)
        return out

    # ------------------------------------------------------------------ proposals
    def recommendations(self, *, profile: str | None = None, target: str | None = None,
                        who: str = "novatune") -> list[Analysis]:
        """Every stored target (or one) analysed; a live target with a usable recommendation gets a proposal
        (a new one only when its open proposal has other values)."""
        names: list[str | TargetInfo] = [target] if target is not None else list(self.targets())
        out = []
        for name in names:
            a = self.analyse(name, profile=profile)  # a TargetInfo: no second scan of the targets per target
            out.append(self._propose(a, who=who) if a.live and a.limits is not None else a)
        return out

    def _propose(self, a: Analysis, *, who: str) -> Analysis:
        if a.recommendation.finding == "insufficient-data":
            return a
        values = values_from_recommendation(a.recommendation.to_dict())
        # a quota above the CPUs the machine has is no limit at all: more than that is a plan, not a value
        values["rightsize.cpu_cores"] = min(values["rightsize.cpu_cores"], float(self._cpus()))
        for p in self.proposals.list(target=a.target):
            if p.state in OPEN_STATES and p.values == values and p.profile == a.recommendation.profile:
                return Analysis(**{**a.__dict__, "proposal": p})
        p = propose(self.proposals, a.recommendation, plan={"limits": a.limits, "offers": a.offers, "cost": a.cost},
                    who=who, values=values)
        return Analysis(**{**a.__dict__, "proposal": p})

    def proposal(self, ref: str) -> Proposal:
        """A proposal by id, or the newest open proposal of a target name.

        Raises:
            UnknownProposal: neither.
        """
        if not ref.startswith(LIVE_KINDS) and ":" not in ref:
            return self.proposals.get(ref)
        for p in self.proposals.list(target=ref):
            if p.state in OPEN_STATES:
                return p
        raise UnknownProposal(f"no open right-sizing proposal for {ref!r}; `novatune rightsize list` records one "
                              "for each observed target with enough history")

    def history(self, *, target: str | None = None) -> list[dict[str, Any]]:
        """Every step of every proposal (of ``target``), oldest first: proposal, target, state, who, at, note."""
        rows = []
        for p in self.proposals.list(target=target):
            for step in p.history:
                rows.append({"proposal": p.id, "target": p.target, **step.__dict__})
        return sorted(rows, key=lambda r: str(r["at"]))

    def before_change(self, p: Proposal) -> Watch:
        """What a validation compares with, taken BEFORE the proposal is applied: the OOM kills so far and the
        memory pressure now (from the target's cgroup), and the throttling the history shows over the last
        hour (its 95th percentile; the throttling of the moment when there is no history)."""
        import numpy as np

        from experiments.rightsizing.health import CgroupHealthSampler, Health
        from experiments.rightsizing.workflow import target_cgroup

        sampler = CgroupHealthSampler(target_cgroup(p.target))
        now = sampler()
        throttled = now.throttled_ratio
        try:
            recent = self.usage.series(p.target, since=time.time() - 3600).throttled_ratio
        except LookupError:  # UnknownTarget: no history any more
            recent = None
        if recent is not None and np.isfinite(recent).any():
            throttled = float(np.nanpercentile(recent, 95))
        return Watch(sampler, Health(throttled_ratio=throttled, oom_kills=now.oom_kills,
                                     memory_pressure=now.memory_pressure, working_set_gib=now.working_set_gib))

    def validate_after_apply(self, p: Proposal, watch: Watch, *, duration_s: float | None,
                             stop: Callable[[], bool] | None = None, who: str = "novatune") -> Proposal:
        """Watch the applied proposal ``p`` for ``duration_s`` (default ``rightsizing_validation_s``) against
        ``watch`` (:meth:`before_change`) and roll it back on degradation (see
        :func:`experiments.rightsizing.workflow.validate`)."""
        from experiments.rightsizing.workflow import validate

        return validate(self.proposals, p.id, baseline=watch.baseline, sample=watch.sampler, stop=stop,
                        paths=self.paths, who=who,
                        duration_s=self.settings.rightsizing_validation_s if duration_s is None else duration_s)

    # ------------------------------------------------------------------ cost
    def cost_recommendations(self, *, profile: str | None = None) -> list[dict[str, Any]]:
        """Per target: the Pareto front of monthly cost against risk, the purchase plan, the savings."""
        rows = []
        for info in self.targets():
            a = self.analyse(info, profile=profile)
            usage, size = a.usage, self._current_size(a.usage)
            row: dict[str, Any] = {"target": info.name, "finding": a.recommendation.finding,
                                   "recommended": {"cpu_cores": a.recommendation.cpu.target,
                                                   "mem_gib": a.recommendation.memory.target},
                                   "cost": a.cost, "offers": a.offers}
            if len(usage) >= 2:
                row["front"] = [o.to_dict() for o in cost_front(usage, self.types.values(), self.discounts,
                                                                current=size)]
                row["purchase_plan"] = purchase_plan(usage, self.types.values(), self.discounts).to_dict()
                row["spot"] = spot_suitability(usage).__dict__
            rows.append(row)
        return rows

    def predict(self, target: str, *, horizon_days: float = 30.0) -> dict[str, Any]:
        """The target's allocation cost over the next ``horizon_days``, with the method's backtested error."""
        if not (math.isfinite(horizon_days) and 1 <= horizon_days <= 365):
            raise RightsizingError(f"horizon_days must be within 1..365, got {horizon_days}")
        usage = self.usage.series(target)
        up = self.unit_prices
        pred = predict_cost(usage, cpu_usd_per_vcpu_hour=up.cpu_usd_per_vcpu_hour,
                            memory_usd_per_gib_hour=up.memory_usd_per_gib_hour, horizon_days=horizon_days,
                            cpu_request=usage.current("cpu"), mem_request=usage.current("memory"))
        return {"target": target, "history_hours": round(usage.span_hours, 2), **pred.to_dict(),
                "basis": up.source, "at": time.time()}

    def savings(self, *, profile: str | None = None) -> dict[str, Any]:
        """What moving every target to its recommendation saves per month (allocation cost), and per target."""
        rows, cur_total, new_total = [], 0.0, 0.0
        for info in self.targets():
            a = self.analyse(info, profile=profile)
            alloc = a.cost["allocation_usd_per_month"]
            plan = a.cost["instance_plan"]
            rows.append({"target": info.name, "finding": a.recommendation.finding,
                         "current_usd_per_month": alloc["current"], "recommended_usd_per_month": alloc["recommended"],
                         "savings_usd_per_month": a.cost.get("savings_usd_per_month"),
                         "instance_plan": plan})
            if alloc["current"] is not None and a.recommendation.finding != "insufficient-data":
                cur_total += alloc["current"]
                new_total += alloc["recommended"]
        total = savings(cur_total, new_total)
        return {"targets": rows, "current_usd_per_month": round(cur_total, 2),
                "recommended_usd_per_month": round(new_total, 2),
                "savings_usd_per_month": round(total.usd_per_month, 2), "savings_pct": round(total.pct, 1),
                "basis": self.unit_prices.source}
