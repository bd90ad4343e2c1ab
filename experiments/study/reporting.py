"""Reporting of a run: the status file the API reads, the MLflow runs, and the study's end (plots,
the choice, every export, knob importance), logged to the study run.

Reporting never decides the study's outcome: a plot or an export that cannot be made is logged and
skipped, and an error here never masks how the study itself ended.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from experiments.deploy import export
from experiments.settings import Paths
from experiments.study.outcomes import StudyReport, TrialReport, write_json_atomic
from experiments.study.plots import (
    plot_convergence,
    plot_convergence_html,
    plot_importance,
    plot_importance_html,
    plot_pareto,
    plot_pareto_html,
)
from experiments.study.prepare import StudyPlan
from experiments.study.results import Decision, StudyView, load_view
from optimizer.pareto import pareto_info

if TYPE_CHECKING:
    from experiments.study.profiling import TrialProfiler

__all__ = ["finish", "log_trial", "write_status"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ status
def _leader(plan: StudyPlan, feasible: list[optuna.trial.FrozenTrial]) -> dict[str, Any] | None:
    """The knee of the feasible front so far: one trial's values, never a mix of objectives' bests."""
    if not feasible:
        return None
    info = pareto_info(np.array([t.values for t in feasible], dtype=float), [True] * len(feasible), plan.directions)
    if info.knee is None:
        return None
    knee = feasible[info.knee]
    return {"trial": knee.number, "values": dict(zip(plan.objectives, knee.values)), "front_size": len(info.front)}


def write_status(plan: StudyPlan, study: optuna.Study, report: StudyReport, workdir: Path) -> None:
    """``status.json`` beside the study's files: what the API and ``study list`` show without opening the
    Optuna store (written atomically at every trial start and end)."""
    try:
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)]
        feasible = [t for t in done if t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())]
        best = {}
        for i, (m, d) in enumerate(zip(plan.objectives, plan.directions)):
            if feasible:
                pick = (max if d == "maximize" else min)(feasible, key=lambda t: t.values[i])
                best[m] = {"value": pick.values[i], "trial": pick.number}
        attrs = study.user_attrs
        write_json_atomic(workdir / "status.json", {
            "name": study.study_name,
            "state": report.state,
            "objectives": dict(zip(plan.objectives, plan.directions)),
            "trials_total": plan.n_trials,
            "trials_done": len(done),
            "trials_failed": sum(t.state == TrialState.FAIL for t in done),
            "trials_feasible": len(feasible),
            "running_trial": next((t.number for t in trials if t.state == TrialState.RUNNING), None),
            "best": best,
            "leader": _leader(plan, feasible),
            "choice": attrs.get("choice"),
            "profile_changes": attrs.get("profile_changes"),
            "convergence": attrs.get("convergence"),
            "stop_reason": report.stop_reason if report.state != "running" else None,
            "sampler": attrs.get("sampler"),
            "workload": plan.spec.workload.kind,
            "knobs": attrs.get("knobs", []),
            "resumed": attrs.get("resumed", 0),
            "pid": os.getpid(),
            "updated": time.time(),
        })
    except Exception:
        log.exception("could not write the status of %s", study.study_name)


# ------------------------------------------------------------------ MLflow
def log_trial(tracker: Any, tr: TrialReport, workdir: Path, *, baseline: bool) -> None:
    """One nested MLflow run for trial ``tr``, with the trial's own start and end time."""
    files = [workdir / "trials" / f"trial-{tr.number:03d}-{part}.csv" for part in ("series", "workload")]
    tags = {"state": tr.state, "feasible": str(tr.feasible).lower(), "baseline": str(baseline).lower()}
    if tr.reason:
        tags["failure_reason"] = tr.reason[:5000]
    tags.update(tr.profile_tags)
    tracker.log_trial(
        tr.number,
        params=tr.params,
        # medians over the repeats, <metric>_ci_low/_ci_high when there were several (see Measurer.reduce)
        metrics={**tr.metrics, "trial_seconds": tr.seconds, "repeats": float(len(tr.samples))},
        tags=tags,
        artifacts=[f for f in files if f.exists()] + [(f, "profile") for f in tr.profile_files if f.exists()],
        started=tr.started or None,
        finished=(tr.started + tr.seconds) if tr.started else None,
    )


