"""Search control: the Optuna study a run opens or resumes, its sampler, trust region, warm start,
convergence and re-measurement. Everything here decides *what* to try next; nothing changes a knob."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from experiments.settings import Settings
from experiments.spec import SpecError
from experiments.study.outcomes import INTERRUPTED_BY_CRASH
from experiments.study.prepare import StudyPlan
from experiments.study.resolve import Resolved, clamp_to_space
from experiments.study.results import load_view
from experiments.study.stock_start import stock_points
from optimizer.convergence import ConvergenceMonitor, ConvergenceState, terminator_says_stop
from optimizer.noise import TrialEstimate, remeasure_candidates
from optimizer.samplers import SamplerChoice, build_sampler
from optimizer.space import CategoricalParam
from optimizer.trust import TrustRegion

__all__ = ["OpenedStudy", "converge", "fail_running", "new_monitor", "open_study", "remeasure_target", "sampler_for",
           "trust_region", "warm_start"]


@dataclass
class OpenedStudy:
    """The Optuna study of a run, how it samples, where its trust region is, and what ran before."""

    study: optuna.Study
    sampler: SamplerChoice
    region: TrustRegion | None
    baseline: dict[str, Any]  # the values before the study (a resumed study keeps its first baseline)
    done_before: int = 0
    remeasured_before: int = 0


def fail_running(study: optuna.Study, reason: str = "interrupted") -> None:
    """A trial still RUNNING (interrupted) is marked FAIL: never silently good."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "reason", reason)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)


def sampler_for(plan: StudyPlan, space: Any) -> SamplerChoice:
    """The spec's sampler for this space and budget. Raises SpecError for a sampler that cannot run."""
    s = plan.spec.sampler
    try:
        return build_sampler(s.name, space, n_objectives=len(plan.objectives), budget=plan.n_trials, seed=s.seed)
    except ValueError as err:
        raise SpecError(plan.source, [f"sampler.name: {err}"]) from None


def trust_region(plan: StudyPlan, resolved: Resolved, baseline: dict[str, Any]) -> TrustRegion | None:
    """The spec's trust region around the baseline, or None. Raises SpecError when it cannot start there."""
    tr = plan.spec.trust_region
    if tr is None:
        return None
    # the region works on every knob (conditions apply after each clamp, see the loop)
    space = dataclasses.replace(resolved.space, conditions=())
    center = clamp_to_space(baseline, space)
    outside = [f"{p.name} ({center[p.name]!r} not in {list(p.choices)})" for p in space.params
               if isinstance(p, CategoricalParam) and p.name in center and center[p.name] not in p.choices]
    if outside:
        raise SpecError(plan.source, [
            "trust_region: a trust region starts from the current configuration, but the current value of "
            + ", ".join(outside) + " is not among the spec's choices; add it to the choices"])
    for p in resolved.space.params:  # a baseline outside the spec's range starts at the nearest edge
        if p.name in center and not isinstance(p, CategoricalParam):
            center[p.name] = min(max(center[p.name], p.low), p.high)
    missing = [n for n in space.names if n not in center]
    if missing:
        raise SpecError(plan.source, [f"trust_region: the current value of {missing} cannot be read"])
    try:
        return TrustRegion(space.repair(center), tr.max_step, space, max_categorical_changes=tr.max_categorical_changes)
    except ValueError as err:
        raise SpecError(plan.source, [f"trust_region: {err}"]) from None


def _earlier_points(plan: StudyPlan, url: str, summary: Any, resolved: Resolved) -> list[dict[str, Any]]:
    """An earlier study's chosen configuration, then its noise-aware front, clamped to this space."""
    try:
        view = load_view(url, summary.study_name)
        decision = view.decide()
    except (ValueError, LookupError):
        return []
    conditional = {c.param for c in resolved.space.conditions}
    out = []
    for number in [decision.trial.number, *decision.noisy_front]:
        values = clamp_to_space(view.knob_values(view.trial(number)), resolved.space)
        if set(resolved.space.names) - conditional <= set(values) and resolved.space.is_valid(values):
            out.append(values)  # else the earlier study tuned other knobs, or other ranges
    return out


