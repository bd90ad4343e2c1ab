"""The right-sizing recommender: a usage history in, a size per resource and a finding out. Pure.

Per resource (``cpu`` in cores, ``memory`` in GiB):

1. **Level**: a percentile of a decaying histogram (VPA: exponential buckets, weights halving every
   72 h, :data:`HALF_LIFE_S`), and at least the same percentile of the whole history without decay (rare
   bursts recur whether or not the last days had one). CPU uses every sample; memory uses the peak of
   each hour (VPA keeps memory peaks per interval: a working set that touched 9 GiB for a minute needed
   9 GiB).
2. **Cycle**: a daily or weekly cycle (autocorrelation of hourly values at 24 h / 168 h) raises the
   level to the cycle's typical peak, so a target is not sized for the average hour of the day.
3. **Trend**: a robust (Huber) fit of hourly values; a significant rise is extrapolated over the
   horizon the recommendation has to last (as long as the history it came from, 1 to 14 days) and
   added. A falling trend is reported, never used to shrink (the histogram already follows it).
4. **Margin**: ``1 + margin + burst_k * cv`` -- burstier series (higher coefficient of variation) get
   more headroom -- times VPA's confidence multiplier ``(1 + 1/days) ** conf_k``, which shrinks as
   the history grows (capped at 2).
5. **Floors**: memory never below the peak working set seen, plus the profile's peak margin, plus
   ``drift_z`` times how far the daily peak wanders over the horizon (a random walk: the robust standard
   deviation of its day-to-day changes times the square root of the horizon in days, at most
   ``peak_margin`` of the peak again); an OOM
   kill bumps memory to ``max(peak * 1.2, peak + 100 MiB)`` (VPA) and marks the risk; a CPU that ran
   at >= 95 % of its capacity in more than 5 % of samples (or was throttled in more than 10 % of CFS
   periods) is demand-censored -- its true demand is unknown -- so the target is above the capacity
   (``max(capacity, p99, level) * (1 + sat_bump)``, replacing the margins, which would only measure
   the cap) and the finding ``under-provisioned``.

Findings (AWS Compute Optimizer): ``under-provisioned`` when the current size is below ``lower`` (the
level the workload needs before any margin), or censored, or memory killed by OOM below the target;
``over-provisioned`` above ``upper`` (the target plus 25 %); ``optimized`` in between (and when the
current size is unknown); ``insufficient-data`` with less than 30 hours or 12 samples (``needs_hours``
says how much more; the sizes are then a cautious best guess). Profiles: :data:`PARAMS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from optimizer.rightsizing import signals
from optimizer.rightsizing.histogram import DecayingHistogram
from optimizer.rightsizing.model import PROFILES, Recommendation, ResourceRecommendation, UsageSeries

__all__ = ["MIN_HOURS", "MIN_SAMPLES", "PARAMS", "ProfileParams", "recommend"]

#: Compute Optimizer's minimum history for a recommendation
MIN_HOURS = 30.0
#: and at least this many samples
MIN_SAMPLES = 12
#: the histogram's half-life (both resources). VPA uses 24 h because it re-recommends continuously; a
#: recommendation here has to hold for days, and 72 h kept the bursts of the last week in view on the tuning
#: sources (24 h: 5.1 % CPU under-provisioning on the Bitbrains development VMs, 72 h: 1.4 %)
HALF_LIFE_S = 72 * 3600.0
#: smallest recommendation: 10 millicores, 64 MiB
FLOORS = {"cpu": 0.01, "memory": 1.0 / 16}
#: the current size counts as optimized up to this share above the target
UPPER_TOLERANCE = 0.25
#: CPU saturation: usage at >= this share of capacity ...
SATURATION_LEVEL = 0.95
#: ... in more than this share of samples (or throttled in more than THROTTLED_SHARE of periods)
SATURATED_SHARE = 0.05
THROTTLED_SHARE = 0.10
#: VPA's OOM bump: +20 % or +100 MiB, whichever is larger
OOM_FACTOR, OOM_MIN_GIB = 1.2, 100.0 / 1024
#: the trend's extrapolation horizon, hours (the history's span, clipped to this range)
HORIZON_H = (24.0, 14 * 24.0)
UNITS = {"cpu": "cores", "memory": "GiB"}
#: memory's trend test is less strict than CPU's (t >= 4, rise >= 10 %): a memory shortfall is an OOM kill,
#: a CPU shortfall is throttling
MEMORY_TREND = {"t_min": 2.0, "min_rise": 0.05}


@dataclass(frozen=True)
class ProfileParams:
    """One profile's settings; every one grows from ``savings`` to ``reliability`` so sizes are monotone.

    ``q``: the histogram percentile per resource; ``margin`` (CPU) or ``mem_margin`` (memory, whose level
    is already a percentile of hourly peaks) + ``burst_k`` x cv: the multiplicative headroom; ``conf_k``:
    the exponent of the confidence multiplier; ``peak_margin``: memory's headroom over its peak, plus
    ``drift_z`` times its day-to-day drift over the horizon; ``sat_bump``: how far above a saturated
    CPU's capacity to go.
    """

    q_cpu: float
    q_mem: float
    margin: float
    mem_margin: float
    burst_k: float
    conf_k: float
    peak_margin: float
    drift_z: float
    sat_bump: float


#: chosen on the tuning sources of benchmarks/rightsizing_replay.py (the Bitbrains development VMs; synthetic
#: steady, bursty, daily, seed 1). balanced's memory floor, peak + 20 %, is at least every fixed rule of the
#: replay (p90/p95/p99 + 20 % at most, max + 10 %) on the same history: no rule has less memory under-provisioning
PARAMS: dict[str, ProfileParams] = {
    "savings": ProfileParams(q_cpu=0.95, q_mem=0.98, margin=0.10, mem_margin=0.0, burst_k=0.05, conf_k=0.1,
                             peak_margin=0.10, drift_z=0.5, sat_bump=0.05),
    "balanced": ProfileParams(q_cpu=0.99, q_mem=0.99, margin=0.10, mem_margin=0.05, burst_k=0.10, conf_k=0.25,
                              peak_margin=0.20, drift_z=1.0, sat_bump=0.10),
    "reliability": ProfileParams(q_cpu=0.995, q_mem=1.0, margin=0.25, mem_margin=0.10, burst_k=0.15, conf_k=0.5,
                                 peak_margin=0.30, drift_z=2.0, sat_bump=0.25),
}


@dataclass(frozen=True)
class _Sized:
    rec: ResourceRecommendation
    reasons: list[str]


def _confidence(days: float, cv: float) -> float:
    """History length against variance: ``days / (days + 2)`` times ``1 / (1 + cv)``, in [0, 1]."""
    return round(max(0.0, days / (days + 2.0)) / (1.0 + max(0.0, cv)), 3)


def _saturation(u: UsageSeries) -> tuple[bool, float, float]:
    """``(censored, share of samples at >= 95 % of capacity, mean throttled share)`` of the CPU."""
    share = 0.0
    if u.cpu_capacity is not None:
        cap = u.cpu_capacity
        known = np.isfinite(cap) & (cap > 0)
        if known.any():
            share = float(np.mean(u.cpu_cores[known] >= SATURATION_LEVEL * cap[known]))
    thr = 0.0
    if u.throttled_ratio is not None and np.isfinite(u.throttled_ratio).any():
        thr = float(np.nanmean(u.throttled_ratio))
    return share > SATURATED_SHARE or thr > THROTTLED_SHARE, share, thr


def _level(u: UsageSeries, values: np.ndarray, resource: str, q: float, ref_t: float) -> tuple[float, np.ndarray]:
    """The percentile (the larger of the decaying histogram's and the whole history's: decay follows a level
    that moved, but rare bursts recur whether or not the last days had one) and the values it was built from
    (CPU samples or hourly memory peaks)."""
    t = u.t
    if resource == "memory" and u.interval_s < 3600:
        hours, values = signals.hourly(t, values, how="max")
        t = t[0] + hours * 3600.0
    levels = [DecayingHistogram.from_samples(values, t, half_life_s=half_life, ref_t=ref_t,
                                             first_bucket=FLOORS[resource] / 4, ratio=1.02).percentile(q)
              for half_life in (HALF_LIFE_S, math.inf)]
    return max(levels), values


def _size(u: UsageSeries, resource: str, p: ProfileParams, *, ref_t: float, days: float) -> _Sized:
    """One resource's recommendation (see the module for the steps)."""
    unit = UNITS[resource]
    values = u.cpu_cores if resource == "cpu" else u.mem_gib
    q = p.q_cpu if resource == "cpu" else p.q_mem
    reasons: list[str] = []
    pct, basis = _level(u, values, resource, q, ref_t)
    level = pct
    hours, hv = signals.hourly(u.t, values, how="mean" if resource == "cpu" else "max")
    cycle = signals.seasonality(hours, hv)
    if cycle.found and cycle.peak > level:
        level = cycle.peak
        reasons.append(f"{resource}: {'daily' if cycle.period_h == 24 else 'weekly'} cycle (autocorrelation "
                       f"{cycle.acf:.2f} at {cycle.period_h} h): sized for its peak {cycle.peak:.3g} {unit}")
    tr = signals.trend(hours, hv) if resource == "cpu" else signals.trend(hours, hv, **MEMORY_TREND)
    if tr.significant and tr.slope_per_day > 0:
        horizon_d = _horizon_h(u) / 24.0
        add = min(tr.slope_per_day * horizon_d, level)
        level += add
        reasons.append(f"{resource}: rising {tr.slope_per_day:.3g} {unit}/day (robust fit): +{add:.3g} {unit} "
                       f"over the next {horizon_d:.1f} days")
    elif tr.significant:
        reasons.append(f"{resource}: falling {-tr.slope_per_day:.3g} {unit}/day; not used to shrink")
    cv = signals.burstiness(basis)
    margin = 1.0 + (p.margin if resource == "cpu" else p.mem_margin) + p.burst_k * cv
    mult = min(2.0, (1.0 + 1.0 / max(days, 1.0 / 24)) ** p.conf_k)
    target = max(FLOORS[resource], level * margin * mult)
    reasons.append(f"{resource}: p{q * 100:g} {pct:.3g} {unit} (decaying histogram, half-life {HALF_LIFE_S / 3600:g} h"
                   f"{', hourly peaks' if resource == 'memory' else ''}) x {margin:.2f} margin (cv {cv:.2f}) "
                   f"x {mult:.2f} for {days:.1f} days of history = {target:.3g} {unit}")
    stats = {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
             "p95": float(np.percentile(values, 95)), "p99": float(np.percentile(values, 99)),
             "max": float(values.max()), "cv": cv}
    rec = ResourceRecommendation(
        resource=resource, target=target, lower=max(FLOORS[resource], level), upper=target * (1 + UPPER_TOLERANCE),
        current=u.current(resource), finding="optimized", observed=stats, margin=margin * mult,
        trend_per_day=tr.slope_per_day if tr.significant else 0.0, seasonal=cycle.found,
        confidence=_confidence(days, cv),
    )
    return _Sized(rec, reasons)