# ------------------------------------------------------------ study's end
def _importance(objectives: list[str], paths: Paths, name: str,
                workdir: Path) -> tuple[dict[str, float], list[Path]] | None:
    """Knob importance per objective (Optuna's fANOVA over complete trials): MLflow metrics
    ``importance.<objective>.<knob>`` and a bar chart, ``plots/importance.png`` first, then
    ``plots/importance.html`` (interactive). None when too few trials vary."""
    study = optuna.load_study(study_name=name, storage=paths.optuna_url)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 4:
        return None
    out: dict[str, dict[str, float]] = {}
    for i, objective in enumerate(objectives):
        def target(t: optuna.trial.FrozenTrial, i: int = i) -> float:
            return float(t.values[i])

        try:
            imp = optuna.importance.get_param_importances(
                study, target=target, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (RuntimeError, ValueError) as err:  # e.g. every trial has the same params
            log.info("no importance for %s: %s", objective, err)
            continue
        out[objective] = {k: float(v) for k, v in imp.items()}
    if not out:
        return None
    study.set_user_attr("importance", out)
    title = f"{name}: knob importance (fANOVA)"
    (workdir / "plots").mkdir(exist_ok=True)
    files = [plot_importance(out, workdir / "plots" / "importance.png", title=title)]
    try:
        files.append(plot_importance_html(out, workdir / "plots" / "importance.html", title=title))
    except Exception as err:  # noqa: BLE001 - the PNG and the metrics still count
        log.warning("no interactive importance plot for %s: %s", name, err)
    return {f"importance.{o}.{k}": v for o, d in out.items() for k, v in d.items()}, files


def _front_plots(view: StudyView, name: str, workdir: Path, not_plotted: dict[str, str]) -> list[Path]:
    """The Pareto front and the convergence curve, as PNG and as interactive HTML, under ``plots/``."""
    info, done = view.pareto()
    if not len(done):
        return []
    plots = workdir / "plots"
    plots.mkdir(exist_ok=True)
    numbers = [t.number for t in done]
    front_title, hv_title = f"{name}: Pareto front", f"{name}: hypervolume per trial"
    drawn = [plot_pareto(info, view.objectives, plots / "pareto_front.png", title=front_title, trial_numbers=numbers),
             plot_convergence(info, plots / "convergence.png", title=hv_title)]
    try:
        knobs = [", ".join(f"{k}={v}" for k, v in view.knob_values(t).items()) for t in done]
        drawn += [plot_pareto_html(info, view.objectives, plots / "pareto_front.html", title=front_title,
                                   trial_numbers=numbers, hover=knobs),
                  plot_convergence_html(info, plots / "convergence.html", title=hv_title, trial_numbers=numbers)]
    except Exception as err:  # noqa: BLE001 - the PNGs still count
        not_plotted["pareto_front.html"] = f"{type(err).__name__}: {err}"
    return drawn


def _exports(view: StudyView, name: str, workdir: Path) -> Path | None:
    """Every deployable format of the chosen configuration under ``export/``, one folder per format (sysctl
    and systemd share a file name); a failing format does not stop the others. None when none was written."""
    export_dir = workdir / "export"
    if export_dir.is_dir():  # a resumed study: no stale file of an earlier choice
        shutil.rmtree(export_dir)
    export_dir.mkdir()
    profile = "novatune-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    for fmt in export.FORMATS:
        try:
            dest = export_dir / fmt / profile if fmt == "tuned" else export_dir / fmt
            dest.mkdir(parents=True, exist_ok=True)
            export.write_export(view, fmt, dest)
        except Exception as err:  # noqa: BLE001 - one format's failure is reported, the others still ship
            log.warning("could not export %s as %s: %s", name, fmt, err)
    for d in sorted(export_dir.rglob("*"), reverse=True):  # no empty folder of a failed format
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return export_dir if any(export_dir.iterdir()) else None


def _choose(view: StudyView, report: StudyReport, paths: Paths, workdir: Path, artifacts: list[Any]) -> Decision | None:
    """The configuration the study ships (its ``choose`` rule), its JSON and every export format."""
    info, done = view.pareto()
    if info.knee is None:
        return None
    report.front = [done[i].number for i in info.front]
    try:
        decision = view.decide()
    except ValueError as err:
        log.warning("no configuration to export: %s", err)
        return None
    report.knee = decision.trial.number
    report.choice_reason = decision.reason
    report.export_json = export.render(view, "json")
    p = workdir / "export-knee.json"
    p.write_text(report.export_json)
    artifacts.append(p)
    export_dir = _exports(view, report.name, workdir)
    if export_dir is not None:
        artifacts.append((export_dir, "export"))
    choice = {"trial": decision.trial.number, "rule": decision.rule, "reason": decision.reason,
              "equivalent": decision.equivalent, "noisy_front": decision.noisy_front}
    optuna.load_study(study_name=report.name, storage=paths.optuna_url).set_user_attr("choice", choice)
    return decision


def _parallel_coordinates(objectives: list[str], paths: Paths, name: str, workdir: Path,
                          not_plotted: dict[str, str]) -> list[Path]:
    try:  # one parallel-coordinate plot per objective, HTML and PNG, under plots/
        from experiments.study.plots import plot_parallel_coordinates

        files, skipped = plot_parallel_coordinates(optuna.load_study(study_name=name, storage=paths.optuna_url),
                                                   objectives, workdir / "plots", title=name)
        not_plotted.update(skipped)
        return files
    except Exception as err:  # noqa: BLE001 - plots never cost the study its report
        not_plotted["parallel_coordinate"] = f"{type(err).__name__}: {err}"
        return []


def _changes_text(changes: dict[str, Any] | None) -> str:
    """``f: 70.0% -> 35.0% (-35.0 pp); ...`` for the study run's tag (empty without a profile)."""
    if not changes:
        return ""
    return "; ".join(f"{c['function']}: {c['base_pct']:.1f}% -> {c['target_pct']:.1f}% ({c['delta_pct']:+.1f} pp)"
                     for c in changes["changed"])[:5000]


def _justified_text(record: Any) -> str:
    """``kept: a, b; put back: c`` of the study's justification (``not run`` without one)."""
    if not isinstance(record, dict):
        return "not run"
    knobs = record.get("knobs") or {}
    kept = [k for k, v in knobs.items() if isinstance(v, dict) and v.get("kept")]
    back = [k for k, v in knobs.items() if isinstance(v, dict) and not v.get("kept")]
    return (f"trial {record.get('trial')}; kept: {', '.join(kept) or 'none'}; "
            f"put back: {', '.join(back) or 'none'}")[:5000]


def _finish_tracking(tracker: Any, view: StudyView, report: StudyReport, decision: Decision | None,
                     importance: dict[str, float], artifacts: list[Any], not_plotted: dict[str, str]) -> None:
    info, _ = view.pareto()
    hv = [float(x) for x in info.hv_history]
    tracker.finish_study(
        metrics={
            **importance,
            "trials_complete": sum(t.state == "complete" for t in report.trials),
            "trials_feasible": sum(t.feasible for t in report.trials),
            "knee_trial": report.knee if report.knee is not None else math.nan,
            "hypervolume": hv[-1] if hv else math.nan,
        },
        step_metrics={"hypervolume_per_trial": hv},
        artifacts=artifacts,
        tags={
            "state": report.state,
            "knee_trial": str(report.knee),
            "pareto_trials": ",".join(map(str, report.front)),
            "restored_verified": str(not report.restore_mismatches).lower(),
            "stop_reason": report.stop_reason or report.state,
            "convergence": (view.attrs.get("convergence") or {}).get("reason", ""),
            "choice": report.choice_reason,
            "noise_equivalent_trials": ",".join(map(str, decision.equivalent)) if decision else "",
            "noisy_pareto_trials": ",".join(map(str, decision.noisy_front)) if decision else "",
            "profile_changes": _changes_text(report.profile_changes),
            "justified": _justified_text(view.attrs.get("justified")),
            "plots_skipped": "; ".join(f"{k}: {v}" for k, v in not_plotted.items()) or "none",
        },
        status="FINISHED" if report.state == "completed" else "KILLED",
    )


def _profile_changes(profiler: TrialProfiler | None, report: StudyReport, paths: Paths, workdir: Path,
                     artifacts: list[Any]) -> None:
    """What changed in the profile between the baseline and the chosen trial (``profile:``), into the
    report and ``profile-changes.json``."""
    if profiler is None:
        return
    report.profile_changes = profiler.summary(report.knee)
    if report.profile_changes is not None:
        optuna.load_study(study_name=report.name, storage=paths.optuna_url).set_user_attr(
            "profile_changes", report.profile_changes)
        path = workdir / "profile-changes.json"
        write_json_atomic(path, report.profile_changes)
        artifacts.append((path, "profile"))
        chosen = workdir / "trials" / f"trial-{report.knee:03d}-diff-vs-baseline"
        artifacts += [(chosen.with_suffix(s), "profile") for s in (".svg", ".html")
                      if chosen.with_suffix(s).exists()]


def _plots(view: StudyView, report: StudyReport, paths: Paths, workdir: Path, artifacts: list[Any],
           not_plotted: dict[str, str]) -> tuple[dict[str, float], list[Path]] | None:
    """The Pareto-front, importance and parallel-coordinate plots into ``artifacts`` (what could not be
    drawn into ``not_plotted``); the importance analysis, or None."""
    artifacts += [(f, "plots") for f in _front_plots(view, report.name, workdir, not_plotted)]
    importance = _importance(report.objectives, paths, report.name, workdir)
    if importance:
        artifacts += [(f, "plots") for f in importance[1]]
    else:
        not_plotted["importance"] = "fewer than 4 complete trials, or no knob varied"
    artifacts += [(f, "plots") for f in _parallel_coordinates(report.objectives, paths, report.name, workdir,
                                                              not_plotted)]
    return importance


def finish(paths: Paths, report: StudyReport, tracker: Any, workdir: Path, *,
           profiler: TrialProfiler | None = None, plots: bool = True) -> None:
    """Pareto front, choice, plots and exports of study ``report.name``; all logged to the study run (when
    ``tracker`` is given); with ``profiler``, the hotspots that changed most between the baseline and the
    chosen trial. ``plots=False`` (the continuous tuner's small studies, on the machine whose workload it
    measures) skips the plots and the importance analysis: the choice, the exports and the tracking stay.
    Never raises."""
    try:
        view = load_view(paths.optuna_url, report.name)
        not_plotted: dict[str, str] = {}
        artifacts: list[Any] = []
        decision = _choose(view, report, paths, workdir, artifacts)
        _profile_changes(profiler, report, paths, workdir, artifacts)
        importance = None
        if plots:
            importance = _plots(view, report, paths, workdir, artifacts, not_plotted)
        else:
            not_plotted["all"] = "plots off for this study (a continuous tuner's cycle, or the study_plots setting)"
        for what, why in not_plotted.items():
            log.info("%s: no %s plot: %s", report.name, what, why)
        for extra in ("series-units.csv", "justify.json", "justify.csv"):  # justify: experiments.study.justify
            if (workdir / extra).exists():
                artifacts.append(workdir / extra)
        report.artifacts = [a[0] if isinstance(a, tuple) else a for a in artifacts]
        if tracker is not None:
            _finish_tracking(tracker, view, report, decision, importance[0] if importance else {}, artifacts,
                             not_plotted)
    except Exception:
        log.exception("could not finish the study report for %s", report.name)
