"""Apply a configuration *to stay*, roll it back, list and check what was applied.

The library behind ``novatune apply|rollback|history|status`` and the API's
``/tuning`` endpoints. Everything lives in the journal (``paths.journal``):

* ``begin`` (``kind: run``) with an ``application`` field: id, source, and per
  knob the logical old -> new values; written before any change;
* the ordinary ``intent`` (old value, fsynced) / ``applied`` records of
  :class:`actuators.ChangeSession`, one per knob that changes;
* ``kept`` (:data:`actuators.journal.KEPT_EVENT`): written once every knob was
  written and read back. From then on the intents stay open on purpose and
  :func:`actuators.recover` leaves the run alone. A process that dies before
  this record leaves an ordinary dead run: ``recover`` undoes it;
* ``end`` with ``rolled_back: true`` after :func:`rollback` restored (and
  closed) every entry.

Safety rules: every knob is validated before anything is written (unknown knob,
hard bounds, availability are refused, all problems in one :class:`ApplyError`);
knobs bound to a run's workload (cgroup, process and VM scopes: ``sizing.*``,
``affinity.*``, ``sched.*``, ``ioprio.*``, ``instance.type``) cannot stay on the
host: they are not applied and each is listed with how to deploy it
(:class:`NotApplied`; a configuration with nothing else is refused); a knob held by a live run (e.g. a running study), by a
crashed run that was not recovered, or by another active application is
refused, naming the holder; a write that fails or does not read back restores
what was written and raises; rollback refuses when a knob drifted since it was
applied, unless ``force``.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

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
from actuators.errors import UnknownKnob
from actuators.journal import KEPT_EVENT, OPENING_EVENTS, same_process
from actuators.records import JournalView, KnobIntent
from actuators.restore import Skipped, restore_intent
from collectors.errors import NovatuneError
from experiments.config import (
    APPLY_SCOPES,
    CONFIG_FORMAT,
    ConfigError,
    ConfigFile,
    _allowed,
    _config_values,
    instance_types,
)
from experiments.holds import KnobHeld, KnobHolds
from experiments.settings import Paths

__all__ = [
    "APPLY_SCOPES",
    "Application",
    "ApplicationNotFound",
    "AppliedKnob",
    "ApplyConflict",
    "ApplyError",
    "NotApplied",
    "Rollback",
    "apply_config",
    "apply_trial",
    "default_catalog",
    "history",
    "rollback",
    "status",
]

State = Literal["applied", "rolled_back", "failed", "applying", "dry_run", "unchanged"]


class ApplyError(NovatuneError, ValueError):
    """A configuration cannot be applied or rolled back; the message says why and what to do (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class ApplyConflict(ApplyError):
    """Refused because of the state of the system, not the request: a knob is held by another run or
    application, or the application was already rolled back / is not applied (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class ApplicationNotFound(NovatuneError, LookupError):
    """No application with that id; the message lists the known ids (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


@dataclass
class AppliedKnob:
    """One knob of an application: ``old`` -> ``new`` (logical values); ``changes`` False when
    it already had the value (nothing written, nothing to roll back). ``live``/``drift``: filled
    by :func:`status` and :func:`rollback`."""

    knob: str
    old: Any
    new: Any
    changes: bool
    scope: str | None = None
    live: Any = None
    drift: bool | None = None
    #: dry run only: why applying this knob would be refused (held by another run or application)
    held_by: str | None = None


@dataclass
class NotApplied:
    """A knob of the configuration that ``apply`` leaves alone because it cannot stay on the host:
    it is bound to a run's workload (``scope`` cgroup or process) or to the VM's size. ``deploy``
    says how to put it in place instead (the systemd drop-in option it becomes, the export command)."""

    knob: str
    value: Any
    scope: str
    deploy: str


@dataclass
class Application:
    """One application of a configuration (or a dry run of it)."""

    id: str
    time: str
    source: str
    state: State
    knobs: list[AppliedKnob] = field(default_factory=list)
    rolled_back_at: str | None = None
    note: str | None = None
    #: knobs of the configuration that were not applied (bound to a run's workload), with how to deploy each
    not_applied: list[NotApplied] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        return [k.knob for k in self.knobs if k.changes]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


@dataclass
class Rollback:
    """What :func:`rollback` did: ``knobs`` restored (``old`` is the value put back, ``live`` the value
    found before), ``forced`` when drifted knobs were restored anyway."""

    id: str
    source: str
    rolled_back_at: str
    knobs: list[AppliedKnob] = field(default_factory=list)
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ helpers
def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _new_id(existing: set[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    while True:
        app_id = f"apply-{stamp}-{secrets.token_hex(2)}"
        if app_id not in existing:
            return app_id


def default_catalog() -> Catalog:
    """The catalog of this machine (root ``/``, the namespace of this process)."""
    return Catalog(SysRoot("/"), KnobContext(instance_types=instance_types()))


@contextmanager
def _locked(paths: Paths) -> Iterator[None]:
    """One apply/rollback at a time on this data directory (across processes)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.home / "tuning.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def _held(knobs: list[str], owner: str) -> Iterator[None]:
    """Machine-wide holds on ``knobs`` while they are written (a study of another data directory
    may be tuning them: then nothing is written)."""
    try:
        holds = KnobHolds(knobs, owner).acquire()
    except KnobHeld as err:
        raise ApplyConflict(f"cannot write now (nothing was changed): {err}") from None
    try:
        yield
    finally:
        holds.release()


def _owners(records: list[dict[str, Any]], run: str) -> list[int]:
    """Live owner pids of ``run`` (writers of its opening records)."""
    pids = {(r.get("owner_pid"), r.get("owner_ctime")) for r in records
            if r.get("run") == run and r.get("event") in OPENING_EVENTS}
    return sorted(int(p) for p, c in pids if same_process(p, c))


def _knob_root(knob: Knob) -> str | None:
    root = getattr(knob, "root", None)
    base = getattr(root, "root", None)
    return str(base) if base is not None else None


def _target(knob: Knob) -> str | None:
    """The journal ``target`` of a file knob (None for others: matched by name)."""
    target = getattr(knob, "target", None) or getattr(knob, "rel", None)
    return target if isinstance(target, str) else None


def _same_target(entry: dict[str, Any], knob: Knob, target: str | None) -> bool:
    recorded, mine = entry.get("root") or None, _knob_root(knob)
    if recorded and mine and os.path.normpath(recorded) != os.path.normpath(mine):
        return False
    return entry.get("knob") == knob.name or (target is not None and entry.get("target") == target)


def _holder(records: list[dict[str, Any]], knob: Knob, target: str | None, apps: dict[str, Application],
            *, exclude: str | None = None, after_seq: int = 0) -> str | None:
    """Who holds ``knob`` (an open journal entry on its target), as a sentence; None when free."""
    kept = Journal.kept_runs(records)
    for e in Journal.open_entries(records):
        run = str(e.get("run"))
        if run == exclude or e["seq"] <= after_seq or not _same_target(e, knob, target):
            continue
        if run in kept:
            app = apps.get(run)
            since = f" (applied {app.time} from {app.source})" if app else ""
            return f"held by application {run}{since}; roll it back first: `novatune rollback {run}`"
        pids = _owners(records, run)
        if pids:
            return f"held by the live run {run!r} (pid {', '.join(map(str, pids))}); wait until it ends"
        return (f"left changed by the dead run {run!r} (not recovered yet); "
                "run `novatune recover` first")
    return None


def _applications(records: list[dict[str, Any]]) -> dict[str, Application]:
    """Every application recorded in the journal, by id, in journal order."""
    apps: dict[str, Application] = {}
    kept = Journal.kept_runs(records)
    ended: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("kind") != "run":
            continue
        run = r.get("run")
        if r.get("event") == "begin" and isinstance(r.get("application"), dict):
            meta = r["application"]
            apps[str(run)] = Application(
                id=str(run), time=_iso(float(r["time"])), source=str(meta.get("source", "")), state="applying",
                knobs=[AppliedKnob(knob=k["knob"], old=k.get("old"), new=k.get("new"), changes=bool(k.get("changes")),
                                   scope=k.get("scope")) for k in meta.get("knobs", [])],
                not_applied=[NotApplied(**k) for k in meta.get("not_applied", [])],
            )
        elif r.get("event") == "end" and run is not None:
            ended[str(run)] = r
    for app_id, app in apps.items():
        end = ended.get(app_id)
        if end is not None and end.get("rolled_back"):
            app.state, app.rolled_back_at = "rolled_back", _iso(float(end["time"]))
            app.note = end.get("note")
        elif app_id in kept:
            app.state = "applied"
        elif end is not None:
            app.state, app.note = "failed", end.get("note")
        elif not _owners(records, app_id):
            app.state, app.note = "failed", "the applying process died before it finished (recover undoes it)"
    return apps


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
    from experiments.export import systemd_options

    values = _values(cfg_or_values)
    study = cfg_or_values.study if isinstance(cfg_or_values, ConfigFile) else None
    cat = catalog if catalog is not None else default_catalog()
    problems: list[str] = []
    rows: list[AppliedKnob] = []
    plan: dict[Knob, Any] = {}
    targets: dict[str, str | None] = {}
    not_applied: list[NotApplied] = []
    unit_options = systemd_options(values)[0]
    for name, value in values.items():
        try:
            knob = cat.get(name)
        except UnknownKnob as err:
            problems.append(str(err))
            continue
        if knob.scope not in APPLY_SCOPES:
            not_applied.append(NotApplied(knob=name, value=value, scope=knob.scope,
                                          deploy=_deploy_hint(knob, value, study, unit_options)))
            continue
        reason = knob.available()
        if reason is not None:
            problems.append(f"{name}: not available here: {reason}")
            continue
        try:
            new = knob.validate(value, assume=values)
            old = knob.read()
        except OutOfBounds as err:
            msg = str(err)
            allowed = _allowed(knob)
            problems.append(msg if allowed in msg else f"{msg} (allowed: {allowed})")
            continue
        except (ActuatorError, OSError) as err:
            problems.append(f"{name}: {err}")
            continue
        targets[name] = _target(knob)
        rows.append(AppliedKnob(knob=name, old=old, new=new, changes=not knob.same(old, new), scope=knob.scope))
        plan[knob] = new
    if not problems and not plan and not_applied:
        problems = [f"{n.knob}={n.value}: not applied to stay: {n.deploy}" for n in not_applied]
        problems.insert(0, f"nothing in {source} can be applied to stay on this host "
                           f"(allowed: knobs of scope {', '.join(APPLY_SCOPES)}); deploy these instead:")
    if problems:
        raise ApplyError("cannot apply (nothing was changed):\n" + "\n".join(f"  - {p}" for p in problems))
    now = time.time()
    if dry_run:  # reads the journal (if any) to say what would be refused; writes nothing
        records = Journal(paths.journal).records()
        apps = _applications(records)
        for knob in plan:
            row = next(r for r in rows if r.knob == knob.name)
            if row.changes:
                row.held_by = _holder(records, knob, targets[knob.name], apps)
        held = [r.knob for r in rows if r.held_by]
        note = "dry run: nothing was written" + (f"; applying would be refused: {', '.join(held)} held" if held else "")
        return Application(id="(dry run)", time=_iso(now), source=source, state="dry_run", knobs=rows, note=note,
                           not_applied=not_applied)
    journal = Journal(paths.journal)
    with _locked(paths), _held([k.name for k in plan], f"novatune apply of {source}"):
        records = journal.records()
        apps = _applications(records)
        held = []
        for knob in plan:
            row = next(r for r in rows if r.knob == knob.name)
            why = _holder(records, knob, targets[knob.name], apps)
            if why is not None and row.changes:
                held.append(f"{knob.name}: {why}")
        if held:
            raise ApplyConflict("cannot apply (nothing was changed):\n" + "\n".join(f"  - {h}" for h in held))
        existing = {str(r.get("run")) for r in records}
        app_id = _new_id(existing)
        if not any(r.changes for r in rows):
            return Application(id=app_id, time=_iso(now), source=source, state="unchanged", knobs=rows,
                               note="every knob already has its value: nothing written, nothing recorded",
                               not_applied=not_applied)
        begin = journal.append({
            "run": app_id, "kind": "run", "event": "begin",
            "application": {"source": source, "knobs": [asdict(r) for r in rows],
                            "not_applied": [asdict(n) for n in not_applied]},
        })
        session = ChangeSession(journal, run_id=app_id, trial=None)
        try:
            session.apply_many({k: v for k, v in plan.items()})
            bad = [f"{k.name}: reads back as {k.read()!r}, expected {v!r}" for k, v in plan.items() if not k.verify(v)]
            if bad:
                raise ActuatorError("after applying, " + "; ".join(bad))
            journal.append({"run": app_id, "kind": "run", "event": KEPT_EVENT, "source": source})
        except BaseException as err:
            failures = session.restore_all()
            note = f"apply failed: {err}"
            try:
                journal.end(app_id, note=note)
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
        return Application(id=app_id, time=_iso(float(begin["time"])), source=source, state="applied", knobs=rows,
                           not_applied=not_applied)


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
        experiments.store.StudyNotFound, experiments.export.ExportError, ApplyError.
    """
    from experiments.export import render
    from experiments.store import StudyNotFound, load_view

    if not paths.optuna_db.exists():
        raise StudyNotFound(f"no study named {study_name!r}; no studies yet in {paths.home}")
    doc = json.loads(render(load_view(paths.optuna_url, study_name), "json", trial=trial))
    cfg = ConfigFile(source=f"study {study_name} trial {doc['trial']}", kind="config", values=dict(doc["knobs"]),
                     study=study_name)
    return apply_config(cfg, paths=paths, dry_run=dry_run, source=cfg.source, catalog=catalog)


# ----------------------------------------------------------------- rollback
def _find(apps: dict[str, Application], app_id: str | None) -> Application:
    if app_id is None:
        active = [a for a in apps.values() if a.state == "applied"]
        if not active:
            known = ", ".join(apps) or "none"
            raise ApplicationNotFound(f"no active application to roll back (known applications: {known})")
        return active[-1]
    if app_id not in apps:
        known = ", ".join(reversed(list(apps))) or "none yet"
        raise ApplicationNotFound(f"no application {app_id!r}; known: {known}")
    return apps[app_id]


def _rollback_rows(
    records: list[dict[str, Any]], app: Application, apps: dict[str, Application], cat: Catalog
) -> tuple[list[tuple[KnobIntent, AppliedKnob]], list[str], list[str]]:
    """The application's open intents, newest first, each with its row; what drifted; what is held by others.

    Raises:
        ApplyError: a knob is unknown here, or was applied under another root than the catalog's.
    """
    intents = sorted(JournalView(records).open_intents(app.id), key=lambda e: e.seq, reverse=True)
    drift: list[str] = []
    held: list[str] = []
    todo: list[tuple[KnobIntent, AppliedKnob]] = []
    by_name = {k.knob: k for k in app.knobs}
    for e in intents:
        name = str(e.knob)
        try:
            knob = cat.get(name)
        except UnknownKnob as err:
            raise ApplyError(f"{app.id}: {name}: {err}") from None
        mine = _knob_root(knob)
        if e.root and mine and os.path.normpath(e.root) != os.path.normpath(mine):
            raise ApplyError(f"{app.id}: {name} was applied under root {e.root}, this catalog acts on {mine}")
        why = _holder(records, knob, e.target, apps, exclude=app.id, after_seq=e.seq)
        if why is not None:
            held.append(f"{name}: {why}")
        try:
            live = knob.read()
        except (ActuatorError, OSError) as err:
            live = None
            drift.append(f"{name}: cannot read ({err})")
        else:
            if not knob.same(live, e.value):
                drift.append(f"{name}: is {live!r} now, applied {e.value!r}")
        row = by_name.get(name) or AppliedKnob(knob=name, old=None, new=e.value, changes=True)
        row = AppliedKnob(knob=name, old=row.old, new=row.new, changes=True, scope=e.scope, live=live,
                          drift=not (live is not None and knob.same(live, e.value)))
        todo.append((e, row))
    return todo, drift, held


def _restore_rows(
    journal: Journal, todo: list[tuple[KnobIntent, AppliedKnob]], root: SysRoot
) -> tuple[list[AppliedKnob], list[str]]:
    """Restore each intent from its record (the one restore path), each isolated: the rows restored, the failures."""
    rows: list[AppliedKnob] = []
    failures: list[str] = []
    for e, row in todo:
        try:
            restore_intent(e, root)
        except (ActuatorError, OSError, Skipped) as err:
            failures.append(f"{row.knob}: {err}")
            try:
                journal.close_entry(e, "restore_failed", error=str(err))
            except ActuatorError:
                pass
            continue
        journal.close_entry(e, "restored")
        rows.append(row)
    return rows, failures


def rollback(id: str | None = None, *, paths: Paths, force: bool = False,
             catalog: Catalog | None = None) -> Rollback:
    """Restore the values an application replaced (``None``: the latest active one) and close its entries.

    Knobs are restored newest change first, each isolated, from the journal records
    (:func:`actuators.restore.restore_intent`, as ``recover`` and a session restore them).

    Raises:
        ApplicationNotFound: no such id (the known ids listed), or no active application.
        ApplyConflict: already rolled back (when), not applied (failed), or a knob
            is now held by a live run.
        ApplyError: a knob drifted since it was applied (current vs applied;
            ``force`` restores anyway), or a restore failed (the others are done;
            retry rolls back what is left).
    """
    cat = catalog if catalog is not None else default_catalog()
    journal = Journal(paths.journal)
    with _locked(paths), ExitStack() as stack:
        records = journal.records()
        apps = _applications(records)
        app = _find(apps, id)
        stack.enter_context(_held([k.knob for k in app.knobs], f"novatune rollback of {app.id}"))
        if app.state == "rolled_back":
            raise ApplyConflict(f"application {app.id} was already rolled back at {app.rolled_back_at}")
        if app.state != "applied":
            raise ApplyConflict(f"application {app.id} is {app.state}, not applied ({app.note}); "
                             "nothing to roll back (`novatune recover` undoes an interrupted apply)")
        todo, drift, held = _rollback_rows(records, app, apps, cat)
        if held:
            raise ApplyConflict(f"cannot roll back {app.id} (nothing was changed):\n"
                                + "\n".join(f"  - {h}" for h in held))
        if drift and not force:
            raise ApplyError(
                f"cannot roll back {app.id}: changed since it was applied (nothing was changed):\n"
                + "\n".join(f"  - {d}" for d in drift)
                + "\nrestore the values from before the application anyway with --force"
            )
        rows, failures = _restore_rows(journal, todo, cat.root)
        if failures:
            raise ApplyError(f"rollback of {app.id} incomplete (the other knobs were restored; retry "
                             f"`novatune rollback {app.id}`):\n" + "\n".join(f"  - {f}" for f in failures))
        note = "rolled back (forced over drift)" if drift else "rolled back"
        end = journal.append({"run": app.id, "kind": "run", "event": "end", "note": note, "rolled_back": True,
                              "forced": bool(drift)})
        return Rollback(id=app.id, source=app.source, rolled_back_at=_iso(float(end["time"])), knobs=rows,
                        forced=bool(drift))


# ---------------------------------------------------------- history, status
def history(paths: Paths) -> list[Application]:
    """Every application recorded in the journal, newest first (dry runs are not recorded)."""
    return list(reversed(list(_applications(Journal(paths.journal).records()).values())))


def status(paths: Paths, *, catalog: Catalog | None = None) -> dict[str, Any]:
    """The active applications and, per knob, the live value and whether it drifted from the applied one.

    Returns:
        ``{"active": [application dict with knobs' live/drift], "drift": ["app-id: knob", ...]}``
    """
    cat = catalog if catalog is not None else default_catalog()
    records = Journal(paths.journal).records()
    active: list[dict[str, Any]] = []
    drift: list[str] = []
    for app in reversed(list(_applications(records).values())):
        if app.state != "applied":
            continue
        for k in app.knobs:
            try:
                knob = cat.get(k.knob)
                k.live = knob.read()
                k.drift = not knob.same(k.live, k.new)
            except (ActuatorError, OSError):
                k.live, k.drift = None, True
            if k.drift:
                drift.append(f"{app.id}: {k.knob}")
        active.append(app.as_dict())
    return {"active": active, "drift": drift}