def _cpu_floor(u: UsageSeries, s: _Sized, p: ProfileParams) -> tuple[_Sized, bool]:
    """A saturated CPU's target above its capacity (demand-censored); ``(sized, censored)``."""
    censored, share, thr = _saturation(u)
    if not censored:
        return s, False
    r = s.rec
    cap = r.current if r.current is not None else r.observed["max"]
    # margins on a censored series measure the cap, not the demand: the target is the highest of the
    # capacity, the p99 and the level (with its trend and cycle), a step above
    target = max(cap, r.observed["p99"], r.lower) * (1.0 + p.sat_bump)
    why = (f"at >= {SATURATION_LEVEL:.0%} of capacity in {share:.0%} of samples" if share > SATURATED_SHARE
           else f"throttled in {thr:.0%} of CFS periods")
    reason = (f"cpu: saturated ({why}): the true demand is unknown, so {target:.3g} cores, "
              f"{p.sat_bump:.0%} above max(capacity, p99, level)")
    rec = replace(r, target=target, lower=max(r.lower, cap * (1 + 1e-9)), upper=target * (1 + UPPER_TOLERANCE))
    return _Sized(rec, [*s.reasons, reason]), True


def _horizon_h(u: UsageSeries) -> float:
    """How long the recommendation has to hold: the history's span, clipped to :data:`HORIZON_H`."""
    return min(max(u.span_hours, HORIZON_H[0]), HORIZON_H[1])


