"""The approval workflow of a right-sizing proposal: approve, reject, apply (journaled), validate, roll back.

Plain functions over a :class:`~experiments.rightsizing.proposals.ProposalStore`; the CLI and the API are faces
over them. Each records who moved the proposal, when, and why (its history).

* :func:`apply` acts on the target's cgroup through :func:`experiments.deploy.apply.apply_to_target`: the target
  is checked against the operator's ``allowed_targets`` (:class:`~collectors.passive.allowed.PassivePolicy`: a
  refusal is :class:`~collectors.passive.allowed.TargetRefused`, 422, nothing written), every value against the
  knobs' hard bounds before any write, the old bytes journaled (fsynced) before each write. The change is one
  *application* of the journal: ``novatune rollback ID`` restores it, ``novatune recover`` restores an apply
  killed before it finished, and :func:`rollback` here does both the restore and the proposal's move.
* :func:`validate` watches the target for ``duration_s`` against the sample taken before the change and rolls it
  back on degradation (an OOM kill, throttling or memory pressure the baseline did not have:
  :mod:`experiments.rightsizing.health`), else marks it ``validated``. A validation that cannot finish -- its
  ``stop`` asked for, the sampler failing, Ctrl-C -- rolls the change back too: no change stays unvalidated.

Targets are named ``cgroup:/PATH``, ``unit:NAME.service`` (``/system.slice/NAME.service``) or ``pid:N`` (the
cgroup the process is in; on cgroup v1 its cpu and memory cgroups must be the same one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from actuators.errors import UnsafePath
from actuators.rightsize import check_cgroup_path
from collectors.passive.allowed import PassivePolicy
from collectors.rootfs import RootReader
from collectors.usage.errors import TargetNotFound, UsageError
from collectors.usage.target import cgroup_version, parse_target, pid_cgroups
from experiments.deploy.applications import ApplyError, history
from experiments.deploy.apply import apply_to_target
from experiments.deploy.rollback import rollback as rollback_application
from experiments.rightsizing.health import Health, Judge, Thresholds
from experiments.rightsizing.proposals import (
    InvalidTransition,
    Proposal,
    ProposalError,
    ProposalStore,
    values_from_recommendation,
)
from experiments.settings import Paths, Settings
from optimizer.rightsizing.model import Recommendation

__all__ = ["apply", "approve", "propose", "reject", "rollback", "target_cgroup", "validate"]

log = logging.getLogger(__name__)

Sample = Health | Mapping[str, Any]


def propose(store: ProposalStore, recommendation: Recommendation, *, plan: Mapping[str, Any] | None = None,
            cpuset_cpus: str | None = None, who: str = "novatune", note: str | None = None,
            values: Mapping[str, Any] | None = None) -> Proposal:
    """A new ``proposed`` proposal putting ``recommendation`` in place on its target (``recommendation.target``:
    ``cgroup:/PATH``, ``unit:NAME.service`` or ``pid:N``), with the offers / purchase ``plan`` it was priced with.
    ``values`` (default :func:`~experiments.rightsizing.proposals.values_from_recommendation`) are the knob values
    to apply, when the caller has adjusted them (a CPU quota capped at the CPUs there are).

    Raises:
        ProposalError: the recommendation has insufficient data, the target is not a cgroup, unit or pid, or a
            field is not acceptable.
    """
    target_cgroup(recommendation.target)
    rec = recommendation.to_dict()
    chosen = values if values is not None else values_from_recommendation(rec, cpuset_cpus=cpuset_cpus)
    return store.create(target=recommendation.target, profile=recommendation.profile, recommendation=rec,
                        values=chosen, plan=plan, who=who, note=note or "; ".join(recommendation.reasons) or None)


def approve(store: ProposalStore, id: str, *, who: str, note: str | None = None) -> Proposal:
    """``proposed -> approved``.

    Raises:
        UnknownProposal, InvalidTransition (the allowed next states listed), ProposalError (``who`` / ``note``).
    """
    return store.transition(id, "approved", who=who, note=note)


def reject(store: ProposalStore, id: str, *, who: str, note: str | None = None) -> Proposal:
    """``proposed | approved -> rejected`` (nothing is written to the target).

    Raises:
        UnknownProposal, InvalidTransition, ProposalError.
    """
    return store.transition(id, "rejected", who=who, note=note)


def target_cgroup(target: str, *, root: RootReader | None = None) -> str:
    """The cgroup path (inside its hierarchy) of a target named ``cgroup:/PATH``, ``unit:NAME.service`` /
    ``unit:NAME.scope`` or ``pid:N``.

    Raises:
        ProposalError: another form, a bad path, a pid that is not running, or (cgroup v1) a process whose cpu and
            memory cgroups differ.
    """
    try:
        spec = parse_target(target)  # the one syntax of a target (the usage collector's)
    except UsageError as err:
        raise ProposalError(str(err)) from None
    kind, value = spec.kind, spec.value
    if kind == "unit":
        value = f"/system.slice/{value}"
    elif kind == "pid":
        value = _cgroup_of_pid(int(value), root if root is not None else RootReader())
    try:
        return check_cgroup_path(value)
    except UnsafePath as err:
        raise ProposalError(f"target {target!r:.80}: {err}") from None


def _cgroup_of_pid(pid: int, fs: RootReader) -> str:
    try:
        paths = pid_cgroups(fs, pid, cgroup_version(fs))  # the usage collector's reader of /proc/PID/cgroup
    except TargetNotFound:
        raise ProposalError(f"pid {pid} is not running") from None
    if "unified" in paths:
        return paths["unified"]
    if "cpu" in paths:
        if paths.get("memory", paths["cpu"]) != paths["cpu"]:
            raise ProposalError(f"pid {pid} is in cpu cgroup {paths['cpu']} but memory cgroup {paths['memory']}; "
                                "name the cgroup to right-size as cgroup:/PATH")
        return paths["cpu"]
    raise ProposalError(f"pid {pid}: no cpu cgroup in /proc/{pid}/cgroup")


def apply(store: ProposalStore, id: str, *, paths: Paths, settings: Settings, who: str,
          note: str | None = None) -> Proposal:
    """``approved -> applied``: write the proposal's values to its target's cgroup, journaled, as one application
    (its id recorded on the proposal; ``novatune rollback ID`` and ``novatune recover`` restore it).

    Nothing is written when the proposal is not approved, the target is not allowed by
    ``settings.allowed_targets`` (or is never a target), or a value is outside its knob's hard bounds (the
    refusal names the knob, the value and the allowed range).

    Raises:
        UnknownProposal, InvalidTransition: the proposal is unknown or not approved.
        ProposalError: its target is not a cgroup, unit or pid.
        TargetRefused: the policy refuses the target.
        ApplyError, ApplyConflict: a value is refused, a knob is held by another run or application, or a write
            failed (what was written is restored first).
    """
    p = store.check_transition(id, "applied")
    cgroup = target_cgroup(p.target)
    policy = PassivePolicy.of(settings.allowed_targets)
    app = apply_to_target(p.values, target=cgroup, policy=policy, paths=paths,
                          source=f"rightsize proposal {p.id} ({p.target})")
    changed = ", ".join(f"{k.knob} {k.old!r} -> {k.new!r}" for k in app.knobs if k.changes) or "nothing changed"
    app_id = app.id if app.state == "applied" else None
    try:
        return store.transition(id, "applied", who=who, application=app_id,
                                note="; ".join(x for x in (note, f"application {app_id}: {changed}") if x))
    except BaseException:  # moved by someone else meanwhile (rejected?): the change must not stay unrecorded
        if app_id is not None:
            rollback_application(app_id, paths=paths)
        raise


def rollback(store: ProposalStore, id: str, *, paths: Paths, who: str, note: str | None = None,
             force: bool = False) -> Proposal:
    """``applied | validated -> rolled_back``: restore the exact old bytes of the proposal's application (from the
    journal, vetted as a fresh apply would be) and record it. An application already rolled back (``novatune
    rollback ID``) is only recorded.

    Raises:
        UnknownProposal, InvalidTransition: the proposal is unknown or not applied / validated.
        ApplyError: a knob drifted since it was applied (``force`` restores anyway), a journal record is refused,
            or a restore failed (the proposal stays where it was).
    """
    p = store.check_transition(id, "rolled_back")
    if p.application is not None:
        state = next((a.state for a in history(paths) if a.id == p.application), None)
        if state == "applied":
            rollback_application(p.application, paths=paths, force=force)
        elif state != "rolled_back":
            note = "; ".join(x for x in (note, f"application {p.application} is {state}: nothing restored") if x)
    return store.transition(id, "rolled_back", who=who, note=note)


def _wait(seconds: float, stop: Callable[[], bool] | None) -> bool:
    """Sleep ``seconds`` in short steps; True when ``stop`` asked to stop."""
    end = time.monotonic() + max(0.0, seconds)
    while True:
        if stop is not None and stop():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(0.1, left))


def _watch(judge: Judge, sample: Callable[[], Sample], duration_s: float, interval_s: float,
           stop: Callable[[], bool] | None) -> tuple[str | None, int]:
    """Samples until the end, a degradation or a stop: (why it must be rolled back or None, samples taken)."""
    end = time.monotonic() + duration_s
    n = 0
    while True:
        if stop is not None and stop():
            return f"validation stopped after {n} sample(s), before {duration_s:g} s", n
        try:
            s = Health.of(sample())
        except Exception as err:  # noqa: BLE001 - cannot judge the target: not kept
            return f"cannot sample the target: {err}", n
        n += 1
        why = judge.feed(s)
        if why is not None:
            return why, n
        left = end - time.monotonic()
        if left <= 0:
            return None, n
        if _wait(min(interval_s, left), stop):
            return f"validation stopped after {n} sample(s), before {duration_s:g} s", n


def validate(
    store: ProposalStore,
    id: str,
    *,
    baseline: Sample,
    duration_s: float,
    sample: Callable[[], Sample],
    stop: Callable[[], bool] | None = None,
    paths: Paths,
    who: str = "novatune",
    interval_s: float | None = None,
    thresholds: Thresholds | None = None,
) -> Proposal:
    """Watch an applied proposal's target for ``duration_s`` (``settings.rightsizing_validation_s``): ``applied ->
    validated``, or ``applied -> rolled_back`` (restored automatically, the reason in the history) when it
    degrades against ``baseline`` (a :class:`~experiments.rightsizing.health.Health` sample, or a mapping of its
    fields, taken before the change) or the validation cannot finish (``stop()`` true, ``sample`` raising,
    Ctrl-C: re-raised after the rollback).

    Args:
        sample: returns the target's health now (throttled ratio since the previous call, cumulative OOM kills,
            memory PSI, working set); e.g. :class:`~experiments.rightsizing.health.CgroupHealthSampler`.
        interval_s: between two samples (default: a tenth of the duration, 1..15 s).
        thresholds: what counts as degraded (:class:`~experiments.rightsizing.health.Thresholds`).

    Raises:
        UnknownProposal, InvalidTransition: unknown, or not applied.
        ApplyError: the automatic rollback failed (the proposal stays applied; the reason is in the message).
    """
    store.check_transition(id, "validated")
    judge = Judge(Health.of(baseline), thresholds)
    interval = interval_s if interval_s is not None else min(15.0, max(1.0, duration_s / 10))
    try:
        why, n = _watch(judge, sample, duration_s, interval, stop)
    except BaseException:  # Ctrl-C: the change does not stay unvalidated
        _auto_rollback(store, id, paths=paths, who=who, why="validation interrupted")
        raise
    if why is not None:
        return _auto_rollback(store, id, paths=paths, who=who, why=why)
    worst = ", ".join(f"worst {k} {v:.3g}" for k, v in judge.worst.items())
    return store.transition(id, "validated", who=who,
                            note=f"no degradation over {duration_s:g} s ({n} samples{', ' + worst if worst else ''})")


def _auto_rollback(store: ProposalStore, id: str, *, paths: Paths, who: str, why: str) -> Proposal:
    try:
        return rollback(store, id, paths=paths, who=who, note=f"automatic rollback: {why}")
    except (ApplyError, InvalidTransition) as err:
        log.error("automatic rollback of proposal %s failed: %s", id, err)
        raise ApplyError(f"proposal {id}: {why}; the automatic rollback failed: {err}") from err
