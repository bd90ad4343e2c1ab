"""Apply a configuration *to stay* (``novatune apply``, ``POST /tuning/apply``).

Safety rules: every knob is validated before anything is written (unknown knob,
hard bounds, availability are refused, all problems in one :class:`ApplyError`);
knobs bound to a run's workload (cgroup, process and VM scopes: ``sizing.*``,
``affinity.*``, ``sched.*``, ``ioprio.*``, ``instance.type``) cannot stay on the
host: they are not applied and each is listed with how to deploy it
(:class:`NotApplied`; a configuration with nothing else is refused); a knob held
by a live run (e.g. a running study), by a crashed run that was not recovered,
or by another active application is refused, naming the holder; a write that
fails or does not read back restores what was written and raises. The journal
records are described in :mod:`.applications`.

The knobs of a *running target's* cgroup (``rightsize.*``) have their own path,
:func:`apply_to_target`: bound to one cgroup the operator allows (``allowed_targets``,
checked here before anything is written), journaled and rolled back the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from actuators import (
    ActuatorError,
    Catalog,
    ChangeSession,
    Journal,
    Knob,
    KnobContext,
    OutOfBounds,
    SysRoot,
)
from actuators.errors import UnknownKnob, UnsafePath
from actuators.journal import KEPT_EVENT
from actuators.registry import REGISTRY
from collectors.passive.allowed import PassivePolicy
from experiments.deploy.applications import (
    Application,
    AppliedKnob,
    ApplyConflict,
    ApplyError,
    NotApplied,
    default_catalog,
    holder,
    holding,
    iso,
    locked,
    new_id,
    read_applications,
)
from experiments.deploy.config_file import (
    APPLY_SCOPES,
    CONFIG_FORMAT,
    ConfigError,
    ConfigFile,
    _config_values,
    allowed_text,
)
from experiments.settings import Paths

__all__ = ["apply_config", "apply_to_target", "apply_trial", "check_config", "config_values", "held_knobs"]


def _deploy_hint(knob: Knob, value: Any, study: str | None, unit_options: dict[str, str]) -> str:
    """How to deploy a knob that cannot be applied to stay (see :class:`NotApplied`)."""
    if knob.scope == "vm":
        return ("a VM size, not a setting of this host: `novatune plan CONFIG` prices the move; "
                "resize the VM with your cloud provider's tools")
    export = f"`novatune study export {study} --format systemd -o /etc/systemd/system/UNIT.service.d/`" if study \
        else "the systemd export of its study (`novatune study export STUDY --format systemd`)"
    option = unit_options.get(knob.name)
    if option is None:
        return (f"bound to a run's workload (scope {knob.scope}); the systemd drop-in cannot express it here: "
                "set it on your service by hand")
    return (f"bound to a run's workload (scope {knob.scope}); set `{option}` in your service's unit: {export}, "
            "then `systemctl daemon-reload && systemctl restart UNIT`")


def config_values(cfg_or_values: ConfigFile | Mapping[str, Any]) -> dict[str, Any]:
    """knob -> value of a loaded export, an export document or a mapping (what :func:`apply_config` would apply).

    Raises:
        ConfigError: an export document of another format or with bad fields.
        ApplyError: a study spec instead of an export, or no knob at all.
    """
    return _values(cfg_or_values)


def _values(cfg_or_values: ConfigFile | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg_or_values, ConfigFile):
        if cfg_or_values.kind != "config":
            raise ApplyError(
                f"{cfg_or_values.source}: apply needs an exported configuration (format: {CONFIG_FORMAT}), "
                "not a study spec (a spec gives ranges, not values; export a trial: `novatune study export`)"
            )
        values = dict(cfg_or_values.values)
    elif isinstance(cfg_or_values, Mapping) and "format" in cfg_or_values:  # a whole export document
        if cfg_or_values["format"] != CONFIG_FORMAT:
            raise ConfigError(f"unknown format {cfg_or_values['format']!r}; allowed: {CONFIG_FORMAT}")
        values = _config_values(dict(cfg_or_values), "the configuration")
    elif isinstance(cfg_or_values, Mapping):
        values = dict(cfg_or_values)
    else:
        raise TypeError(f"expected a ConfigFile or a mapping of knob -> value, got {type(cfg_or_values).__name__}")
    if not values:
        raise ApplyError("nothing to apply: the configuration names no knob")
    return values


# -------------------------------------------------------------------- apply
def apply_config(
    cfg_or_values: ConfigFile | Mapping[str, Any],
    *,
    paths: Paths,
    dry_run: bool = False,
    source: str,
    catalog: Catalog | None = None,
) -> Application:
    """Apply a configuration to stay (or, ``dry_run``, say what would change).

    Every knob is validated first; nothing is written (not even the journal)
    when one is refused or on a dry run. Otherwise the old values are journaled
    (fsynced) before each write, each write is read back, and the application
    is marked kept: :func:`actuators.recover` will not undo it, :func:`rollback` does.
    Knobs that already have their value are listed with ``changes=False``;
    when no knob changes, nothing is recorded (state ``unchanged``).

    Args:
        cfg_or_values: a loaded export (``load_config``), an export document (a mapping with
            ``format: novatune.config/v1`` and ``knobs``), or a mapping knob -> value.
        paths: the data directory (its journal).
        dry_run: only plan.
        source: where the values come from (shown by ``history``).
        catalog: the knobs (default: this machine, :func:`default_catalog`).

    Raises:
        ConfigError: an export document with a bad format or fields.
        ApplyError: a knob is unknown, out of its hard bounds or not available here;
            every knob is bound to a run's workload (nothing could stay); or a write
            failed (what was written is restored first). Workload-bound knobs beside
            host ones are not errors: they come back in ``Application.not_applied``.
        ApplyConflict: a knob that would change is held by a live run, a dead
            unrecovered run or another active application.
    """
    values = _values(cfg_or_values)
    study = cfg_or_values.study if isinstance(cfg_or_values, ConfigFile) else None
    checked = _check(values, catalog if catalog is not None else default_catalog(), study=study, source=source)
    if dry_run:
        return _dry_run(checked, paths, source)
    return _commit(checked, paths, source)


def check_config(values: Mapping[str, Any], *, source: str, catalog: Catalog | None = None) -> _Checked:
    """The checks :func:`apply_config` makes before anything is written (unknown knob, hard bounds,
    availability, protected interfaces, workload-bound knobs listed in ``not_applied``), for a caller that
    writes through its own journaled session (the validated apply, :mod:`experiments.validate`).

    Raises:
        ApplyError: every problem, in one message (nothing was written).
    """
    return _check(_values(values), catalog if catalog is not None else default_catalog(), study=None, source=source)


def held_knobs(checked: _Checked, records: list[dict[str, Any]]) -> list[str]:
    """``knob: who holds it`` for every knob of ``checked`` that would change and is held by a live run, a dead
    unrecovered run or an active application (the journal's ``records``); empty when every knob is free."""
    return _held_by(checked, records)


def _commit(checked: _Checked, paths: Paths, source: str, *, target: str | None = None) -> Application:
    """Under the data directory's lock and the knobs' holds: refuse held knobs, record the application, write.

    Raises:
        ApplyConflict: a knob that would change is held; ApplyError: a write failed (what was written is restored).
    """
    journal = Journal(paths.journal)
    with locked(paths), holding([k.name for k in checked.plan], f"novatune apply of {source}"):
        records = journal.records()
        held = _held_by(checked, records)
        if held:
            raise ApplyConflict("cannot apply (nothing was changed):\n" + "\n".join(f"  - {h}" for h in held))
        app_id = new_id({str(r.get("run")) for r in records})
        if not any(r.changes for r in checked.rows):
            return Application(id=app_id, time=iso(time.time()), source=source, state="unchanged", knobs=checked.rows,
                               note="every knob already has its value: nothing written, nothing recorded",
                               not_applied=checked.not_applied, target=target)
        meta: dict[str, Any] = {"source": source, "knobs": [asdict(r) for r in checked.rows],
                                "not_applied": [asdict(n) for n in checked.not_applied]}
        if target is not None:
            meta["target"] = target
        begin = journal.append({"run": app_id, "kind": "run", "event": "begin", "application": meta})
        _write(checked, journal, app_id, source)
        return Application(id=app_id, time=iso(float(begin["time"])), source=source, state="applied",
                           knobs=checked.rows, not_applied=checked.not_applied, target=target)


@dataclass
class _Checked:
    """A configuration validated against this machine: per knob old -> new (``rows``), what will be written
    (``plan``: knob -> value), each knob's journal target, and the knobs left to other deployments."""

    rows: list[AppliedKnob] = field(default_factory=list)
    plan: dict[Knob, Any] = field(default_factory=dict)
    targets: dict[str, str | None] = field(default_factory=dict)
    not_applied: list[NotApplied] = field(default_factory=list)


def _check_knob(knob: Knob, value: Any, values: Mapping[str, Any], checked: _Checked, problems: list[str]) -> None:
    reason = knob.available()
    if reason is not None:
        problems.append(f"{knob.name}: not available here: {reason}")
        return
    try:
        new = knob.validate(value, assume=values)
        old = knob.read()
    except OutOfBounds as err:
        msg = str(err)
        allowed = allowed_text(knob)
        problems.append(msg if allowed in msg else f"{msg} (allowed: {allowed})")
        return
    except (ActuatorError, OSError) as err:
        problems.append(f"{knob.name}: {err}")
        return
    checked.targets[knob.name] = knob.journal_target
    bound = REGISTRY.family_of(knob.name)
    checked.rows.append(AppliedKnob(knob=knob.name, old=old, new=new, changes=not knob.same(old, new),
                                    scope=knob.scope,
                                    target=knob.journal_target if bound is not None and bound.bound_by_target
                                    else None))
    checked.plan[knob] = new


def _check(values: Mapping[str, Any], cat: Catalog, *, study: str | None, source: str) -> _Checked:
    """Every knob validated before anything is written. Raises ApplyError listing every problem."""
    from experiments.deploy.formats.systemd import systemd_options

    checked = _Checked()
    problems: list[str] = []
    unit_options = systemd_options(dict(values))[0]
    for name, value in values.items():
        try:
            knob = cat.get(name)
        except UnknownKnob as err:
            problems.append(str(err))
            continue
        if knob.scope not in APPLY_SCOPES:
            checked.not_applied.append(NotApplied(knob=name, value=value, scope=knob.scope,
                                                  deploy=_deploy_hint(knob, value, study, unit_options)))
            continue
        _check_knob(knob, value, values, checked, problems)
    if not problems and not checked.plan and checked.not_applied:
        problems = [f"{n.knob}={n.value}: not applied to stay: {n.deploy}" for n in checked.not_applied]
        problems.insert(0, f"nothing in {source} can be applied to stay on this host "
                           f"(allowed: knobs of scope {', '.join(APPLY_SCOPES)}); deploy these instead:")
    if problems:
        raise ApplyError("cannot apply (nothing was changed):\n" + "\n".join(f"  - {p}" for p in problems))
    return checked


def _held_by(checked: _Checked, records: list[dict[str, Any]]) -> list[str]:
    """``knob: who holds it`` for every knob that would change and is held by a run or an application."""
    apps = read_applications(records)
    held = []
    for knob in checked.plan:
        row = next(r for r in checked.rows if r.knob == knob.name)
        why = holder(records, knob, checked.targets[knob.name], apps)
        if why is not None and row.changes:
            held.append(f"{knob.name}: {why}")
    return held


def _dry_run(checked: _Checked, paths: Paths, source: str) -> Application:
    """What applying would do; reads the journal (if any) to say what would be refused; writes nothing."""
    records = Journal(paths.journal).records()
    apps = read_applications(records)
    for knob in checked.plan:
        row = next(r for r in checked.rows if r.knob == knob.name)
        if row.changes:
            row.held_by = holder(records, knob, checked.targets[knob.name], apps)
    held = [r.knob for r in checked.rows if r.held_by]
    note = "dry run: nothing was written" + (f"; applying would be refused: {', '.join(held)} held" if held else "")
    return Application(id="(dry run)", time=iso(time.time()), source=source, state="dry_run", knobs=checked.rows,
                       note=note, not_applied=checked.not_applied)


def _write(checked: _Checked, journal: Journal, app_id: str, source: str) -> None:
    """Journal first, write, read back, mark kept; on any failure restore what was written and raise."""
    session = ChangeSession(journal, run_id=app_id, trial=None)
    try:
        session.apply_many(dict(checked.plan))
        bad = [f"{k.name}: reads back as {k.read()!r}, expected {v!r}" for k, v in checked.plan.items()
               if not k.verify(v)]
        if bad:
            raise ActuatorError("after applying, " + "; ".join(bad))
        journal.append({"run": app_id, "kind": "run", "event": KEPT_EVENT, "source": source})
    except BaseException as err:
        failures = session.restore_all()
        try:
            journal.end(app_id, note=f"apply failed: {err}")
        except ActuatorError:
            pass
        if not isinstance(err, Exception):
            raise
        try:
            still = [str(e.get("knob")) for e in Journal.open_entries(journal.records(), app_id)]
        except ActuatorError:
            still = ["(the journal cannot be read)"]
        if failures or still:
            left = ("; NOT restored (journal entries left open: `novatune recover` restores them once this "
                    f"process ended): {'; '.join(failures) or ', '.join(still)}")
        else:
            left = "; every knob written so far was restored"
        raise ApplyError(f"{app_id}: {err}{left}") from err


def apply_to_target(
    values: Mapping[str, Any],
    *,
    target: str,
    policy: PassivePolicy,
    paths: Paths,
    source: str,
    dry_run: bool = False,
) -> Application:
    """Apply ``rightsize.*`` values to stay on the running target whose cgroup is ``target`` (its path inside its
    hierarchy, as ``/proc/PID/cgroup`` shows it): the one path for knobs bound to a running target
    (:func:`apply_config` still refuses every workload-bound knob).

    Before anything is written: every name must be a knob bound to a running target; the target must be a cgroup
    path other than the root; each cgroup directory a knob writes is checked against ``policy`` (the operator's
    ``allowed_targets``, and never pid 1, kernel threads, novatune itself or the root cgroup); every value is
    validated through the knob's hard bounds (memory: never below the working set x the margin, never above the
    RAM). Then as :func:`apply_config`: old bytes journaled (fsynced) before each write, each write read back,
    the application marked kept -- ``novatune rollback ID`` undoes it, and ``recover`` undoes an apply killed
    before it was kept. The application records the target as ``cgroup:PATH``.

    Raises:
        TargetRefused: the policy refuses the target (nothing written).
        ApplyError: no values, a knob of another family, a bad target path, a value out of bounds (knob, value and
            allowed range named), a knob not available on the target, or a write failed (what was written is
            restored first).
        ApplyConflict: a knob of the target is held by another run or application.
    """
    from actuators.rightsize import RIGHTSIZE, check_cgroup_path

    if not values:
        raise ApplyError("nothing to apply: no rightsize knob named")
    others = [n for n in values if (f := REGISTRY.family_of(n)) is None or not f.bound_by_target]
    if others:
        raise ApplyError(f"cannot apply {', '.join(others)} to a running target (nothing was changed); allowed: "
                         f"{', '.join(RIGHTSIZE)} (host knobs: `novatune apply`)")
    try:
        check_cgroup_path(target)
    except UnsafePath as err:
        raise ApplyError(f"cannot apply (nothing was changed): {err}") from None
    cat = Catalog(SysRoot("/"), KnobContext(target_cgroup=target))
    checked = _Checked()
    problems: list[str] = []
    for name, value in values.items():
        try:
            knob = cat.get(name)
        except UnknownKnob as err:
            problems.append(str(err))
            continue
        rel = knob.journal_target
        if rel and knob.available() is None:
            policy.check_cgroup(cat.root.path(rel.rpartition("/")[0]))
        _check_knob(knob, value, values, checked, problems)
    if problems:
        raise ApplyError("cannot apply (nothing was changed):\n" + "\n".join(f"  - {p}" for p in problems))
    if dry_run:
        return _dry_run(checked, paths, source)
    return _commit(checked, paths, source, target=f"cgroup:{target}")


def apply_trial(
    study_name: str,
    trial: int | None,
    *,
    paths: Paths,
    dry_run: bool = False,
    catalog: Catalog | None = None,
) -> Application:
    """Apply the export of a study's trial (``None``: the trial the study's ``choose`` rule picks).

    Source recorded: ``study NAME trial N``.

    Raises:
        experiments.study.results.StudyNotFound, experiments.deploy.export.ExportError, ApplyError.
    """
    from experiments.deploy.export import render
    from experiments.study.results import StudyNotFound, load_view

    if not paths.has_studies:
        raise StudyNotFound(f"no study named {study_name!r}; no studies yet in {paths.home}")
    doc = json.loads(render(load_view(paths.optuna_url, study_name), "json", trial=trial))
    cfg = ConfigFile(source=f"study {study_name} trial {doc['trial']}", kind="config", values=dict(doc["knobs"]),
                     study=study_name)
    return apply_config(cfg, paths=paths, dry_run=dry_run, source=cfg.source, catalog=catalog)