def warm_start(plan: StudyPlan, url: str, storage: optuna.storages.BaseStorage, name: str, resolved: Resolved,
               baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """The best configurations of earlier studies of the same target, for this space: the chosen one of
    each study first, then its noise-aware front; distinct, valid, not the baseline."""
    ws = plan.spec.warm_start
    if not ws.enabled or ws.top == 0:
        return []
    points: list[dict[str, Any]] = []
    seen = {json.dumps(clamp_to_space(baseline, resolved.space), sort_keys=True, default=str)}
    summaries = sorted(optuna.get_all_study_summaries(storage, include_best_trial=False),
                       key=lambda s: s.datetime_start.timestamp() if s.datetime_start else 0.0,
                       reverse=True)  # newest first
    for summary in summaries:
        if summary.study_name == name or summary.user_attrs.get("target") != plan.target_key:
            continue
        for values in _earlier_points(plan, url, summary, resolved):
            key = json.dumps(values, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                points.append(values)
            if len(points) >= ws.top:
                return points
    return points


def _resume(storage: Any, name: str, run_id: str, sampler: SamplerChoice, region: TrustRegion | None,
            baseline: dict[str, Any]) -> OpenedStudy:
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler.sampler)
    fail_running(study, reason=INTERRUPTED_BY_CRASH)
    baseline = dict(study.user_attrs.get("baseline") or baseline)  # the values before the study
    earlier = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    study.set_user_attr("run_id", run_id)
    study.set_user_attr("state", "running")
    study.set_user_attr("resumed", int(study.user_attrs.get("resumed", 0)) + 1)
    if region is not None and study.user_attrs.get("trust_center"):
        region = region.move(study.user_attrs["trust_center"])
    return OpenedStudy(study, sampler, region, baseline, done_before=len(earlier),
                       remeasured_before=sum("remeasure_of" in t.user_attrs for t in earlier))


def _create(plan: StudyPlan, url: str, storage: Any, name: str, run_id: str, resolved: Resolved,
            skipped: dict[str, str], sampler: SamplerChoice, baseline: dict[str, Any]) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler.sampler,
                                directions=[optuna.study.StudyDirection[d.upper()] for d in plan.directions])
    for key, value in {
        "objectives": plan.objectives,
        "constraints": {m: c.model_dump(exclude_none=True) for m, c in plan.spec.constraints.items()},
        "knobs": list(resolved.knobs),
        "sysctl_keys": {n: k.sysctl_key for n, k in resolved.knobs.items() if k.sysctl_key},
        "skipped": skipped,
        "baseline": baseline,
        "spec": plan.spec_attrs(),
        "run_id": run_id,
        "state": "running",
        "workload": plan.spec.workload.kind,
        "sampler": sampler.name,
        "sampler_reason": sampler.reason,
        "target": plan.target_key,
    }.items():
        study.set_user_attr(key, value)
    study.enqueue_trial(clamp_to_space(baseline, resolved.space), user_attrs={"baseline": True})
    room = max(0, plan.n_trials - 1)
    stock: list[tuple[str, dict[str, Any]]] = []
    if plan.spec.warm_start.stock_profiles and not sampler.enqueue:  # a grid tries every point anyway
        stock, not_tried = stock_points(resolved, baseline, Settings().tuned_profile_dirs)
        study.set_user_attr("stock_profiles", {"tried": [n for n, _ in stock[:room]], "not_tried": not_tried,
                                               "no_room": [n for n, _ in stock[room:]]})
    for profile, point in stock[:room]:
        study.enqueue_trial(point, user_attrs={"stock_profile": profile})
    room -= min(room, len(stock))
    warm = warm_start(plan, url, storage, name, resolved, baseline) if not sampler.enqueue else []
    for point in (sampler.enqueue or warm)[:room]:
        study.enqueue_trial(point, user_attrs={"warm_start": True} if warm else None)
    study.set_user_attr("warm_start", warm)
    return study


def open_study(plan: StudyPlan, *, url: str, storage: Any, name: str, run_id: str, resolved: Resolved,
               skipped: dict[str, str], baseline: dict[str, Any], resume: bool) -> OpenedStudy:
    """Create the run's Optuna study (baseline first, then the stock profiles' points when the spec asks,
    then warm-start points), or resume it: a trial left
    RUNNING by a crash is failed, the baseline is the study's first, the trust region where it was."""
    region = trust_region(plan, resolved, baseline)  # checked before the study exists
    sampler = sampler_for(plan, resolved.space)
    if resume:
        return _resume(storage, name, run_id, sampler, region, baseline)
    study = _create(plan, url, storage, name, run_id, resolved, skipped, sampler, baseline)
    return OpenedStudy(study, sampler, region, baseline)


def converge(plan: StudyPlan, study: optuna.Study, number: int, monitor: ConvergenceMonitor,
             tracker: Any) -> ConvergenceState:
    """Feed trial ``number`` to the convergence monitor; record the state (study attrs, MLflow)."""
    frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    conv = plan.spec.convergence
    terminator = None
    if conv is not None and conv.terminator and len(plan.directions) == 1:
        terminator = terminator_says_stop(study, evaluator="stagnation")
    state = monitor.update_from_trial(frozen, terminator=terminator)
    study.set_user_attr("convergence", {
        "converged": state.converged, "reason": state.reason,
        "trials_since_improvement": state.trials_since_improvement, "improved_at": state.improved_at,
        "history": [x if math.isfinite(x) else None for x in state.history],
        "stops_study": conv is not None,
    })
    if tracker is not None:
        progress = state.history[-1] if state.history else math.nan
        tracker.log_study_step({"convergence_progress": progress,
                                "trials_since_improvement": float(state.trials_since_improvement)}, step=number)
    return state


def new_monitor(plan: StudyPlan) -> ConvergenceMonitor:
    conv = plan.spec.convergence
    return ConvergenceMonitor(
        plan.directions,
        patience=conv.patience if conv else 8,
        min_rel_improvement=conv.min_improvement if conv else 0.01,
        min_trials=conv.min_trials if conv else None,
    )


def remeasure_target(plan: StudyPlan, study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The complete trial whose configuration most deserves another measurement, or None."""
    done = list(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if not done:
        return None
    n = plan.spec.noise
    estimates = [TrialEstimate.from_samples(t.user_attrs.get("samples") or [list(t.values)], confidence=n.confidence)
                 for t in done]
    params = [t.user_attrs.get("applied") or t.params for t in done]
    feasible = [all(v <= 0 for v in t.constraints.values()) for t in done]
    picks = remeasure_candidates(estimates, params, plan.directions, max_n=1, target_n=n.target_repeats,
                                 max_rel_ci=n.max_rel_ci, feasible=feasible)
    return done[picks[0]] if picks else None
