"""The study's last measured step: keep only the changes of its choice that show an effect.

After the search, :func:`justify` takes the configuration the study's ``choose`` rule picked, finds the
knobs it changes from the values found before the study, and re-measures, in ``justify.rounds`` shuffled
rounds, the whole choice and the choice with each of those knobs put back (each measurement a journaled
apply, measure, restore, exactly as a trial's; none is told to the sampler). :func:`optimizer.justify.judge`
decides, per knob, kept or put back, with the figures. When a knob is put back, the reduced configuration
(the choice minus the knobs without evidence) is measured as a trial of its own (user attribute
``justified_of``), and that is what the study exports and applies.

Recorded: the study's user attribute ``justified`` (read by :meth:`StudyView.decide` and the exports, which
then carry only the kept knobs and, per knob, the effect that justifies it), ``justify.json`` and
``justify.csv`` (every measurement) beside the study's files, logged to MLflow with the study's end.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd

from experiments.spec import StudySpec
from experiments.study.loop import Run, one_trial, run_trial
from experiments.study.outcomes import write_json_atomic
from experiments.study.resolve import clamp_to_space
from experiments.study.results import StudyView
from optimizer.justify import FULL, KnobEvidence, Measurement, ablation_order, judge

__all__ = ["justify", "metric_directions"]


def metric_directions(spec: StudySpec) -> dict[str, str]:
    """The spec's objectives, then its SLA metrics (a ``max`` is minimized), each with its direction: what
    can justify a knob, and what a gain run may take as its primary metric."""
    out: dict[str, str] = dict(spec.objectives)
    for m, c in spec.constraints.items():
        out.setdefault(m, "minimize" if c.max is not None else "maximize")
    return out


def _same(run: Run, name: str, a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are one value of knob ``name`` (the knob's own comparison)."""
    knob = run.resolved.knobs.get(name)
    return knob.same(a, b) if knob is not None else bool(a == b)


def _view(run: Run) -> StudyView:
    study = run.study
    return StudyView(name=study.study_name, objectives=list(run.plan.objectives),
                     directions=list(run.plan.directions), attrs=dict(study.user_attrs),
                     trials=study.get_trials(deepcopy=False))


def _measure(run: Run, chosen: dict[str, Any], base: dict[str, Any], changes: list[str],
             rounds: int) -> list[Measurement]:
    """Every round's measurements (a failed one leaves a gap, which the judgement skips)."""
    space = run.resolved.space
    out = []
    order = ablation_order(changes, rounds, seed=run.plan.spec.sampler.seed)
    for i, (r, label) in enumerate(order):
        params = dict(chosen) if label == FULL else {**chosen, label: base[label]}
        params = space.repair(params)  # an ordering (dirty_background < dirty) holds with the knob put back
        run.on_event("justify_step", step=i + 1, steps=len(order), label=label or "(the choice)")
        tr = run_trial(run, 10_000 + i, params, stem=f"justify-{i:03d}", profile=False, check_space=False)
        out.append(Measurement(r, label, tr.metrics if tr.state == "complete" else {}))
    return out


def _save(run: Run, record: dict[str, Any], measurements: list[Measurement]) -> None:
    run.study.set_user_attr("justified", record)
    write_json_atomic(run.workdir / "justify.json", record)
    rows = [{"round": m.round, "put_back": m.label or "", **m.metrics} for m in measurements]
    if rows:
        pd.DataFrame(rows).to_csv(run.workdir / "justify.csv", index=False)


def _reduced_trial(run: Run, reduced: dict[str, Any], of_trial: int, view: StudyView) -> tuple[int, str]:
    """The trial that measured the reduced configuration (the baseline trial when every knob went back)."""
    base = view.baseline_trial()
    if base is not None and view.is_feasible(base) and all(
            _same(run, k, v, view.knob_values(base).get(k)) for k, v in reduced.items()):
        return base.number, "every change was put back: the values found before the study stay"
    space = run.resolved.space
    run.study.enqueue_trial(clamp_to_space(reduced, space), user_attrs={"justified_of": of_trial})
    trial = run.study.ask()
    space.suggest(trial)  # the enqueued params come back
    tr = one_trial(run, trial, space.repair(reduced), check_space=False)
    if tr.state != "complete" or not tr.feasible:
        return of_trial, (f"the choice without the changes put back (trial {trial.number}) "
                          f"{'broke an SLA' if tr.state == 'complete' else 'failed: ' + tr.reason}: those changes "
                          "count together, the whole choice ships")
    return trial.number, f"trial {of_trial} with only the changes that showed an effect"


def justify(run: Run, baseline: dict[str, Any]) -> dict[str, Any] | None:
    """Ablate the study's choice (see the module docstring); returns the record, None when nothing was chosen."""
    spec = run.plan.spec.justify
    view = _view(run)
    try:
        decision = view.decide()
    except ValueError:
        return None
    t0 = time.monotonic()
    c = decision.trial.number
    chosen = view.knob_values(decision.trial)
    base = clamp_to_space(baseline, run.resolved.space)
    changes = [k for k, v in chosen.items() if k in base and not _same(run, k, v, base[k])]
    record: dict[str, Any] = {"of_trial": c, "trial": c, "rounds": spec.rounds, "alpha": spec.alpha,
                              "min_effect_pct": spec.min_effect_pct, "knobs": {}, "measurements": 0}
    # a knob without a readable value before the study cannot be put back: it stays, and says so
    for k in (k for k in chosen if k not in base):
        record["knobs"][k] = KnobEvidence(k, chosen[k], None, True, "kept: no value before the study to put "
                                          "back (not measured)").as_dict()
    if not changes:
        record["note"] = "the choice changes nothing from the values found before the study"
        _save(run, record, [])
        return record
    measurements = _measure(run, chosen, base, changes, spec.rounds)
    evidence = judge(measurements, {k: (chosen[k], base[k]) for k in changes}, metric_directions(run.plan.spec),
                     alpha=spec.alpha, min_effect_pct=spec.min_effect_pct)
    record["knobs"].update({e.knob: e.as_dict() for e in evidence})
    record["measurements"] = len(measurements)
    dropped = [e.knob for e in evidence if not e.kept]
    if dropped:
        reduced = {**chosen, **{k: base[k] for k in dropped}}
        record["trial"], record["note"] = _reduced_trial(run, reduced, c, view)
        if record["trial"] == c:  # measured together they matter: every change ships, and says why
            for k in dropped:
                record["knobs"][k].update(kept=True, reason="kept with the others: " + record["note"])
    else:
        record["note"] = "every change showed an effect: the whole choice ships"
    record["seconds"] = round(time.monotonic() - t0, 1)
    _save(run, record, measurements)
    run.on_event("justified", record=json.loads(json.dumps(record, default=str)))
    return record