def _drift(u: UsageSeries, *, horizon_d: float) -> float:
    """How far the daily memory peak may wander over ``horizon_d`` days, read as a random walk: the robust (MAD)
    standard deviation of day-to-day changes of the daily peak times ``sqrt(horizon_d)`` (0 below 3 days)."""
    if u.span_hours < 72:
        return 0.0
    day = np.floor((u.t - u.t[0]) / 86400.0).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    peaks = np.maximum.reduceat(u.mem_gib, starts)
    if len(peaks) < 3:
        return 0.0
    d = np.diff(peaks)
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) * float(np.sqrt(horizon_d))


def _memory_floor(u: UsageSeries, s: _Sized, p: ProfileParams) -> _Sized:
    """Memory never below the peak plus the profile's margin; OOM kills bump it (VPA) and count as risk."""
    r = s.rec
    peak = r.observed["max"]
    # a working set's daily peak is bounded, not a free random walk: the drift adds at most half the peak_margin
    drift = min(_drift(u, horizon_d=_horizon_h(u) / 24.0), peak * p.peak_margin / 2 / max(p.drift_z, 1e-9))
    floor = peak * (1.0 + p.peak_margin) + p.drift_z * drift
    reasons = list(s.reasons)
    target = r.target
    if floor > target:
        target = floor
        reasons.append(f"memory: peak {peak:.3g} GiB + {p.peak_margin:.0%}"
                       + (f" + {p.drift_z:g} x {drift:.3g} GiB day-to-day drift" if drift > 0 else "")
                       + f" = {floor:.3g} GiB (never below the peak)")
    if u.oom_times:
        bumped = max(peak * OOM_FACTOR, peak + OOM_MIN_GIB, target)
        if bumped > target:
            target = bumped
        reasons.append(f"memory: {len(u.oom_times)} OOM kill(s): at least max(peak x 1.2, peak + 100 MiB) "
                       f"= {bumped:.3g} GiB")
    observed = {**r.observed, "peak": peak}
    rec = replace(r, target=target, upper=target * (1 + UPPER_TOLERANCE), observed=observed)
    return _Sized(rec, reasons)


