"""What one cycle asks of the study machinery: measure the current configuration in windows, run a
small study in a trust region around it, and say whether the study's choice beats it.

Both go through the study code (:class:`~experiments.study.setup.RunContext`,
:class:`~experiments.study.measure.Measurer`, :class:`~experiments.study.runner.StudyRunner`), so every
change is journaled and restored, and the knobs are held while they run. A ``stop`` event ends either at
the next window or trial boundary (:class:`~experiments.study.outcomes.Interrupted`), knobs restored.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from actuators import Journal, recover
from experiments.settings import Paths
from experiments.spec import StudySpec, TrustRegionSpec
from experiments.study.outcomes import Interrupted, signals_raise
from experiments.study.prepare import StudyPlan

__all__ = ["Measured", "StudyOutcome", "measure", "scaled_spec", "search", "summarise"]


@dataclass
class Measured:
    """Per-window figures (metric -> one value per window) and the spec's knobs' live values."""

    windows: dict[str, list[float]]
    live: dict[str, Any]


@dataclass
class StudyOutcome:
    """A cycle's study: its name, the values before it, the chosen configuration's changes (None: keep
    the current one) and why."""

    name: str
    baseline: dict[str, Any]
    candidate: dict[str, Any] | None
    reason: str
    gain: float = math.nan


def scaled_spec(spec: StudySpec, *, scale: float, trials: int, window_s: float | None,
                workload: dict[str, Any] | None = None) -> StudySpec:
    """The spec a cycle runs: its trust region's ``max_step`` × ``scale`` (a default region of 0.2 of each
    range when the spec has none), ``trials`` trials, the measurement window and workload overrides."""
    tr = spec.trust_region or TrustRegionSpec(max_step=0.2)
    step: float | dict[str, float]
    if isinstance(tr.max_step, dict):
        step = {k: v * scale for k, v in tr.max_step.items()}
    else:
        step = min(1.0, tr.max_step * scale)
    update: dict[str, Any] = {
        "trust_region": tr.model_copy(update={"max_step": step}),
        "budget": spec.budget.model_copy(update={"trials": trials}),
    }
    if window_s is not None:
        update["trial"] = spec.trial.model_copy(update={"measure_s": window_s})
    if workload:
        update["workload"] = spec.workload.model_copy(update=workload)
    return spec.model_copy(update=update)


def _stopper(stop: threading.Event | None) -> Any:
    def on_event(kind: str, **_: Any) -> None:
        if stop is not None and stop.is_set() and kind == "trial_start":
            raise Interrupted("stop requested")
    return on_event


def measure(plan: StudyPlan, *, paths: Paths, name: str, windows: int,
            stop: threading.Event | None = None) -> Measured:
    """``windows`` measurement windows of the current configuration (nothing is changed).

    Raises:
        Interrupted: ``stop`` was set (between windows). StudyConflict: a knob is held elsewhere.
        WorkloadError, CollectorError: the workload or the collector failed.
    """
    from experiments.study.measure import Measurer
    from experiments.study.setup import RunContext

    journal = Journal(paths.journal)
    recover(journal)
    run_id = f"{name}-{uuid.uuid4().hex[:8]}"
    workdir = paths.study_dir(name)
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float]] = []
    with signals_raise(), journal.run(run_id), \
            RunContext(plan, paths=paths, name=name, run_id=run_id, journal=journal, workdir=workdir) as ctx:
        m = Measurer(plan, ctx)
        series: list[Any] = []
        timelines: list[Any] = []
        units: dict[str, str] = {}
        for rep in range(windows):
            if stop is not None and stop.is_set():
                raise Interrupted("stop requested")
            w = m.window(rep, series, timelines, units)
            rows.append({**w, **m.reduce([w], ctx.baseline, throughput_unit=units.get("throughput", ""))})
        live = dict(ctx.baseline)
    keys = sorted({k for r in rows for k in r if not k.endswith(("_ci_low", "_ci_high"))})
    per = {k: [float(r.get(k, math.nan)) for r in rows] for k in keys}
    return Measured({k: v for k, v in per.items() if any(math.isfinite(x) for x in v)}, live)


def summarise(windows: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per metric: median and a 95 % bootstrap interval of the median over the windows."""
    from optimizer.stats import estimate

    out = {}
    for k, vals in windows.items():
        xs = [x for x in vals if math.isfinite(x)]
        if not xs:
            continue
        est = estimate(xs)
        out[k] = {"median": float(est.median), "ci_low": float(est.ci_low), "ci_high": float(est.ci_high),
                  "n": float(len(xs))}
    return out


def _gain(view: Any, chosen: Any, base: Any, objective: int, direction: str) -> float:
    a = float(np.median([row[objective] for row in view.samples(chosen)]))
    b = float(np.median([row[objective] for row in view.samples(base)]))
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return math.nan
    rel = (a - b) / abs(b)
    return rel if direction == "maximize" else -rel


def search(plan: StudyPlan, *, paths: Paths, name: str, min_gain: float,
           stop: threading.Event | None = None) -> StudyOutcome:
    """A study of ``plan`` (its first trial is the current configuration, its trust region around it,
    warm-started from earlier studies of the same target); the study's own decision
    (:meth:`~experiments.study.results.StudyView.decide`) is the candidate when it changes something,
    is not statistically equivalent to the current configuration and gains at least ``min_gain`` on the
    primary objective.

    Raises:
        Interrupted: ``stop`` was set (at a trial boundary; the trial's knobs restored).
        SpecError, StudyConflict: see :meth:`StudyRunner.run`.
    """
    from experiments.study.results import load_view
    from experiments.study.runner import StudyRunner

    # no plots: they cost seconds of CPU on the machine whose workload the validation measures next
    report = StudyRunner(plan, paths=paths, name=name, on_event=_stopper(stop), plots=False).run()
    baseline = dict(report.baseline)
    view = load_view(paths.optuna_url, name)
    try:
        decision = view.decide()
    except ValueError as err:
        return StudyOutcome(name, baseline, None, f"no choice: {err}")
    values = view.knob_values(decision.trial)
    changes = {k: v for k, v in values.items() if k in baseline and baseline[k] != v}
    if not changes:
        return StudyOutcome(name, baseline, None, "the study chose the current configuration")
    base = next((t for t in view.complete if t.user_attrs.get("baseline")), None)
    if base is None:
        return StudyOutcome(name, baseline, None, "the current configuration was not measured")
    gain = _gain(view, decision.trial, base, 0, plan.directions[0])
    if base.number in decision.equivalent or base.number in decision.measured_by:
        return StudyOutcome(name, baseline, None, "the choice is not significantly better than the current "
                            f"configuration ({plan.objectives[0]} {gain:+.1%})", gain)
    if not math.isfinite(gain) or gain < min_gain:
        return StudyOutcome(name, baseline, None, f"the choice gains {gain:+.1%} on {plan.objectives[0]} "
                            f"(less than {min_gain:.0%})", gain)
    return StudyOutcome(name, baseline, changes, f"trial {decision.trial.number}: {decision.reason}; "
                        f"{plan.objectives[0]} {gain:+.1%} in the study", gain)
