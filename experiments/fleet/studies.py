"""Fleet studies: one Optuna study in the shared storage whose trials the agents of matching hosts take.

:func:`submit` checks a spec (the same :func:`~experiments.study.prepare.prepare` a local study uses) and
creates the study with the attributes a local study has, plus ``fleet``: the label selector, the trial
budget and the mode. Nothing is applied anywhere: agents (:mod:`experiments.fleet.agent`) whose labels
match take its trials, one at a time each, until the budget is used.

Modes: ``shared``, one search over the hosts' trials, each trial one configuration measured on the one host
whose agent asked for it (the trial's ``host`` attribute says which); ``fleet-wide``, each configuration
measured on several hosts, its objective their mean (:mod:`experiments.fleet.fleetwide`). In these two, each
host also measures the machine as found once, recorded as the study attribute ``baseline@HOST``, not as a
trial. ``per-host``: each matching host runs a whole study of its own, ``NAME.HOST`` in the same storage
(its baseline trial 0, its own budget of ``trials``), and the hosts share knowledge through warm starts: a
host's study starts from the best configurations of the others' (the spec's ``warm_start``); the fleet
study records each host's study and its state (``host@HOST``).
"""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from experiments.spec import SpecError
from experiments.study.prepare import StudyPlan
from experiments.study.search import sampler_for

optuna.logging.set_verbosity(optuna.logging.WARNING)

__all__ = ["FLEET_ATTR", "MODES", "FleetStudy", "fleet_studies", "room", "running_anywhere", "submit"]

#: the study attribute that makes a study a fleet study
FLEET_ATTR = "fleet"
#: shared: each trial measured on one host; fleet-wide: on several, aggregated; per-host: each host its own
#: study (``NAME.HOST``), warm-started from the others'
MODES = ("shared", "fleet-wide", "per-host")
#: the trial states that use the budget
_USED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.PRUNED)


@dataclass(frozen=True)
class FleetStudy:
    """A fleet study as an agent sees it (from the study summary)."""

    name: str
    selector: dict[str, str]
    trials: int
    state: str
    spec: dict[str, Any]
    mode: str = "shared"
    hosts_per_trial: int = 1


def submit(plan: StudyPlan, storage: optuna.storages.BaseStorage, *, name: str | None,
           selector: dict[str, str], mode: str = "shared", hosts_per_trial: int = 1) -> str:
    """Create the fleet study ``name`` (default: the spec's name and a short id) for hosts matching
    ``selector``; returns its name. ``mode``: ``shared`` (each trial on one host) or ``fleet-wide`` (each
    trial on ``hosts_per_trial`` hosts, its objective their mean: :mod:`experiments.fleet.fleetwide`).

    Raises:
        SpecError: the name is taken, an unknown mode, a host count below 1 (or above 1 in shared mode),
            or the spec's sampler cannot run its space.
    """
    if mode not in MODES:
        raise SpecError(plan.source, [f"fleet mode {mode!r} is unknown; allowed: {', '.join(MODES)}"])
    if hosts_per_trial < 1 or (mode == "shared" and hosts_per_trial != 1):
        raise SpecError(plan.source, [f"--hosts-per-trial {hosts_per_trial}: allowed 1 in shared mode, "
                                      f">= 1 in fleet-wide mode"])
    if mode == "per-host" and hosts_per_trial != 1:
        raise SpecError(plan.source, [f"--hosts-per-trial {hosts_per_trial}: a per-host study runs on its host only"])
    with warnings.catch_warnings():  # Optuna's "experimental" notes on the sampler's options: not the user's
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = sampler_for(plan, plan.resolved.space)  # checked here: an agent would fail on it later
    name = name or f"{plan.spec.name}-fleet-{uuid.uuid4().hex[:6]}"
    if name in optuna.get_all_study_names(storage):
        raise SpecError(plan.source, [f"a study named {name!r} exists already; choose another --name"])
    study = optuna.create_study(study_name=name, storage=storage,
                                directions=[optuna.study.StudyDirection[d.upper()] for d in plan.directions])
    attrs = {
        "objectives": plan.objectives,
        "constraints": {m: c.model_dump(exclude_none=True) for m, c in plan.spec.constraints.items()},
        "knobs": list(plan.resolved.knobs),
        "sysctl_keys": {n: k.sysctl_key for n, k in plan.resolved.knobs.items() if k.sysctl_key},
        "skipped": {},
        "baseline": {},
        "spec": plan.spec_attrs(),
        "run_id": f"{name}-fleet",
        "workload": plan.spec.workload.kind,
        "sampler": sampler.name,
        "sampler_reason": sampler.reason,
        FLEET_ATTR: {"selector": selector, "trials": plan.n_trials, "mode": mode, "hosts_per_trial": hosts_per_trial,
                     "submitted_at": time.time()},
        "state": "running",  # last: an agent takes the study once it is whole
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return name


def fleet_studies(storage: optuna.storages.BaseStorage) -> list[FleetStudy]:
    """Every fleet study in ``storage``, oldest first."""
    out = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        fleet = s.user_attrs.get(FLEET_ATTR)
        if not isinstance(fleet, dict):
            continue
        out.append(FleetStudy(name=s.study_name, selector=dict(fleet.get("selector") or {}),
                              trials=int(fleet.get("trials", 0)), state=str(s.user_attrs.get("state", "unknown")),
                              spec=dict(s.user_attrs.get("spec") or {}), mode=str(fleet.get("mode", "shared")),
                              hosts_per_trial=int(fleet.get("hosts_per_trial", 1))))
    return out


def room(study: optuna.Study, budget: int) -> int:
    """Trials still to take: the budget less the trials finished or running anywhere in the fleet."""
    return max(0, budget - len(study.get_trials(deepcopy=False, states=_USED)))


def running_anywhere(study: optuna.Study) -> int:
    """Trials of ``study`` running now, on any host."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
