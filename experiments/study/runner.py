"""One study run, end to end: spec -> knobs -> apply (journaled) -> measure -> tell -> MLflow -> restore.

:class:`StudyRunner` runs one named study of a :class:`~experiments.study.prepare.StudyPlan` to its end, in
the calling thread. Every trial's changes go through an :class:`actuators.ChangeSession`, so the old
values are journaled (fsynced) before any write and restored when the trial ends, whatever way it
ends: success, error, Ctrl-C, SIGTERM. A SIGKILL leaves open journal entries that ``novatune recover``
(and the next run's start-up) restores.

The steps: :mod:`~experiments.study.setup` (what the run owns), :mod:`~experiments.study.search`
(the Optuna study and what to try), :mod:`~experiments.study.loop` (the trials),
:mod:`~experiments.study.measure` (windows -> metrics -> cost), :mod:`~experiments.study.reporting`
(status, MLflow, plots, exports).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from actuators import Journal, recover
from experiments.settings import Paths
from experiments.spec import SpecError
from experiments.study import search
from experiments.study.loop import Run, optimize
from experiments.study.measure import Measurer
from experiments.study.outcomes import Event, Interrupted, StudyReport, signals_raise
from experiments.study.prepare import StudyPlan
from experiments.study.reporting import finish, write_status
from experiments.study.setup import RunContext

if TYPE_CHECKING:
    from experiments.study.profiling import TrialProfiler

__all__ = ["StudyRunner"]

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _ended(report: StudyReport, err: BaseException) -> None:
    report.state = "interrupted" if isinstance(err, (KeyboardInterrupt, Interrupted)) else "failed"


class StudyRunner:
    """Runs the study ``name`` of ``plan``.

    Args:
        plan: the checked spec (:func:`experiments.study.prepare.prepare`).
        paths: the data directory.
        name: the study's name, chosen before the runner exists (``StudyManager.claim`` picks a free one).
        on_event: called as ``on_event(kind, **data)`` for progress display;
            kinds: ``start``, ``trial_start``, ``trial_end``, ``finish``.
        tracking_uri: MLflow tracking URI (default: the local store).
        resume: continue the existing study ``name`` (after a crash or a service restart): a trial left
            RUNNING is marked failed (its knobs were restored by ``recover``), the budget counts the
            trials already run.
        plots: render the study-end plots and the importance analysis (off for the continuous tuner's
            cycles: see :func:`experiments.study.reporting.finish`); None: the ``study_plots`` setting.
        justify: re-measure the choice and keep only the changes with a measured effect
            (:mod:`experiments.study.justify`, the spec's ``justify``); None: the ``study_justify`` setting.
    """

    def __init__(self, plan: StudyPlan, *, paths: Paths, name: str, on_event: Event | None = None,
                 tracking_uri: str | None = None, resume: bool = False, plots: bool | None = None,
                 justify: bool | None = None) -> None:
        self.plan = plan
        if plots is None or justify is None:
            from experiments.settings import Settings

            settings = Settings()
            plots = settings.study_plots if plots is None else plots
            justify = settings.study_justify if justify is None else justify
        self.plots = plots
        self.justify = justify and plan.spec.justify.rounds > 0
        self.paths = paths.ensure()
        self.name = name
        self.resume = resume
        self.on_event = on_event or (lambda kind, **data: None)
        self.tracking_uri = tracking_uri or paths.mlflow_uri
        self._study: optuna.Study | None = None  # set once the run has opened its study
        self._tracker_used: Any = None
        self._profiler: TrialProfiler | None = None

    def _check_name(self, storage: optuna.storages.BaseStorage) -> None:
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
        if self.resume and self.name not in existing:
            raise SpecError(self.plan.source, [f"no study named {self.name!r} to resume"])
        if not self.resume and self.name in existing:
            raise SpecError(self.plan.source, [f"a study named {self.name!r} exists already; choose another --name"])

    def _tracker(self) -> Any:
        from experiments.study.tracking import Tracker

        return Tracker(self.tracking_uri, artifact_root=self.paths.artifacts)

    def _start_tracking(self, tracker: Any, run_id: str, opened: search.OpenedStudy, skipped: dict[str, str]) -> Any:
        if self.resume and tracker.resume_study(self.name, tags={"run_id": run_id}):
            return tracker
        choice = opened.sampler
        tracker.start_study(
            self.name,
            description=self.plan.spec.description or f"novatune study of spec {self.plan.spec.name}",
            tags={"novatune.study": self.name, "run_id": run_id, "skipped": str(skipped) or "none",
                  "sampler": choice.name, "sampler_reason": choice.reason},
        )
        return tracker

    def _new_profiler(self, workdir: Path) -> TrialProfiler | None:
        """The spec's ``profile:`` section: profiles of every trial, stored and logged (None without it)."""
        spec = self.plan.spec.profile
        if spec is None:
            return None
        from collectors.profiler.store import ProfileStore
        from experiments.settings import Settings
        from experiments.study.profiling import TrialProfiler


        settings = Settings()  # the profile store's retention: what the service and the CLI use
        store = ProfileStore(self.paths.profiles, retention_days=settings.profiling_retention_days,
                             max_bytes=settings.profiling_max_bytes)
        return TrialProfiler(spec, study=self.name, workdir=workdir, store=store)

    def _trials(self, ctx: RunContext, tracker: Any, run_id: str, journal: Journal, report: StudyReport,
                t_start: float) -> None:
        """Open the study, then run its trials (the study and the tracker are kept for the report)."""
        assert ctx.resolved is not None
        opened = search.open_study(self.plan, url=self.paths.optuna_url,
                                   storage=optuna.storages.RDBStorage(self.paths.optuna_url), name=self.name,
                                   run_id=run_id, resolved=ctx.resolved, skipped=ctx.skipped,
                                   baseline=ctx.baseline, resume=self.resume)
        self._study = opened.study
        report.baseline = opened.baseline
        tracker = self._tracker_used = self._start_tracking(tracker, run_id, opened, ctx.skipped)
        report.mlflow_experiment_id = tracker.experiment_id
        self.on_event("start", name=self.name, total=self.plan.n_trials, skipped=ctx.skipped,
                      baseline=opened.baseline, sampler=opened.sampler.reason,
                      stock_profiles=opened.study.user_attrs.get("stock_profiles"))
        timeout = self.plan.spec.budget.timeout_s
        self._profiler = self._new_profiler(ctx.workdir)
        run = Run(plan=self.plan, run_id=run_id, journal=journal, workdir=ctx.workdir, resolved=ctx.resolved,
                  measurer=Measurer(self.plan, ctx, profiler=self._profiler), study=opened.study, report=report,
                  tracker=tracker, on_event=self.on_event, deadline=t_start + timeout if timeout else math.inf,
                  region=opened.region)
        optimize(run, done_before=opened.done_before, remeasured_before=opened.remeasured_before)
        if self.justify:
            from experiments.study.justify import justify

            justify(run, opened.baseline)
        baseline = opened.baseline
        bound = [*ctx.resolved.knobs.items(), *((n, m) for n, ms in ctx.resolved.mirrors.items() for m in ms)]
        report.restore_mismatches = [f"{knob.name}: {knob.read()!r} != baseline {baseline[n]!r}"
                                     for n, knob in bound if knob.read() != baseline[n]]  # mirrors: a twin namespace

    def run(self) -> StudyReport:
        """Run the study to its end (budget, timeout, convergence); returns its report.

        Raises:
            SpecError: the name is taken (or, resuming, unknown), the trust region cannot start here.
            StudyConflict: another novatune process tunes one of the study's host knobs.
            Interrupted, KeyboardInterrupt: a signal or Ctrl-C; the trial's knobs were restored.
        """
        t_start = time.monotonic()
        journal = Journal(self.paths.journal)
        stale = recover(journal)  # what a killed earlier run left open
        self._check_name(optuna.storages.RDBStorage(self.paths.optuna_url))
        tracker = self._tracker()  # a store this MLflow cannot open is refused here, before the study exists
        run_id = f"{self.name}-{uuid.uuid4().hex[:8]}"
        workdir = self.paths.study_dir(self.name)
        (workdir / "trials").mkdir(parents=True, exist_ok=True)
        report = StudyReport(self.name, "running", [], {}, {}, self.plan.objectives,
                             recovered_before=len(stale.restored))
        self._study = None
        self._tracker_used = None
        with signals_raise(), journal.run(run_id):
            try:
                with RunContext(self.plan, paths=self.paths, name=self.name, run_id=run_id, journal=journal,
                                workdir=workdir) as ctx:
                    report.skipped, report.baseline = ctx.skipped, ctx.baseline
                    try:
                        self._trials(ctx, tracker, run_id, journal, report, t_start)
                        report.state = "completed"
                    except BaseException as err:
                        _ended(report, err)
                        raise
                    finally:
                        if self._study is not None:
                            self._study.set_user_attr("state", report.state)
                            search.fail_running(self._study)
            except BaseException as err:
                if report.state == "running":  # the run's set-up failed
                    _ended(report, err)
                raise
            finally:
                if self._study is not None:
                    finish(self.paths, report, self._tracker_used, workdir, profiler=self._profiler,
                           plots=self.plots)
                    write_status(self.plan, self._study, report, workdir)
                report.seconds = time.monotonic() - t_start
                self.on_event("finish", report=report)
        return report
