"""The trial loop, in short steps (as Optuna's ``study/_optimize.py`` reads).

:func:`optimize` asks the sampler for a trial, clamps it to the trust region,
runs it (:func:`run_trial`: apply through a journaled session, measure, reduce,
restore), tells Optuna (:func:`tell`: the one place where an outcome becomes a
trial state), records it and checks convergence; then re-measures the most
promising configurations the noise settings ask for.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from actuators import ActuatorError, ChangeSession, Journal
from collectors.errors import CollectorError, WorkloadError
from experiments.study import search
from experiments.study.measure import Measurer, violation
from experiments.study.outcomes import Event, RestoreFailed, StudyReport, TrialReport
from experiments.study.prepare import StudyPlan
from experiments.study.reporting import log_trial, write_status
from experiments.study.resolve import Resolved, clamp_to_space
from optimizer.trust import TrustRegion

__all__ = ["Run", "one_trial", "optimize", "run_trial", "tell"]


@dataclass
class Run:
    """What the loop needs of the running study: the plan, where it records, what it measures with."""

    plan: StudyPlan
    run_id: str
    journal: Journal
    workdir: Path
    resolved: Resolved
    measurer: Measurer
    study: optuna.Study
    report: StudyReport
    tracker: Any
    on_event: Event
    deadline: float
    region: TrustRegion | None = None


# --------------------------------------------------------------- one trial
def run_trial(run: Run, number: int, params: dict[str, Any], *, stem: str | None = None,
              profile: bool = True, check_space: bool = True) -> TrialReport:
    """Apply ``params`` (journaled), measure every repeat, reduce; the session restores on the way out.

    ``stem``: the name of the measurement's files under ``trials/`` (default ``trial-NNN``); ``profile``:
    profile it when the spec asks (the justification's re-measurements are not profiled); ``check_space``
    False: values outside the spec's ranges are allowed (a knob put back to the value found before the
    study; the catalog's hard bounds still hold, in the actuators).

    A failure of the knobs, the workload or the collector is the trial's outcome (state ``fail`` with the
    reason), never the study's; a restore that fails is reported as ``restore failed: ...``.
    """
    t0 = time.monotonic()
    tr = TrialReport(number, params, "fail", started=time.time())
    series: list[pd.DataFrame] = []
    timelines: list[pd.DataFrame] = []
    units: dict[str, str] = {}  # metric -> unit, as the workload reports them
    resolved, plan = run.resolved, run.plan
    session = ChangeSession(run.journal, run_id=run.run_id, trial=number)
    profiler = run.measurer.profiler if profile else None
    if check_space and not resolved.space.is_valid(params):  # e.g. an enqueued point: never reaches an actuator
        tr.reason = f"invalid combination (outside a range or breaking a knob ordering): {params}"
        tr.seconds = time.monotonic() - t0
        return tr
    if profiler is not None:
        profiler.start_trial(number)
    try:
        with session:
            session.apply_many(resolved.values_for(params))
            per_repeat = [run.measurer.window(rep, series, timelines, units) for rep in range(plan.spec.trial.repeats)]
            tr.metrics = run.measurer.reduce(per_repeat, params, throughput_unit=units.get("throughput", ""))
            # per-repeat objective values (derived ones such as cost from the trial's figures)
            tr.samples = [[r.get(o, tr.metrics.get(o, math.nan)) for o in plan.objectives] for r in per_repeat]
            tr.state = "complete"
    except (ActuatorError, WorkloadError, CollectorError, OSError, ValueError) as err:
        tr.state, tr.reason = "fail", f"{type(err).__name__}: {err}"
    if session.failures:
        tr.state, tr.reason = "fail", "restore failed: " + "; ".join(map(str, session.failures))
    Measurer.save_series(run.workdir, number, series, timelines, stem=stem)
    if profiler is not None:
        tr.profile_files, tr.profile_tags = profiler.finish_trial(params)
    tr.seconds = time.monotonic() - t0
    if tr.state == "complete":
        tr.feasible = all(violation(plan, m, tr.metrics) <= 0 for m in plan.spec.constraints)
    return tr


def tell(plan: StudyPlan, study: optuna.Study, trial: optuna.trial.Trial, tr: TrialReport) -> None:
    """Record the outcome in Optuna: a failed or unmeasurable trial is FAIL (never a good point), a
    complete one gets its objective values and one constraint per SLA (<= 0: met)."""
    values = [tr.metrics.get(m, math.nan) for m in plan.objectives]
    if tr.state == "complete" and not all(math.isfinite(v) for v in values):
        tr.state, tr.reason = "fail", f"objective not measurable: {dict(zip(plan.objectives, values))}"
    trial.set_user_attr("metrics", {k: v for k, v in tr.metrics.items() if math.isfinite(v)})
    if tr.samples and all(math.isfinite(x) for row in tr.samples for x in row):
        trial.set_user_attr("samples", tr.samples)
    if tr.state != "complete":
        trial.set_user_attr("reason", tr.reason)
        study.tell(trial, state=TrialState.FAIL)
        return
    for m in plan.spec.constraints:
        viol = violation(plan, m, tr.metrics)
        trial.set_constraint(m, viol if math.isfinite(viol) else 1e12)
    study.tell(trial, values)


def one_trial(run: Run, trial: optuna.trial.Trial, params: dict[str, Any], *, check_space: bool = True,
              **attrs: Any) -> TrialReport:
    """Run, tell, record and report one asked trial (``check_space``: see :func:`run_trial`)."""
    trial.set_user_attr("applied", params)  # the proposal after ordering repair (and trust region)
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    run.on_event("trial_start", number=trial.number, params=params)
    write_status(run.plan, run.study, run.report, run.workdir)  # shows the trial in progress
    tr = run_trial(run, trial.number, params, check_space=check_space)
    tell(run.plan, run.study, trial, tr)
    run.report.trials.append(tr)
    if run.tracker is not None:
        log_trial(run.tracker, tr, run.workdir, baseline=trial.number == 0)
    write_status(run.plan, run.study, run.report, run.workdir)
    run.on_event("trial_end", report=tr)
    if tr.reason.startswith("restore failed"):
        raise RestoreFailed(tr.reason)
    return tr


# ------------------------------------------------------------------ loops
def _search(run: Run, budget: int) -> str:
    """Up to ``budget`` sampled trials; returns why the search stopped."""
    plan, study = run.plan, run.study
    monitor = search.new_monitor(plan)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        monitor.update_from_trial(t)  # a resumed study carries on from where it was
    write_status(plan, study, run.report, run.workdir)
    for _ in range(budget):
        if time.monotonic() >= run.deadline:
            return f"budget timeout of {plan.spec.budget.timeout_s:g} s reached"
        trial = study.ask()
        params = run.resolved.space.suggest(trial)
        extra: dict[str, Any] = {}
        if run.region is not None:
            params = run.resolved.space.active(run.region.clamp(params))
            extra["trust_center"] = run.region.center  # what this trial's steps are measured from
        # the baseline is the machine as found: measured even where a value lies outside the spec's range
        # (the actuators' hard bounds still hold)
        tr = one_trial(run, trial, params, check_space=not trial.user_attrs.get("baseline"), **extra)
        state = search.converge(plan, study, trial.number, monitor, run.tracker)
        if run.region is not None and tr.feasible and state.improved_at == trial.number:
            run.region = run.region.move({**run.region.center, **params})  # the region follows the improvements
            study.set_user_attr("trust_center", run.region.center)
        if plan.spec.convergence is not None and state.converged:
            return f"converged: {state.reason}"
    return f"budget of {plan.n_trials} trials used"


def _remeasure(run: Run, budget: int) -> None:
    """Noise: re-measure promising and duplicate configurations (each a trial of its own)."""
    for _ in range(budget):
        if time.monotonic() >= run.deadline:
            return
        target = search.remeasure_target(run.plan, run.study)
        if target is None:
            return
        params = dict(target.user_attrs.get("applied") or target.params)
        run.study.enqueue_trial(clamp_to_space(params, run.resolved.space), user_attrs={"remeasure_of": target.number})
        trial = run.study.ask()
        run.resolved.space.suggest(trial)  # the enqueued params come back
        one_trial(run, trial, params)


def optimize(run: Run, *, done_before: int = 0, remeasured_before: int = 0) -> None:
    """The search, then the re-measurements; the stop reason goes to the report and the study."""
    run.report.stop_reason = _search(run, max(0, run.plan.n_trials - done_before))
    _remeasure(run, max(0, run.plan.spec.noise.remeasure - remeasured_before))
    run.study.set_user_attr("stop_reason", run.report.stop_reason)
