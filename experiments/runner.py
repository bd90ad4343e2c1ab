"""The trial loop: spec -> knobs -> apply (journaled) -> measure -> tell -> MLflow -> restore.

One :class:`StudyRunner` runs one study to its end, in the calling thread. Every
trial's changes go through an :class:`actuators.ChangeSession`, so the old
values are journaled (fsynced) before any write and restored when the trial
ends, whatever way it ends: success, error, Ctrl-C, SIGTERM. A SIGKILL leaves
open journal entries that ``novatune recover`` (and the next run's start-up)
restores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from actuators import (
    ActuatorError,
    Catalog,
    ChangeSession,
    Journal,
    KnobContext,
    WorkloadCgroup,
    recover,
)
from actuators.journal import process_ctime, same_process
from collectors.cgroupstats import CgroupCpuReader, cpu_delta
from collectors.errors import CollectorError, WorkloadError
from collectors.kernelfiles import parse_cpu_list
from collectors.metrics import MetricsSampler, Target, parse_target
from collectors.pricing import load_unit_prices
from collectors.recorder import Recorder
from collectors.timeseries import steady_window
from collectors.workloads.base import Workload
from collectors.workloads.registry import build_workload
from experiments import export
from experiments.holds import KnobHeld, KnobHolds
from experiments.manager import StudyConflict, shared_knobs
from experiments.metrics import SERIES_METRICS, allowed_metrics
from experiments.plots import (
    plot_convergence,
    plot_convergence_html,
    plot_importance,
    plot_pareto,
    plot_pareto_html,
)
from experiments.settings import Paths
from experiments.space import Resolved, clamp_to_space, resolve
from experiments.spec import SpecError, StudySpec
from experiments.store import load_view
from optimizer.convergence import ConvergenceMonitor, terminator_says_stop
from optimizer.cost import Sizing, cost_per_1k_requests, hourly_cost
from optimizer.noise import TrialEstimate, remeasure_candidates
from optimizer.pareto import pareto_info
from optimizer.samplers import SamplerChoice, build_sampler
from optimizer.space import CategoricalParam
from optimizer.stats import estimate
from optimizer.trust import TrustRegion

__all__ = ["Interrupted", "RestoreFailed", "StudyReport", "StudyRunner", "TrialReport"]

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

_OPS_UNITS = ("req/s", "requests/s", "ops/s", "tx/s", "tps", "op/s")


INTERRUPTED_BY_CRASH = "interrupted: the process running this trial died; recover restored its knobs"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and rename: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


class Interrupted(BaseException):
    """SIGTERM/SIGHUP arrived; raised in the main thread so every ``finally`` runs."""


class RestoreFailed(RuntimeError):
    """A knob could not be put back; the study stops, ``novatune recover`` retries."""


@contextmanager
def _signals_raise() -> Iterator[None]:
    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: the caller handles signals
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@dataclass
class TrialReport:
    number: int
    params: dict[str, Any]
    state: str  # "complete" | "fail"
    metrics: dict[str, float] = field(default_factory=dict)
    feasible: bool = False
    reason: str = ""
    seconds: float = 0.0
    samples: list[list[float]] = field(default_factory=list)
    started: float = 0.0  # wall clock (epoch seconds) when the trial began applying its knobs


@dataclass
class StudyReport:
    name: str
    state: str
    trials: list[TrialReport]
    skipped: dict[str, str]
    baseline: dict[str, Any]
    objectives: list[str]
    knee: int | None = None
    front: list[int] = field(default_factory=list)
    export_json: str | None = None
    artifacts: list[Path] = field(default_factory=list)
    restore_mismatches: list[str] = field(default_factory=list)
    recovered_before: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    choice_reason: str = ""
    mlflow_experiment_id: str | None = None


Event = Callable[..., None]


class StudyRunner:
    """Runs one study of ``spec``.

    Args:
        spec: the validated study spec.
        paths: the data directory.
        name: study name (default: the spec's, with ``-N`` added if taken).
        trials: overrides ``spec.budget.trials``.
        on_event: called as ``on_event(kind, **data)`` for progress display;
            kinds: ``start``, ``trial_start``, ``trial_end``, ``finish``.
        tracking_uri: MLflow tracking URI (default: the local store).
        resume: continue the existing study ``name`` (after a crash or a service
            restart): a trial left RUNNING is marked failed (its knobs were
            restored by ``recover``), the budget counts the trials already run.
    """

    def __init__(
        self,
        spec: StudySpec,
        *,
        paths: Paths,
        name: str | None = None,
        trials: int | None = None,
        on_event: Event | None = None,
        tracking_uri: str | None = None,
        source: str = "<spec>",
        resume: bool = False,
    ) -> None:
        self.spec = spec
        self.resume = resume
        if resume and not name:
            raise ValueError("resume needs the name of the study to continue")
        self.paths = paths.ensure()
        self.n_trials = trials if trials is not None else spec.budget.trials
        if self.n_trials < 1:
            raise SpecError(source, [f"--trials must be >= 1, got {self.n_trials}"])
        self.explicit_name = name
        self.on_event = on_event or (lambda kind, **data: None)
        self.tracking_uri = tracking_uri or paths.mlflow_uri
        self.source = source
        self.objectives = list(spec.objectives)
        self.directions = [spec.objectives[m] for m in self.objectives]
        # checked now, before anything starts: workload options, names, bounds, metrics
        try:
            probe = build_workload(spec.workload, self.paths.home / "runs" / ".check")
        except (WorkloadError, CollectorError, ValueError, TypeError) as err:
            raise SpecError(source, [f"workload ({spec.workload.kind}): {err}"]) from None
        self.metric_names = allowed_metrics(probe.metric_names())
        resolve(spec, Catalog(), check_availability=False, source=source, metrics=self.metric_names)
        prices = load_unit_prices(profile=spec.cost.profile, model=spec.cost.pricing_model)
        self.prices = prices

    # ----------------------------------------------------------------- naming
    def _study_name(self, storage: optuna.storages.BaseStorage) -> str:
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
        if self.resume:
            if self.explicit_name not in existing:
                raise SpecError(self.source, [f"no study named {self.explicit_name!r} to resume"])
            return self.explicit_name
        if self.explicit_name is not None:
            if self.explicit_name in existing:
                raise SpecError(self.source, [f"a study named {self.explicit_name!r} exists already; choose another --name"])
            return self.explicit_name
        base, n = self.spec.name, 1
        name = base
        while name in existing:
            n += 1
            name = f"{base}-{n}"
        return name

    # --------------------------------------------------------------- the loop
    def run(self) -> StudyReport:
        t_start = time.monotonic()
        journal = Journal(self.paths.journal)
        stale = recover(journal)  # what a killed earlier run left open
        storage = optuna.storages.RDBStorage(self.paths.optuna_url)
        name = self._study_name(storage)
        self.name = name
        run_id = f"{name}-{uuid.uuid4().hex[:8]}"
        workdir = self.paths.study_dir(name)
        (workdir / "trials").mkdir(parents=True, exist_ok=True)

        report = StudyReport(name, "running", [], {}, {}, self.objectives, recovered_before=len(stale.restored))
        cgroup: WorkloadCgroup | None = None
        workload: Workload | None = None
        scratch: list[Path] = []
        recorded: list[tuple[int, float]] = []  # workload (pid, ctime) in the journal: released once stopped
        tracker = None
        study = None
        holds: KnobHolds | None = None
        with _signals_raise(), journal.run(run_id):
            try:
                cgroup_reason = None
                passive = self.spec.workload.kind == "passive"
                if passive:
                    cgroup_reason = ("passive workload: novatune does not move processes it did not start into "
                                     "a cgroup, so sizing knobs do not apply")
                elif any(k.startswith("sizing.") for k in self.spec.knobs):
                    # memory, cpuacct and blkio also for accounting: the collector reads the cgroup's CPU,
                    # memory and IO bytes (v1 keeps them in separate hierarchies)
                    controllers = ["cpu", "cpuacct", "memory", "blkio"]
                    if any(k.startswith("sizing.cpuset_") for k in self.spec.knobs):
                        controllers.append("cpuset")
                    try:
                        cgroup = WorkloadCgroup.create(
                            run_id, journal=journal, run_id=run_id, controllers=tuple(controllers)
                        )
                    except (ActuatorError, OSError) as err:
                        cgroup_reason = f"no workload cgroup: {err}"
                workload = build_workload(self.spec.workload, workdir / "work")
                preexec = None
                if cgroup is not None:
                    procs_files = [str(p) for p in cgroup.procs_files]

                    def preexec() -> None:
                        for procs in procs_files:
                            with open(procs, "w") as f:
                                f.write(str(os.getpid()))

                try:
                    workload.start(preexec_fn=preexec)
                except (WorkloadError, CollectorError) as err:
                    raise WorkloadError(f"the {workload.kind} workload could not start: {err}") from err
                reader = None
                if cgroup is not None:  # one per run: gaps reported once
                    acct = cgroup.dir_for("cpuacct")
                    reader = CgroupCpuReader(cgroup.path, cpuacct_path=cgroup.root.path(acct) if acct else None)
                # one sampler per run too: a missing file is reported once per study, not once per window
                self._watched = self._targets(workload, reader)
                self._collector = MetricsSampler(targets=list(self._watched.values()))
                if not passive:  # recover kills what a killed run started, never what it only observed
                    for pid in workload.pids():
                        try:
                            recorded.append((pid, journal.record_process(run_id, pid)["ctime"]))
                        except ActuatorError:
                            if process_ctime(pid) is not None:
                                raise
                            # exited between the listing and the record (a server's short-lived helper,
                            # seen with pgbench's cluster start): nothing of it is left to clean up
                scratch = workload.scratch_dirs()
                for d in scratch:
                    journal.record_scratch(run_id, d)

                catalog = Catalog(context=KnobContext(cgroup=cgroup, pids=workload.pids))
                resolved = resolve(self.spec, catalog, source=self.source, metrics=self.metric_names)
                skipped = dict(resolved.skipped)
                for k in skipped:
                    if k.startswith("sizing.") and cgroup_reason:
                        skipped[k] = cgroup_reason
                report.skipped = skipped
                # machine-wide: no other novatune process (whatever its data directory) tunes these host
                # knobs while this study runs; taken before the baseline is read, released at the end
                holds = KnobHolds(shared_knobs(list(resolved.knobs), catalog), owner=f"study {name} in {self.paths.home}")
                try:
                    holds.acquire()
                except KnobHeld as err:
                    raise StudyConflict(str(err)) from None
                baseline = {n: knob.read() for n, knob in resolved.knobs.items()}
                report.baseline = baseline

                region = self._trust_region(resolved, baseline)  # checked before the study exists
                choice = self._sampler(resolved.space)
                done_before = remeasured_before = 0
                if self.resume:
                    study = optuna.load_study(study_name=name, storage=storage, sampler=choice.sampler)
                    self._fail_running(study, reason=INTERRUPTED_BY_CRASH)
                    baseline = dict(study.user_attrs.get("baseline") or baseline)  # the values before the study
                    report.baseline = baseline
                    earlier = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                                       TrialState.PRUNED))
                    done_before = len(earlier)
                    remeasured_before = sum("remeasure_of" in t.user_attrs for t in earlier)
                    study.set_user_attr("run_id", run_id)
                    study.set_user_attr("state", "running")
                    study.set_user_attr("resumed", int(study.user_attrs.get("resumed", 0)) + 1)
                    if region is not None and study.user_attrs.get("trust_center"):
                        region = region.move(study.user_attrs["trust_center"])
                else:
                    study = optuna.create_study(
                        study_name=name, storage=storage, directions=self.directions, sampler=choice.sampler
                    )
                    for key, value in {
                        "objectives": self.objectives,
                        "constraints": {m: c.model_dump(exclude_none=True) for m, c in self.spec.constraints.items()},
                        "knobs": list(resolved.knobs),
                        "sysctl_keys": {n: k.sysctl_key for n, k in resolved.knobs.items() if k.sysctl_key},
                        "skipped": skipped,
                        "baseline": baseline,
                        "spec": self.spec.model_dump(mode="json"),
                        "run_id": run_id,
                        "state": "running",
                        "workload": self.spec.workload.kind,
                        "sampler": choice.name,
                        "sampler_reason": choice.reason,
                        "target": self.target_key,
                    }.items():
                        study.set_user_attr(key, value)
                    study.enqueue_trial(clamp_to_space(baseline, resolved.space), user_attrs={"baseline": True})
                    warm = self._warm_start(storage, name, resolved, baseline) if not choice.enqueue else []
                    for point in (choice.enqueue or warm)[: max(0, self.n_trials - 1)]:
                        study.enqueue_trial(point, user_attrs={"warm_start": True} if warm else None)
                    study.set_user_attr("warm_start", warm)
                tracker = self._tracker()
                resumed_run = False
                if tracker is not None and self.resume and hasattr(tracker, "resume_study"):
                    resumed_run = tracker.resume_study(name, tags={"run_id": run_id})
                if tracker is not None and not resumed_run:
                    tracker.start_study(
                        name,
                        description=self.spec.description or f"novatune study of spec {self.spec.name}",
                        tags={"novatune.study": name, "run_id": run_id, "skipped": str(skipped) or "none",
                              "sampler": choice.name, "sampler_reason": choice.reason},
                    )
                report.mlflow_experiment_id = getattr(tracker, "experiment_id", None)
                self.on_event("start", name=name, total=self.n_trials, skipped=skipped, baseline=baseline,
                              sampler=choice.reason)
                deadline = t_start + self.spec.budget.timeout_s if self.spec.budget.timeout_s else math.inf
                conv = self.spec.convergence
                monitor = ConvergenceMonitor(
                    self.directions,
                    patience=conv.patience if conv else 8,
                    min_rel_improvement=conv.min_improvement if conv else 0.01,
                    min_trials=conv.min_trials if conv else None,
                )
                report.stop_reason = f"budget of {self.n_trials} trials used"
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
                    monitor.update_from_trial(t)  # a resumed study carries on from where it was
                self._write_status(study, report, workdir)

                def one(trial: optuna.trial.Trial, params: dict[str, Any], **attrs: Any) -> TrialReport:
                    trial.set_user_attr("applied", params)  # the proposal after ordering repair (and trust region)
                    for k, v in attrs.items():
                        trial.set_user_attr(k, v)
                    self.on_event("trial_start", number=trial.number, params=params)
                    self._write_status(study, report, workdir)  # shows the trial in progress
                    tr = self._run_trial(trial.number, params, resolved, journal, run_id, workload, reader, workdir)
                    self._tell(study, trial, tr)
                    report.trials.append(tr)
                    if tracker is not None:
                        self._log_trial(tracker, tr, workdir, baseline=trial.number == 0)
                    self._write_status(study, report, workdir)
                    self.on_event("trial_end", report=tr)
                    if tr.reason.startswith("restore failed"):
                        raise RestoreFailed(tr.reason)
                    return tr

                for _ in range(max(0, self.n_trials - done_before)):
                    if time.monotonic() >= deadline:
                        report.stop_reason = f"budget timeout of {self.spec.budget.timeout_s:g} s reached"
                        break
                    trial = study.ask()
                    params = resolved.space.suggest(trial)
                    extra = {}
                    if region is not None:
                        params = resolved.space.active(region.clamp(params))
                        extra["trust_center"] = region.center  # what this trial's steps are measured from
                    tr = one(trial, params, **extra)
                    state = self._converge(study, trial.number, monitor, tracker)
                    if region is not None and tr.feasible and state.improved_at == trial.number:
                        region = region.move({**region.center, **params})  # the region follows the improvements
                        study.set_user_attr("trust_center", region.center)
                    if conv is not None and state.converged:
                        report.stop_reason = f"converged: {state.reason}"
                        break
                # noise: re-measure promising and duplicate configurations (each a trial of its own)
                for _ in range(max(0, self.spec.noise.remeasure - remeasured_before)):
                    if time.monotonic() >= deadline:
                        break
                    target = self._remeasure_target(study)
                    if target is None:
                        break
                    params = dict(target.user_attrs.get("applied") or target.params)
                    study.enqueue_trial(clamp_to_space(params, resolved.space),
                                        user_attrs={"remeasure_of": target.number})
                    trial = study.ask()
                    resolved.space.suggest(trial)  # the enqueued params come back
                    one(trial, params)
                study.set_user_attr("stop_reason", report.stop_reason)
                report.restore_mismatches = [
                    f"{n}: {knob.read()!r} != baseline {baseline[n]!r}"
                    for n, knob in resolved.knobs.items()
                    if knob.read() != baseline[n]
                ]
                report.state = "completed"
            except (KeyboardInterrupt, Interrupted):
                report.state = "interrupted"
                raise
            except BaseException:
                report.state = "failed"
                raise
            finally:
                if study is not None:
                    study.set_user_attr("state", report.state)
                    self._fail_running(study)
                if workload is not None:
                    workload.stop()
                    for pid, ctime in recorded:  # one still alive stays open: recover ends it
                        if not same_process(pid, ctime):
                            journal.release_process(run_id, pid, note="stopped with the workload")
                    for d in scratch:
                        if not Path(d).exists():
                            journal.release_scratch(run_id, d, note="deleted by the workload")
                if cgroup is not None:
                    cgroup.remove()
                if holds is not None:
                    holds.release()  # every knob was restored by now (each trial's session)
                if study is not None:
                    self._finish(report, tracker, workdir)
                    self._write_status(study, report, workdir)
                report.seconds = time.monotonic() - t_start
                self.on_event("finish", report=report)
        return report

    # ------------------------------------------------------- search control
    def _converge(self, study: optuna.Study, number: int, monitor: ConvergenceMonitor, tracker: Any) -> Any:
        """Feed trial ``number`` to the convergence monitor; record the state (study attrs, MLflow)."""
        frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, number))
        conv = self.spec.convergence
        terminator = None
        if conv is not None and conv.terminator and len(self.directions) == 1:
            terminator = terminator_says_stop(study, evaluator="stagnation")
        state = monitor.update_from_trial(frozen, terminator=terminator)
        study.set_user_attr("convergence", {
            "converged": state.converged, "reason": state.reason, "trials_since_improvement":
            state.trials_since_improvement, "improved_at": state.improved_at,
            "history": [x if math.isfinite(x) else None for x in state.history],
            "stops_study": conv is not None,
        })
        if tracker is not None:
            progress = state.history[-1] if state.history else math.nan
            tracker.log_study_step({"convergence_progress": progress,
                                    "trials_since_improvement": float(state.trials_since_improvement)}, step=number)
        return state

    def _trust_region(self, resolved: Resolved, baseline: dict[str, Any]) -> TrustRegion | None:
        tr = self.spec.trust_region
        if tr is None:
            return None
        # the region works on every knob (conditions apply after each clamp, see the loop)
        space = dataclasses.replace(resolved.space, conditions=())
        center = clamp_to_space(baseline, space)
        outside = [f"{p.name} ({center[p.name]!r} not in {list(p.choices)})" for p in space.params
                   if isinstance(p, CategoricalParam) and p.name in center and center[p.name] not in p.choices]
        if outside:
            raise SpecError(self.source, [
                "trust_region: a trust region starts from the current configuration, but the current value of "
                + ", ".join(outside) + " is not among the spec's choices; add it to the choices"])
        for p in resolved.space.params:  # a baseline outside the spec's range starts at the nearest edge
            if p.name in center and not isinstance(center[p.name], str):
                center[p.name] = min(max(center[p.name], p.low), p.high)  # type: ignore[union-attr]
        missing = [n for n in space.names if n not in center]
        if missing:
            raise SpecError(self.source, [f"trust_region: the current value of {missing} cannot be read"])
        try:
            return TrustRegion(space.repair(center), tr.max_step, space,
                               max_categorical_changes=tr.max_categorical_changes)
        except ValueError as err:
            raise SpecError(self.source, [f"trust_region: {err}"]) from None

    @property
    def target_key(self) -> str:
        """What "the same target" means for warm starts: the workload as specified, on this host."""
        return f"{socket.gethostname()}:{json.dumps(self.spec.workload.model_dump(mode='json'), sort_keys=True)}"

    def _warm_start(
        self, storage: optuna.storages.BaseStorage, name: str, resolved: Resolved, baseline: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The best configurations of earlier studies of the same target, for this space: the
        chosen one of each study first, then its noise-aware front; distinct, valid, not the baseline."""
        ws = self.spec.warm_start
        if not ws.enabled or ws.top == 0:
            return []
        points: list[dict[str, Any]] = []
        seen = {json.dumps(clamp_to_space(baseline, resolved.space), sort_keys=True, default=str)}
        summaries = sorted(optuna.get_all_study_summaries(storage, include_best_trial=False),
                           key=lambda s: s.datetime_start.timestamp() if s.datetime_start else 0.0,
                           reverse=True)  # newest first
        for summary in summaries:
            if summary.study_name == name or summary.user_attrs.get("target") != self.target_key:
                continue
            try:
                view = load_view(self.paths.optuna_url, summary.study_name)
                decision = view.decide()
            except (ValueError, LookupError):
                continue
            for number in [decision.trial.number, *decision.noisy_front]:
                values = clamp_to_space(view.knob_values(view.trial(number)), resolved.space)
                conditional = {c.param for c in resolved.space.conditions}
                if not set(resolved.space.names) - conditional <= set(values) or not resolved.space.is_valid(values):
                    continue  # the earlier study tuned other knobs, or other ranges
                key = json.dumps(values, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    points.append(values)
                if len(points) >= ws.top:
                    return points
        return points

    def _remeasure_target(self, study: optuna.Study) -> optuna.trial.FrozenTrial | None:
        """The complete trial whose configuration most deserves another measurement, or None."""
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not done:
            return None
        n = self.spec.noise
        estimates = [TrialEstimate.from_samples(t.user_attrs.get("samples") or [list(t.values)],
                                                confidence=n.confidence) for t in done]
        params = [t.user_attrs.get("applied") or t.params for t in done]
        feasible = [all(v <= 0 for v in t.constraints.values()) for t in done]
        picks = remeasure_candidates(estimates, params, self.directions, max_n=1, target_n=n.target_repeats,
                                     max_rel_ci=n.max_rel_ci, feasible=feasible)
        return done[picks[0]] if picks else None

    # ------------------------------------------------------------- one trial
    def _run_trial(
        self,
        number: int,
        params: dict[str, Any],
        resolved: Resolved,
        journal: Journal,
        run_id: str,
        workload: Workload,
        reader: CgroupCpuReader | None,
        workdir: Path,
    ) -> TrialReport:
        t0 = time.monotonic()
        tr = TrialReport(number, params, "fail", started=time.time())
        series: list[pd.DataFrame] = []
        timelines: list[pd.DataFrame] = []
        units: dict[str, str] = {}  # metric -> unit, as the workload reports them
        session = ChangeSession(journal, run_id=run_id, trial=number)
        if not resolved.space.is_valid(params):  # e.g. an enqueued point: never reaches an actuator
            tr.reason = f"invalid combination (outside a range or breaking a knob ordering): {params}"
            tr.seconds = time.monotonic() - t0
            return tr
        try:
            with session:
                session.apply_many({resolved.knobs[n]: v for n, v in params.items()})
                per_repeat: list[dict[str, float]] = []
                for rep in range(self.spec.trial.repeats):
                    per_repeat.append(self._measure(workload, reader, series, timelines, units, rep))
                tr.metrics = self._reduce(per_repeat, params, throughput_unit=units.get("throughput", ""))
                # per-repeat objective values (derived ones such as cost from the trial's figures)
                tr.samples = [[r.get(o, tr.metrics.get(o, math.nan)) for o in self.objectives] for r in per_repeat]
                tr.state = "complete"
        except (ActuatorError, WorkloadError, CollectorError, OSError, ValueError) as err:
            tr.state, tr.reason = "fail", f"{type(err).__name__}: {err}"
        failures = getattr(session, "failures", [])
        if failures:
            tr.state, tr.reason = "fail", "restore failed: " + "; ".join(map(str, failures))
        self._save_series(workdir, number, series, timelines)
        tr.seconds = time.monotonic() - t0
        if tr.state == "complete":
            tr.feasible = all(self._violation(m, tr.metrics) <= 0 for m in self.spec.constraints)
        return tr

    def _targets(self, workload: Workload, reader: CgroupCpuReader | None) -> dict[str, Target]:
        """What the collector watches: ``"p"`` the tuned pid tree (its first pid and descendants),
        ``"c"`` the workload cgroup (or a passive workload's cgroup); none when nothing is tuned."""
        out: dict[str, Target] = {}
        pids = workload.pids()
        if pids:
            out["p"] = Target(label=f"pid{pids[0]}", pid=pids[0])
        w = self.spec.workload
        if reader is not None:
            out["c"] = parse_target(str(reader.path))
        elif w.kind == "passive" and getattr(w, "cgroup", None):
            out["c"] = parse_target(w.cgroup)  # type: ignore[arg-type]
        return out

    def _measure(
        self,
        workload: Workload,
        reader: CgroupCpuReader | None,
        series: list[pd.DataFrame],
        timelines: list[pd.DataFrame],
        units: dict[str, str],
        rep: int,
    ) -> dict[str, float]:
        t = self.spec.trial
        targets = self._watched
        recorder = Recorder(self._collector, interval_s=t.sample_interval_s)
        before = reader.read() if reader is not None else None
        recorder.start()
        try:
            res = workload.measure(warmup_s=t.warmup_s, measure_s=t.measure_s)
        finally:
            frame = recorder.stop()
        after = reader.read() if reader is not None else None
        if frame.attrs.get("vanished"):
            raise WorkloadError("target vanished during the window: " + "; ".join(frame.attrs["vanished"].values()))
        m = {k: float(v) for k, v in res.metrics.items()}
        for key, value in self._series_metrics(frame, targets).items():
            m.setdefault(key, value)  # what the workload measured itself wins
        if before is not None and after is not None:
            m["cgroup_throttled_ratio"] = cpu_delta(before, after).throttled_ratio
        units.update(res.units)
        frame = frame.copy()
        frame["repeat"] = rep
        series.append(frame)
        if res.timeline is not None and len(res.timeline):
            tl = res.timeline.copy()
            tl["repeat"] = rep
            timelines.append(tl)
        return m

    def _series_metrics(self, frame: pd.DataFrame, targets: dict[str, Target]) -> dict[str, float]:
        """Means of the series metrics over the steady part of the window (see ``trial.steady``)."""
        t = self.spec.trial
        labels = {k: targets[k].label if k in targets else "-" for k in ("p", "c")}
        cols: dict[str, str] = {}
        for name, candidates in SERIES_METRICS.items():
            found = [c.format(**labels) for c in candidates if c.format(**labels) in frame]
            if found:
                cols[name] = found[0]
        if t.steady is not None and t.steady.metric in cols:
            window = steady_window(frame, cols[t.steady.metric], warmup_s=t.warmup_s,
                                   window_s=t.steady.window_s, max_cv=t.steady.max_cv)
            out = {"window_stable": 1.0 if window.attrs.get("stable") else 0.0}
        else:
            started = frame.attrs.get("started")
            window = frame
            if started is not None and len(frame):
                trimmed = frame[frame.index >= started + pd.Timedelta(seconds=t.warmup_s)]
                window = trimmed if len(trimmed) else frame  # a count-bound run can end before warmup_s
            out = {}
        out["window_samples"] = float(len(window))
        for name, col in cols.items():
            if col in window:
                vals = window[col].to_numpy(dtype=float)
                vals = vals[np.isfinite(vals)]
                if vals.size:
                    out[name] = float(vals.mean())
        return out

    @staticmethod
    def _save_series(workdir: Path, number: int, series: list[pd.DataFrame], timelines: list[pd.DataFrame]) -> None:
        """Persist a trial's collector series and workload timeline (CSV; units in ``series-units.csv``)."""
        base = workdir / "trials"
        if series:
            frame = pd.concat(series)
            frame.to_csv(base / f"trial-{number:03d}-series.csv", index_label="time")
            units = workdir / "series-units.csv"
            if not units.exists():
                pd.Series(series[0].attrs.get("units", {}), name="unit").rename_axis("metric").to_csv(units)
        if timelines:
            pd.concat(timelines).to_csv(base / f"trial-{number:03d}-workload.csv")

    def _reduce(
        self, per_repeat: list[dict[str, float]], params: dict[str, Any], *, throughput_unit: str = ""
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in per_repeat[0]:
            samples = [r[key] for r in per_repeat if key in r and math.isfinite(r[key])]
            if not samples:
                out[key] = math.nan
                continue
            est = estimate(samples)
            out[key] = est.median
            if est.n > 1:
                out[f"{key}_ci_low"], out[f"{key}_ci_high"] = est.ci_low, est.ci_high
        ncpu = float(os.cpu_count() or 1)
        vcpus = min(float(params.get("sizing.vcpus", ncpu)), float(params.get("affinity.cpus", ncpu)))
        if "sizing.cpuset_cpus" in params:
            vcpus = min(vcpus, float(len(parse_cpu_list(str(params["sizing.cpuset_cpus"])))))
        out["effective_vcpus"] = vcpus
        memory_gib = float(params.get("sizing.memory_gib", self.spec.cost.memory_gib))
        usd = hourly_cost(
            Sizing(vcpus=vcpus, memory_gib=memory_gib),
            cpu_usd_per_vcpu_hour=self.prices.cpu_usd_per_vcpu_hour,
            memory_usd_per_gib_hour=self.prices.memory_usd_per_gib_hour,
        )
        out["cost_usd_per_hour"] = usd
        ops_like = throughput_unit in _OPS_UNITS
        rate = out.get("throughput_rps", out.get("throughput", math.nan) if ops_like else math.nan)
        if math.isfinite(rate):
            out["cost_usd_per_1k_requests"] = cost_per_1k_requests(usd, rate)
        return out

    def _violation(self, metric: str, metrics: dict[str, float]) -> float:
        c = self.spec.constraints[metric]
        v = metrics.get(metric, math.nan)
        if not math.isfinite(v):
            return math.inf
        return v - c.max if c.max is not None else c.min - v  # type: ignore[operator]

    def _tell(self, study: optuna.Study, trial: optuna.trial.Trial, tr: TrialReport) -> None:
        values = [tr.metrics.get(m, math.nan) for m in self.objectives]
        if tr.state == "complete" and not all(math.isfinite(v) for v in values):
            tr.state, tr.reason = "fail", f"objective not measurable: {dict(zip(self.objectives, values))}"
        trial.set_user_attr("metrics", {k: v for k, v in tr.metrics.items() if math.isfinite(v)})
        if tr.samples and all(math.isfinite(x) for row in tr.samples for x in row):
            trial.set_user_attr("samples", tr.samples)
        if tr.state != "complete":
            trial.set_user_attr("reason", tr.reason)
            study.tell(trial, state=TrialState.FAIL)
            return
        for m in self.spec.constraints:
            viol = self._violation(m, tr.metrics)
            trial.set_constraint(m, viol if math.isfinite(viol) else 1e12)
        study.tell(trial, values)

    @staticmethod
    def _fail_running(study: optuna.Study, reason: str = "interrupted") -> None:
        """A trial still RUNNING (interrupted) is marked FAIL: never silently good."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, "reason", reason)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def _write_status(self, study: optuna.Study, report: StudyReport, workdir: Path) -> None:
        """``status.json`` beside the study's files: what the API and ``study list`` show without
        opening the Optuna store (written atomically after every trial)."""
        try:
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)]
            feasible = [t for t in done if t.state == TrialState.COMPLETE
                        and all(v <= 0 for v in t.constraints.values())]
            best = {}
            for i, (m, d) in enumerate(zip(self.objectives, self.directions)):
                if feasible:
                    pick = (max if d == "maximize" else min)(feasible, key=lambda t: t.values[i])
                    best[m] = {"value": pick.values[i], "trial": pick.number}
            leader = None  # one trial's values, never a mix of objectives' bests from different trials
            if feasible:
                info = pareto_info(np.array([t.values for t in feasible], dtype=float), [True] * len(feasible),
                                   self.directions)
                if info.knee is not None:
                    knee = feasible[info.knee]
                    leader = {"trial": knee.number, "values": dict(zip(self.objectives, knee.values)),
                              "front_size": len(info.front)}
            attrs = study.user_attrs
            write_json_atomic(workdir / "status.json", {
                "name": study.study_name,
                "state": report.state,
                "objectives": dict(zip(self.objectives, self.directions)),
                "trials_total": self.n_trials,
                "trials_done": len(done),
                "trials_failed": sum(t.state == TrialState.FAIL for t in done),
                "trials_feasible": len(feasible),
                "running_trial": next((t.number for t in trials if t.state == TrialState.RUNNING), None),
                "best": best,
                "leader": leader,
                "choice": attrs.get("choice"),
                "convergence": attrs.get("convergence"),
                "stop_reason": report.stop_reason if report.state != "running" else None,
                "sampler": attrs.get("sampler"),
                "workload": self.spec.workload.kind,
                "knobs": attrs.get("knobs", []),
                "resumed": attrs.get("resumed", 0),
                "pid": os.getpid(),
                "updated": time.time(),
            })
        except Exception:  # a status file must never stop a study
            log.exception("could not write the status of %s", study.study_name)

    # --------------------------------------------------------------- outputs
    def _sampler(self, space: Any) -> SamplerChoice:
        s = self.spec.sampler
        try:
            return build_sampler(s.name, space, n_objectives=len(self.objectives), budget=self.n_trials, seed=s.seed)
        except ValueError as err:
            raise SpecError(self.source, [f"sampler.name: {err}"]) from None

    def _tracker(self):  # -> Tracker | None
        from experiments.tracking import Tracker

        return Tracker(self.tracking_uri, artifact_root=self.paths.artifacts)

    def _log_trial(self, tracker: Any, tr: TrialReport, workdir: Path, *, baseline: bool) -> None:
        files = [workdir / "trials" / f"trial-{tr.number:03d}-{part}.csv" for part in ("series", "workload")]
        tags = {"state": tr.state, "feasible": str(tr.feasible).lower(), "baseline": str(baseline).lower()}
        if tr.reason:
            tags["failure_reason"] = tr.reason[:5000]
        tracker.log_trial(
            tr.number,
            params=tr.params,
            # medians over the repeats, <metric>_ci_low/_ci_high when there were several (see _reduce)
            metrics={**tr.metrics, "trial_seconds": tr.seconds, "repeats": float(len(tr.samples))},
            tags=tags,
            artifacts=[f for f in files if f.exists()],
            started=tr.started or None,
            finished=(tr.started + tr.seconds) if tr.started else None,
        )

    def _importance(self, name: str, workdir: Path) -> tuple[dict[str, float], list[Path]] | None:
        """Knob importance per objective (Optuna's fANOVA over complete trials): MLflow metrics
        ``importance.<objective>.<knob>`` and a bar chart, ``plots/importance.png`` first, then
        ``plots/importance.html`` (interactive). None when too few trials vary."""
        study = optuna.load_study(study_name=name, storage=self.paths.optuna_url)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) < 4:
            return None
        out: dict[str, dict[str, float]] = {}
        for i, objective in enumerate(self.objectives):
            try:
                imp = optuna.importance.get_param_importances(
                    study, target=lambda t, i=i: t.values[i],
                    evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            except (RuntimeError, ValueError) as err:  # e.g. every trial has the same params
                log.info("no importance for %s: %s", objective, err)
                continue
            out[objective] = {k: float(v) for k, v in imp.items()}
        if not out:
            return None
        study.set_user_attr("importance", out)
        (workdir / "plots").mkdir(exist_ok=True)
        path = plot_importance(out, workdir / "plots" / "importance.png", title=f"{name}: knob importance (fANOVA)")
        paths = [path]
        try:
            from experiments.plots import plot_importance_html

            paths.append(plot_importance_html(out, workdir / "plots" / "importance.html",
                                              title=f"{name}: knob importance (fANOVA)"))
        except Exception as err:  # noqa: BLE001 - the PNG and the metrics still count
            log.warning("no interactive importance plot for %s: %s", name, err)
        flat = {f"importance.{o}.{k}": v for o, d in out.items() for k, v in d.items()}
        return flat, paths

    def _finish(self, report: StudyReport, tracker: Any, workdir: Path) -> None:
        """Pareto front, knee, plots and the knee's export; all logged to the study run."""
        try:
            view = load_view(self.paths.optuna_url, report.name)
            info, done = view.pareto()
            artifacts: list[Any] = []  # Path (run root) or (Path, artifact dir), see tracking.Artifact
            not_plotted: dict[str, str] = {}
            hv: list[float] = []
            if len(done):  # under plots/, as PNG and as interactive HTML
                names = self.objectives
                plots = workdir / "plots"
                plots.mkdir(exist_ok=True)
                numbers = [t.number for t in done]
                front_title, hv_title = f"{report.name}: Pareto front", f"{report.name}: hypervolume per trial"
                drawn = [plot_pareto(info, names, plots / "pareto_front.png", title=front_title, trial_numbers=numbers),
                         plot_convergence(info, plots / "convergence.png", title=hv_title)]
                try:
                    knobs = [", ".join(f"{k}={v}" for k, v in view.knob_values(t).items()) for t in done]
                    drawn += [plot_pareto_html(info, names, plots / "pareto_front.html", title=front_title,
                                               trial_numbers=numbers, hover=knobs),
                              plot_convergence_html(info, plots / "convergence.html", title=hv_title,
                                                    trial_numbers=numbers)]
                except Exception as err:  # noqa: BLE001 - the PNGs still count
                    not_plotted["pareto_front.html"] = f"{type(err).__name__}: {err}"
                artifacts += [(f, "plots") for f in drawn]
                hv = [float(x) for x in info.hv_history]
            decision = None
            if info.knee is not None:
                report.front = [done[i].number for i in info.front]
                try:
                    decision = view.decide()
                except ValueError as err:
                    log.warning("no configuration to export: %s", err)
            if decision is not None:
                report.knee = decision.trial.number
                report.choice_reason = decision.reason
                report.export_json = export.render(view, "json")
                p = workdir / "export-knee.json"
                p.write_text(report.export_json)
                artifacts.append(p)
                # every deployable format of the chosen configuration, under export/ (one failing
                # format does not stop the others); write_export where export.py has it
                export_dir = workdir / "export"
                if export_dir.is_dir():  # a resumed study: no stale file of an earlier choice
                    import shutil

                    shutil.rmtree(export_dir)
                export_dir.mkdir()
                write_export = getattr(export, "write_export", None)
                filenames = {"json": "novatune.json", "sysctl": "90-novatune.conf", **getattr(export, "FILENAMES", {})}
                profile = "novatune-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in report.name)
                for fmt in export.FORMATS:  # one folder per format: sysctl and systemd share a file name
                    try:
                        dest = export_dir / fmt / profile if fmt == "tuned" else export_dir / fmt
                        dest.mkdir(parents=True, exist_ok=True)
                        if write_export is not None:
                            write_export(view, fmt, dest)
                        else:
                            (dest / filenames.get(fmt, f"novatune.{fmt}")).write_text(export.render(view, fmt))
                    except Exception as err:  # noqa: BLE001
                        log.warning("could not export %s as %s: %s", report.name, fmt, err)
                for d in sorted(export_dir.rglob("*"), reverse=True):  # no empty folder of a failed format
                    if d.is_dir() and not any(d.iterdir()):
                        d.rmdir()
                if any(export_dir.iterdir()):
                    artifacts.append((export_dir, "export"))
                study_attrs = {"choice": {"trial": decision.trial.number, "rule": decision.rule,
                                          "reason": decision.reason, "equivalent": decision.equivalent,
                                          "noisy_front": decision.noisy_front}}
                optuna.load_study(study_name=report.name, storage=self.paths.optuna_url).set_user_attr(
                    "choice", study_attrs["choice"])
            importance = self._importance(report.name, workdir)
            if importance:
                artifacts += [(f, "plots") for f in importance[1]]
            else:
                not_plotted["importance"] = "fewer than 4 complete trials, or no knob varied"
            try:  # one parallel-coordinate plot per objective, HTML and PNG, under plots/
                from experiments.plots import plot_parallel_coordinates

                files, skipped = plot_parallel_coordinates(
                    optuna.load_study(study_name=report.name, storage=self.paths.optuna_url),
                    self.objectives, workdir / "plots", title=report.name)
                artifacts += [(f, "plots") for f in files]
                not_plotted.update(skipped)
            except Exception as err:  # noqa: BLE001 - plots never cost the study its report
                not_plotted["parallel_coordinate"] = f"{type(err).__name__}: {err}"
            for what, why in not_plotted.items():
                log.info("%s: no %s plot: %s", report.name, what, why)
            units = workdir / "series-units.csv"
            if units.exists():
                artifacts.append(units)
            report.artifacts = [a[0] if isinstance(a, tuple) else a for a in artifacts]
            if tracker is not None:
                tracker.finish_study(
                    metrics={
                        **(importance[0] if importance else {}),
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
                        "plots_skipped": "; ".join(f"{k}: {v}" for k, v in not_plotted.items()) or "none",
                    },
                    status="FINISHED" if report.state == "completed" else "KILLED",
                )
        except Exception:  # reporting must never mask the study's own outcome
            log.exception("could not finish the study report for %s", report.name)