def _judge(u: UsageSeries, s: _Sized, *, censored: bool) -> _Sized:
    """The finding and risk of the current size (or of the target, when the current size is unknown)."""
    r = s.rec
    values = u.cpu_cores if r.resource == "cpu" else u.mem_gib
    ooms = len(u.oom_times) if r.resource == "memory" else 0
    throttled = u.throttled_ratio if r.resource == "cpu" else None
    reasons = list(s.reasons)
    if r.current is None:
        finding = "optimized"
        risk = signals.risk_score(values, r.target, throttled=throttled, ooms=ooms, saturated=censored)
        reasons.append(f"{r.resource}: current size unknown: the risk is that of the recommendation")
    else:
        risk = signals.risk_score(values, r.current, throttled=throttled, ooms=ooms, saturated=censored)
        if censored or r.current < r.lower or (ooms and r.current < r.target):
            finding = "under-provisioned"
        elif r.current > r.upper:
            finding = "over-provisioned"
        else:
            finding = "optimized"
        reasons.append(f"{r.resource}: current {r.current:.3g} {UNITS[r.resource]}, optimized in "
                       f"[{r.lower:.3g}, {r.upper:.3g}]: {finding}")
    return _Sized(replace(r, finding=finding, risk=risk), reasons)


def _empty(u: UsageSeries, resource: str) -> ResourceRecommendation:
    cur = u.current(resource)
    size = cur if cur is not None else FLOORS[resource]
    return ResourceRecommendation(resource=resource, target=size, lower=size, upper=size, current=cur,
                                  finding="insufficient-data")


