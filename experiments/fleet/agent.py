"""``novatune agent``: one per host; takes the trials of the fleet studies that target its labels.

On start the agent restores what its journal left open (a killed earlier agent), registers its host (labels
and facts) in the shared storage, and fails the trials a killed earlier agent of this host left running.
Then, in a loop, for each fleet study in state ``running`` whose selector its labels match and which has
trials left, it sets the study up here exactly as a local study run does (the workload, the bound knobs,
the machine-wide holds, the baseline: :class:`~experiments.study.setup.RunContext`), measures the machine as
found once (study attribute ``baseline@HOST``), and runs trials one at a time through its own journal
(:func:`experiments.study.loop.one_trial`: apply, measure, tell, restore).

Dead agents: the storage is Optuna's ``RDBStorage`` with heartbeats. While a trial runs, a thread records the
trial's heartbeat (and the host's); every agent calls ``fail_stale_trials`` before it asks, so a trial whose
agent stopped beating for ``grace_s`` becomes FAIL and the others carry on. A killed agent's knobs are
restored by its journal when it (or ``novatune recover``) starts again on that host.

Beside the trials, a thread (:class:`~experiments.fleet.commands.HostDuties`) runs the apply and rollback
commands the fleet routes to this host and publishes the host's state for the central service.

The budget: the study's trials are numbered in the order agents ask; a trial numbered at or above the budget
(two agents asked for the last one at once) is failed at once, never applied.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from actuators import ActuatorError, Journal, recover
from collectors.errors import CollectorError, WorkloadError
from experiments.fleet.commands import HostDuties
from experiments.fleet.fleetwide import aggregate, evaluation, evaluations, wanting_help
from experiments.fleet.hosts import HostRegistry, HostStoreError, host_facts, matches
from experiments.fleet.patient import UNREACHABLE, PatientStorage, unreachable
from experiments.fleet.state import FleetState
from experiments.fleet.studies import FleetStudy, fleet_studies, room, running_anywhere
from experiments.settings import Paths
from experiments.spec import SpecError, StudySpec
from experiments.study.loop import Run, one_trial, run_trial, tell
from experiments.study.manager import StudyConflict
from experiments.study.measure import Measurer, violation
from experiments.study.outcomes import StudyReport, signals_raise
from experiments.study.prepare import StudyPlan, prepare
from experiments.study.reporting import log_trial
from experiments.study.setup import RunContext
from optimizer.samplers import build_sampler

__all__ = ["Agent", "AgentReport"]

log = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
# heartbeat_interval and fail_stale_trials are "experimental" in Optuna since 2.9: the agent's process says so once
# per ask otherwise
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class AgentReport:
    """What one agent run did: trials run (study, number, state), studies it could not take, and why."""

    host: str
    recovered: int = 0
    failed_left_running: list[str] = field(default_factory=list)
    trials: list[tuple[str, int, str]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


class _Beat:
    """While a trial runs: the trial's Optuna heartbeat (when this host owns it) and the host's, every
    ``interval`` seconds."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int | None, interval: float,
                 host: Callable[[], None]) -> None:
        self._storage, self._trial_id, self._interval, self._host = storage, trial_id, interval, host
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="novatune-heartbeat", daemon=True)

    def _loop(self) -> None:
        while True:
            try:
                if self._trial_id is not None:  # a host measuring another's trial beats for the host only
                    self._storage.record_heartbeat(self._trial_id)
                self._host()
            except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, OSError,
                    HostStoreError) as err:  # the database is away: the next beat tries again
                log.warning("heartbeat failed: %s", err)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> _Beat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Agent:
    """The agent of host ``host_id`` over ``paths`` (its journal, runs) and the storage ``paths.storage``.

    Args:
        labels: the host's labels (a study's selector must match them all).
        heartbeat_s: how often a running trial's heartbeat is recorded.
        grace_s: a trial without a heartbeat for this long is failed by the other agents.
        poll_s: how long the agent waits when there is nothing to do.
        exit_when_idle: exit once no fleet study for these labels is running (default: wait for new ones).
        publish_s: how often the host's state is published (:class:`~experiments.fleet.commands.HostDuties`).
        on_event: ``on_event(kind, **data)``; kinds ``registered``, ``study``, ``trial_end``, ``refused``, and
            the duties' ``command`` and ``published``.
    """

    def __init__(self, paths: Paths, *, host_id: str, labels: dict[str, str], heartbeat_s: float = 10.0,
                 grace_s: float = 30.0, poll_s: float = 5.0, exit_when_idle: bool = False,
                 publish_s: float = 30.0, on_event: Callable[..., None] | None = None) -> None:
        if not (0 < heartbeat_s < grace_s):
            raise ValueError(f"the heartbeat ({heartbeat_s:g} s) must be > 0 and shorter than the grace period "
                             f"({grace_s:g} s)")
        self.paths = paths.ensure()
        self.host, self.labels = host_id, labels
        self.heartbeat_s, self.grace_s, self.poll_s = heartbeat_s, grace_s, poll_s
        self.exit_when_idle = exit_when_idle
        self.on_event = on_event or (lambda kind, **data: None)
        self.storage = PatientStorage(paths.optuna_url, heartbeat_interval=max(1, round(heartbeat_s)),
                                      grace_period=max(2, round(grace_s)))
        self.registry = HostRegistry(paths.optuna_url)
        self.duties = HostDuties(FleetState(self.registry), host_id, self.paths, poll_s=min(poll_s, 2.0),
                                 publish_s=publish_s, on_event=self.on_event)
        self.report = AgentReport(host_id)

    # ------------------------------------------------------------------ loop
    def run(self) -> AgentReport:
        """Recover, register, then take trials until stopped (or idle, with ``exit_when_idle``)."""
        journal = Journal(self.paths.journal)
        self.report.recovered = len(recover(journal).restored)  # a killed earlier agent's knobs, first
        self.registry.register(self.host, labels=self.labels, facts=host_facts())
        self.on_event("registered", host=self.host, recovered=self.report.recovered)
        self._fail_left_running()
        with signals_raise():
            self.duties.start()
            try:
                while True:
                    try:
                        idle, worked = self._round(journal)
                    except (*UNREACHABLE, optuna.exceptions.StorageInternalError, HostStoreError) as err:
                        if isinstance(err, optuna.exceptions.StorageInternalError) and not unreachable(err):
                            raise
                        log.warning("the storage is unreachable beyond its patience (%s); trying again", err)
                        idle, worked = False, False
                    if idle and self.exit_when_idle:
                        return self.report
                    if not worked:
                        time.sleep(self.poll_s)
            finally:
                self.duties.stop()
                self._beat(state="stopped")

    def _beat(self, **state: Any) -> None:
        """The host's heartbeat in the registry; a registry that cannot be reached now is only logged (the
        trial's own heartbeat is Optuna's, and the next beat tries again)."""
        try:
            self.registry.heartbeat(self.host, **state)
        except HostStoreError as err:
            log.warning("host heartbeat not recorded: %s", err)

    def _round(self, journal: Journal) -> tuple[bool, bool]:
        """One look at the fleet's studies: (no running one for this host, whether a trial ran here)."""
        self._beat()
        live = [s for s in fleet_studies(self.storage) if s.state == "running" and matches(self.labels, s.selector)]
        live = [s for s in live if s.name not in self.report.refused]
        worked = any([self._per_host(s) if s.mode == "per-host" else self._work_on(s, journal) for s in live])
        return not any(self._open_here(s) for s in live), worked

    def _open_here(self, fs: FleetStudy) -> bool:
        """Whether ``fs`` may still give this host work (a per-host study: until this host's is complete)."""
        if fs.name in self.report.refused:
            return False
        if fs.mode != "per-host":
            return True
        own = f"{fs.name}.{self.host}"
        if own not in optuna.get_all_study_names(self.storage):
            return True
        return optuna.load_study(study_name=own, storage=self.storage).user_attrs.get("state") != "completed"

    def _per_host(self, fs: FleetStudy) -> bool:
        """This host's own study of a per-host fleet study (``NAME.HOST``), run (or resumed) to its end as
        ``study run`` runs one, warm-started from the other hosts' (their target is the fleet study's)."""
        from experiments.settings import Settings, check_name
        from experiments.study.runner import StudyRunner

        if not self._open_here(fs):
            return False
        own = f"{fs.name}.{self.host}"
        try:
            check_name(own)
            plan = prepare(StudySpec.model_validate(fs.spec), paths=self.paths, trials=fs.trials,
                           source=f"fleet study {fs.name}")
        except (SpecError, ValueError) as err:
            self._refuse(fs.name, f"its spec cannot run on this host as {own}: {err}")
            return False
        fleet = optuna.load_study(study_name=fs.name, storage=self.storage)
        fleet.set_user_attr(f"host@{self.host}", {"study": own, "state": "running", "at": time.time()})
        self.on_event("study", name=own)
        runner = StudyRunner(dataclasses.replace(plan, fleet=fs.name), paths=self.paths, name=own,
                             tracking_uri=Settings().mlflow_tracking_uri, plots=False,
                             resume=own in optuna.get_all_study_names(self.storage))
        state = "failed"
        try:
            report = runner.run()
            state = report.state
            self.report.trials += [(own, t.number, t.state) for t in report.trials]
        except StudyConflict as err:  # a local study holds one of its knobs: it waits
            log.warning("fleet study %s waits: %s", fs.name, err)
            state = "waiting"
            return False
        except (WorkloadError, CollectorError, ActuatorError, SpecError) as err:
            self._refuse(fs.name, f"it cannot be set up on this host: {err}")
            return False
        finally:
            fleet.set_user_attr(f"host@{self.host}", {"study": own, "state": state, "at": time.time()})
        return True

    def _fail_left_running(self) -> None:
        """Trials this host's earlier agent left RUNNING (it was killed): FAIL now, not after the grace."""
        for s in fleet_studies(self.storage):
            study = optuna.load_study(study_name=s.name, storage=self.storage)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.user_attrs.get("host") == self.host:
                    self._fail(t._trial_id, "the agent of this host stopped during the trial (restarted); "
                                            "its knobs were restored from the journal")
                    self.report.failed_left_running.append(f"{s.name}#{t.number}")

    def _fail(self, trial_id: int, reason: str) -> None:
        try:
            self.storage.set_trial_user_attr(trial_id, "reason", reason)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another agent's heartbeat check was first
            pass

    # ----------------------------------------------------------- one study
    def _load(self, fs: FleetStudy, sampler: Any = None) -> optuna.Study:
        study = optuna.load_study(study_name=fs.name, storage=self.storage, sampler=sampler)
        self._fail_stale(study)
        return study

    def _fail_stale(self, study: optuna.Study) -> None:
        """Optuna's check (a trial whose heartbeat stopped for the grace period), and trials no agent ever
        took: RUNNING with no ``host`` for twice the grace period (an agent killed between the ask and its
        first heartbeat; the database restarted after creating a trial but before answering the ask)."""
        optuna.storages.fail_stale_trials(study)
        now = time.time()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if "host" not in t.user_attrs and now - started > 2 * self.grace_s:
                self._fail(t._trial_id, "no agent took this trial (asked, then never run by any host)")

    def _finish_if_done(self, study: optuna.Study, fs: FleetStudy) -> bool:
        """Mark the study completed when its budget is used and nothing runs anywhere; True when done."""
        if room(study, fs.trials) or running_anywhere(study):
            return False
        if study.user_attrs.get("state") == "running":
            study.set_user_attr("state", "completed")
            study.set_user_attr("stop_reason", f"budget of {fs.trials} trials used by the fleet")
        return True

    def _work_on(self, fs: FleetStudy, journal: Journal) -> bool:
        """Take trials of ``fs`` while it has room; True when at least one trial ran here."""
        study = self._load(fs)
        if self._finish_if_done(study, fs) or not room(study, fs.trials):
            return False
        source = f"fleet study {fs.name}"
        try:
            plan = prepare(StudySpec.model_validate(fs.spec), paths=self.paths, trials=fs.trials, source=source)
        except (SpecError, ValueError) as err:
            self._refuse(fs.name, f"its spec cannot run on this host: {err}")
            return False
        run_id = f"{fs.name}-{self.host}-{uuid.uuid4().hex[:6]}"
        workdir = self.paths.study_dir(fs.name)
        (workdir / "trials").mkdir(parents=True, exist_ok=True)
        self.on_event("study", name=fs.name)
        try:
            with journal.run(run_id), RunContext(plan, paths=self.paths, name=fs.name, run_id=run_id,
                                                 journal=journal, workdir=workdir) as ctx:
                return self._trials(fs, plan, ctx, journal, run_id, workdir)
        except StudyConflict as err:  # a local study holds one of its knobs: the fleet study waits
            log.warning("fleet study %s waits: %s", fs.name, err)
            return False
        except (WorkloadError, CollectorError, ActuatorError, SpecError) as err:  # set-up failed here
            self._refuse(fs.name, f"it cannot be set up on this host: {err}")
            return False

    def _trials(self, fs: FleetStudy, plan: StudyPlan, ctx: RunContext, journal: Journal, run_id: str,
                workdir: Path) -> bool:
        """The study set up here: the baseline once, then trials while it has room; True when one ran."""
        ran = False
        assert ctx.resolved is not None
        seed = plan.spec.sampler.seed
        seed = None if seed is None else (seed + zlib.crc32(self.host.encode())) % 2**31  # hosts differ
        choice = build_sampler(plan.spec.sampler.name, ctx.resolved.space, n_objectives=len(plan.objectives),
                               budget=plan.n_trials, seed=seed)
        study = self._load(fs, choice.sampler)
        report = StudyReport(fs.name, "running", [], ctx.skipped, ctx.baseline, plan.objectives)
        tracker = self._tracker(fs, plan, run_id)
        run = Run(plan=plan, run_id=run_id, journal=journal, workdir=workdir, resolved=ctx.resolved,
                  measurer=Measurer(plan, ctx, profiler=None), study=study, report=report, tracker=tracker,
                  on_event=lambda kind, **data: None, deadline=float("inf"))
        status = "FAILED"
        try:
            self._baseline(run, ctx.baseline)
            while True:
                other = wanting_help(study, self.host) if fs.mode == "fleet-wide" else None
                if other is not None:
                    ran |= self._help(run, fs, other)
                elif room(study, fs.trials):
                    ran |= self._one(run, fs) if fs.mode == "shared" else self._own(run, fs)
                else:
                    break
                self._fail_stale(study)
            self._finish_if_done(study, fs)
            status = "FINISHED"
        finally:
            tracker.finish_study(metrics={"trials_run_here": float(len(report.trials))}, step_metrics={},
                                 artifacts=[], tags={"novatune.host": self.host}, status=status)
        return ran

    def _tracker(self, fs: FleetStudy, plan: StudyPlan, run_id: str) -> Any:
        """This host's MLflow run of the study (experiment ``novatune/STUDY``, one parent run per host), in the
        tracking store the settings name (a fleet's MLflow server: ``mlflow_tracking_uri``)."""
        from mlflow.exceptions import MlflowException

        from experiments.settings import Settings
        from experiments.study.tracking import Tracker

        tracker = Tracker(Settings().mlflow_tracking_uri or self.paths.mlflow_uri, artifact_root=self.paths.artifacts)
        tags = {"novatune.study": fs.name, "novatune.host": self.host, "run_id": run_id, "novatune.fleet": "true"}
        description = plan.spec.description or f"novatune fleet study of spec {plan.spec.name}"
        try:
            tracker.start_study(fs.name, description=description, tags=tags)
        except MlflowException:  # another host's agent created the experiment in the same instant
            tracker.start_study(fs.name, description=description, tags=tags)
        return tracker

    def _baseline(self, run: Run, baseline: dict[str, Any]) -> None:
        """The machine as found, measured once per host and study (``baseline@HOST``; not a trial)."""
        key = f"baseline@{self.host}"
        if key in run.study.user_attrs:
            return
        params = {n: v for n, v in baseline.items() if n in run.resolved.knobs}
        tr = run_trial(run, -1, params, stem="baseline", profile=False, check_space=False)
        run.study.set_user_attr(key, {"knobs": baseline, "metrics": tr.metrics, "state": tr.state,
                                      "reason": tr.reason, "at": time.time()})

    def _one(self, run: Run, fs: FleetStudy) -> bool:
        """Ask, run and tell one trial, its heartbeats beating from the ask on; False when over the budget."""
        trial = run.study.ask()
        with _Beat(self.storage, trial._trial_id, self.heartbeat_s, self._host_beat(fs, trial.number)):
            if not self._claim(trial, fs):
                return False
            params = run.resolved.space.suggest(trial)
            try:
                tr = one_trial(run, trial, params)
            except optuna.exceptions.UpdateFinishedTrialError:  # failed meanwhile by another agent's heartbeat
                log.warning("%s #%d was ended elsewhere while it ran here (no heartbeat reached the storage "
                            "within the grace period); its knobs were restored", fs.name, trial.number)
                return True
            except BaseException as err:  # Ctrl-C, SIGTERM, a restore that failed: the session restored the knobs
                self._stopped_during(trial, err)
                raise
        self.report.trials.append((fs.name, trial.number, tr.state))
        self.on_event("trial_end", study=fs.name, report=tr)
        return True

    def _host_beat(self, fs: FleetStudy, number: int) -> Callable[[], None]:
        """What :class:`_Beat` calls for the host while it measures trial ``number`` of ``fs``."""
        return lambda: self._beat(state="trial", study=fs.name, trial=number)

    def _claim(self, trial: optuna.trial.Trial, fs: FleetStudy) -> bool:
        """Put this host on an asked trial; False, the trial failed and never applied, when it is over the
        budget (another agent took the last trial in the same instant)."""
        trial.set_user_attr("host", self.host)
        if trial.number < fs.trials:
            return True
        self._fail(trial._trial_id, "over the fleet budget: another host took the last trial; not run")
        return False

    def _stopped_during(self, trial: optuna.trial.Trial, err: BaseException) -> None:
        """The agent stops (Ctrl-C, SIGTERM, a restore that failed) while it owns ``trial``: FAIL, with why."""
        self._fail(trial._trial_id, f"the agent stopped during the trial ({type(err).__name__}); its knobs were "
                                    "restored")

    # ---------------------------------------------------- fleet-wide mode

    def _wanted(self, fs: FleetStudy) -> int:
        """Hosts to measure a trial: the study's count, at most the matching hosts alive now (at least 1)."""
        now, dead_after = time.time(), max(30.0, self.grace_s, 3 * self.poll_s)
        alive = [h for h in self.registry.matching(fs.selector) if h.alive(now, dead_after)]
        return max(1, min(fs.hosts_per_trial, len(alive)))

    def _own(self, run: Run, fs: FleetStudy) -> bool:
        """Ask a trial, measure it here, wait for the other hosts' measurements (helping meanwhile), tell the
        mean (:mod:`experiments.fleet.fleetwide`); False when over the budget."""
        study, objectives = run.study, run.plan.objectives
        trial = study.ask()
        with _Beat(self.storage, trial._trial_id, self.heartbeat_s, self._host_beat(fs, trial.number)):
            if not self._claim(trial, fs):
                return False
            params = run.resolved.space.suggest(trial)
            wanted = self._wanted(fs)
            for key, value in (("applied", params), ("wanted", wanted), (f"claim@{self.host}", time.time())):
                trial.set_user_attr(key, value)
            try:
                mine = run_trial(run, trial.number, params)
                trial.set_user_attr(f"eval@{self.host}", evaluation(mine, objectives))
                frozen = self._gather(run, fs, trial._trial_id, wanted, mine.seconds)
                tr, summary = aggregate(trial.number, params, evaluations(frozen), objectives)
                tr.started = mine.started
                tr.feasible = tr.state == "complete" and all(
                    violation(run.plan, m, tr.metrics) <= 0 for m in run.plan.spec.constraints)
                trial.set_user_attr("hosts", summary)
                tell(run.plan, study, trial, tr)
            except optuna.exceptions.UpdateFinishedTrialError:
                log.warning("%s #%d was ended elsewhere while it ran here", fs.name, trial.number)
                return True
            except BaseException as err:
                self._stopped_during(trial, err)
                raise
        if run.tracker is not None:
            log_trial(run.tracker, tr, run.workdir, baseline=False)
        self.report.trials.append((fs.name, trial.number, tr.state))
        self.on_event("trial_end", study=fs.name, report=tr)
        return True

    def _gather(self, run: Run, fs: FleetStudy, trial_id: int, wanted: int, seconds: float) -> FrozenTrial:
        """Wait for ``wanted`` hosts' measurements of the trial, measuring other trials that want this host
        meanwhile; the wait ends after three times this host's measurement plus the grace period."""
        deadline = time.monotonic() + 3 * seconds + self.grace_s
        while True:
            frozen = self.storage.get_trial(trial_id)
            if len(evaluations(frozen)) >= wanted or time.monotonic() > deadline:
                return frozen
            other = wanting_help(run.study, self.host)
            if other is not None:
                self._help(run, fs, other)
            else:
                time.sleep(min(self.poll_s, 1.0))

    def _help(self, run: Run, fs: FleetStudy, t: FrozenTrial) -> bool:
        """Measure another host's trial here and write what was measured (``eval@HOST``)."""
        try:
            self.storage.set_trial_user_attr(t._trial_id, f"claim@{self.host}", time.time())
        except optuna.exceptions.UpdateFinishedTrialError:  # told (or failed) meanwhile
            return False
        params = dict(t.user_attrs.get("applied") or t.params)
        with _Beat(self.storage, None, self.heartbeat_s, self._host_beat(fs, t.number)):
            tr = run_trial(run, t.number, params)
        try:
            self.storage.set_trial_user_attr(t._trial_id, f"eval@{self.host}", evaluation(tr, run.plan.objectives))
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("%s #%d was told before this host's measurement arrived", fs.name, t.number)
        self.report.trials.append((fs.name, t.number, tr.state))
        self.on_event("trial_end", study=fs.name, report=tr)
        return True

    def _refuse(self, name: str, reason: str) -> None:
        self.report.refused[name] = reason
        self.on_event("refused", name=name, reason=reason)
        log.warning("fleet study %s: %s", name, reason)