def _overall(cpu: ResourceRecommendation, mem: ResourceRecommendation) -> str:
    findings = {cpu.finding, mem.finding}
    for f in ("under-provisioned", "over-provisioned"):
        if f in findings:
            return f
    return "optimized"


def recommend(usage: UsageSeries, *, profile: str = "balanced", now: float | None = None,
              min_hours: float = MIN_HOURS) -> Recommendation:
    """The recommendation for ``usage`` under ``profile`` (see the module for the method).

    ``now`` (Unix seconds, default the last sample) only ages the history: one older than 7 days halves
    the confidence. Never raises on a short or odd series: fewer than :data:`MIN_SAMPLES` samples or
    less than ``min_hours`` hours (default :data:`MIN_HOURS`, Compute Optimizer's 30 h; the setting
    ``rightsizing_min_history_h``) give ``insufficient-data`` with ``needs_hours`` and a best guess.

    Raises:
        ValueError: ``profile`` is not one of :data:`~optimizer.rightsizing.model.PROFILES`, or ``min_hours``
            is not a positive number.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown right-sizing profile {profile!r}; allowed: {', '.join(PROFILES)}")
    if not (math.isfinite(min_hours) and min_hours > 0):
        raise ValueError(f"min_hours must be a positive number of hours, got {min_hours}")
    p = PARAMS[profile]
    span = usage.span_hours
    if len(usage) == 0:
        return Recommendation(target=usage.target, profile=profile, cpu=_empty(usage, "cpu"),
                              memory=_empty(usage, "memory"), finding="insufficient-data",
                              confidence=0.0, risk=0.0, history_hours=0.0, needs_hours=min_hours,
                              reasons=("no samples yet",))
    last = float(usage.t[-1])
    ref = max(last, now) if now is not None else last
    days = span / 24.0
    cpu, censored = _cpu_floor(usage, _size(usage, "cpu", p, ref_t=ref, days=days), p)
    mem = _memory_floor(usage, _size(usage, "memory", p, ref_t=ref, days=days), p)
    cpu, mem = _judge(usage, cpu, censored=censored), _judge(usage, mem, censored=False)
    reasons = [*cpu.reasons, *mem.reasons]
    confidence = min(cpu.rec.confidence, mem.rec.confidence)
    if now is not None and now - last > 7 * 86400:
        confidence = round(confidence / 2, 3)
        reasons.append(f"the last sample is {(now - last) / 86400:.0f} days old: confidence halved")
    interval_h = usage.interval_s / 3600 if len(usage) > 1 else 0.0
    needs = max(min_hours - span, (MIN_SAMPLES - len(usage)) * interval_h if len(usage) < MIN_SAMPLES else 0.0)
    if span < min_hours or len(usage) < MIN_SAMPLES:
        needs = max(needs, 1e-3) if not math.isfinite(needs) or needs <= 0 else needs
        reasons.insert(0, f"insufficient data: {span:.1f} h and {len(usage)} samples; needs {needs:.1f} more hours "
                          f"(at least {min_hours:g} h and {MIN_SAMPLES} samples); the sizes are a cautious guess")
        return Recommendation(target=usage.target, profile=profile, cpu=cpu.rec, memory=mem.rec,
                              finding="insufficient-data", confidence=min(confidence, 0.2),
                              risk=max(cpu.rec.risk, mem.rec.risk), history_hours=span, needs_hours=round(needs, 2),
                              reasons=tuple(reasons))
    return Recommendation(target=usage.target, profile=profile, cpu=cpu.rec, memory=mem.rec,
                          finding=_overall(cpu.rec, mem.rec), confidence=confidence,
                          risk=max(cpu.rec.risk, mem.rec.risk), history_hours=span, reasons=tuple(reasons))
