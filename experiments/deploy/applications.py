"""Applications: configurations applied *to stay*, as the journal records them (``paths.journal``).

* ``begin`` (``kind: run``) with an ``application`` field: id, source, and per
  knob the logical old -> new values (and the knobs not applied); written before any change;
* the ordinary ``intent`` (old value, fsynced) / ``applied`` records of
  :class:`actuators.ChangeSession`, one per knob that changes;
* ``kept`` (:data:`actuators.journal.KEPT_EVENT`): written once every knob was
  written and read back. From then on the intents stay open on purpose and
  :func:`actuators.recover` leaves the run alone. A process that dies before
  this record leaves an ordinary dead run: ``recover`` undoes it;
* ``end`` with ``rolled_back: true`` after a rollback restored (and closed) every entry.

This module reads that history (:func:`history`, :func:`status`), says who holds a knob, and owns what
:mod:`.apply` and :mod:`.rollback` share: the errors, the records, the locks.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from actuators import (
    ActuatorError,
    Catalog,
    Journal,
    Knob,
    KnobContext,
    SysRoot,
)
from actuators.journal import OPENING_EVENTS, same_process
from actuators.registry import REGISTRY
from collectors.errors import NovatuneError
from experiments.deploy.plan import instance_types
from experiments.holds import KnobHeld, KnobHolds
from experiments.settings import Paths, Settings

__all__ = ["APPLICATION_ID_RE", "Application", "ApplicationNotFound", "AppliedKnob", "ApplyConflict", "ApplyError",
           "NotApplied", "bound_knob", "default_catalog", "history", "status"]

#: an id ``rollback`` takes: an application's (``apply-...``) or a continuous tuner's step (``at-...-sN``)
APPLICATION_ID_RE = r"^[A-Za-z0-9_.:-]{1,80}$"

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
    #: the file it writes, for a knob bound to a running target (``rightsize.*``): how it is bound back
    target: str | None = None


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
    #: the running target it was applied to (``cgroup:/PATH``), for ``rightsize.*`` applications
    target: str | None = None

    @property
    def changed(self) -> list[str]:
        return [k.knob for k in self.knobs if k.changes]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


# ------------------------------------------------------------------ helpers
def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def new_id(existing: set[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    while True:
        app_id = f"apply-{stamp}-{secrets.token_hex(2)}"
        if app_id not in existing:
            return app_id


def default_catalog(*, protect: bool = True) -> Catalog:
    """The catalog of this machine (root ``/``, the namespace of this process), refusing the knobs of the
    settings' protected interfaces; ``protect=False`` for reading what was applied and putting it back
    (status, rollback), which a protected interface must never prevent.

    Raises:
        SettingsError: the settings are invalid.
    """
    protected = tuple(Settings.load().protected_interfaces) if protect else ()
    return Catalog(SysRoot("/"), KnobContext(instance_types=instance_types(), protected_interfaces=protected))


@contextmanager
def locked(paths: Paths) -> Iterator[None]:
    """One apply/rollback at a time on this data directory (across processes)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.home / "tuning.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def holding(knobs: list[str], owner: str) -> Iterator[None]:
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


def owners(records: list[dict[str, Any]], run: str) -> list[int]:
    """Live owner pids of ``run`` (writers of its opening records)."""
    pids = {(r.get("owner_pid"), r.get("owner_ctime")) for r in records
            if r.get("run") == run and r.get("event") in OPENING_EVENTS}
    return sorted(int(p) for p, c in pids if p is not None and same_process(p, c))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def same_target(entry: dict[str, Any], knob: Knob, target: str | None) -> bool:
    """Whether a journal entry is about the same setting as ``knob`` (writing ``target``): the same name, or the
    same file; for a family whose one name acts on a different file per target (``rightsize.*``), the same file."""
    recorded, mine = entry.get("root") or None, knob.journal_root
    if recorded and mine and os.path.normpath(recorded) != os.path.normpath(mine):
        return False
    same_file = target is not None and entry.get("target") == target
    family = REGISTRY.family_of(knob.name)
    if family is not None and family.bound_by_target:
        return same_file
    return entry.get("knob") == knob.name or same_file


def bound_knob(cat: Catalog, name: str, target: Any) -> Knob:
    """The knob ``name`` of ``cat``; for a family bound to a running target (``rightsize.*``), bound to the cgroup
    of the file ``target`` a journal record names.

    Raises:
        UnknownKnob: no such knob here.
        UnsafePath: ``target`` is not a file of the family (a record :func:`actuators.vetting.vet_intent` refuses).
    """
    family = REGISTRY.family_of(name)
    if family is not None and family.bound_by_target and isinstance(target, str):
        context = family.context_of(cat.root, target)
        if context is not None:
            return Catalog(cat.root, context).get(name)
    return cat.get(name)


def holder(records: list[dict[str, Any]], knob: Knob, target: str | None, apps: dict[str, Application],
            *, exclude: str | None = None, after_seq: int = 0) -> str | None:
    """Who holds ``knob`` (an open journal entry on its target), as a sentence; None when free."""
    kept = Journal.kept_runs(records)
    for e in Journal.open_entries(records):
        run = str(e.get("run"))
        if run == exclude or e["seq"] <= after_seq or not same_target(e, knob, target):
            continue
        if run in kept:
            app = apps.get(run)
            since = f" (applied {app.time} from {app.source})" if app else ""
            return f"held by application {run}{since}; roll it back first: `novatune rollback {run}`"
        pids = owners(records, run)
        if pids:
            return f"held by the live run {run!r} (pid {', '.join(map(str, pids))}); wait until it ends"
        return (f"left changed by the dead run {run!r} (not recovered yet); "
                "run `novatune recover` first")
    return None


def read_applications(records: list[dict[str, Any]]) -> dict[str, Application]:
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
                id=str(run), time=iso(float(r["time"])), source=str(meta.get("source", "")), state="applying",
                knobs=[AppliedKnob(knob=k["knob"], old=k.get("old"), new=k.get("new"), changes=bool(k.get("changes")),
                                   scope=k.get("scope"), target=_str_or_none(k.get("target")))
                       for k in meta.get("knobs", [])],
                not_applied=[NotApplied(**k) for k in meta.get("not_applied", [])],
                target=_str_or_none(meta.get("target")),
            )
        elif r.get("event") == "end" and run is not None:
            ended[str(run)] = r
    for app_id, app in apps.items():
        end = ended.get(app_id)
        if end is not None and end.get("rolled_back"):
            app.state, app.rolled_back_at = "rolled_back", iso(float(end["time"]))
            app.note = end.get("note")
        elif app_id in kept:
            app.state = "applied"
        elif end is not None:
            app.state, app.note = "failed", end.get("note")
        elif not owners(records, app_id):
            app.state, app.note = "failed", "the applying process died before it finished (recover undoes it)"
    return apps


# ---------------------------------------------------------- history, status
def history(paths: Paths) -> list[Application]:
    """Every application recorded in the journal, newest first (dry runs are not recorded)."""
    return list(reversed(list(read_applications(Journal(paths.journal).records()).values())))


def status(paths: Paths, *, catalog: Catalog | None = None) -> dict[str, Any]:
    """The active applications and, per knob, the live value and whether it drifted from the applied one.

    Returns:
        ``{"active": [application dict with knobs' live/drift], "drift": ["app-id: knob", ...]}``
    """
    cat = catalog if catalog is not None else default_catalog(protect=False)
    records = Journal(paths.journal).records()
    active: list[dict[str, Any]] = []
    drift: list[str] = []
    for app in reversed(list(read_applications(records).values())):
        if app.state != "applied":
            continue
        for k in app.knobs:
            try:
                knob = bound_knob(cat, k.knob, k.target)
                k.live = knob.read()
                k.drift = not knob.same(k.live, k.new)
            except (ActuatorError, OSError):
                k.live, k.drift = None, True
            if k.drift:
                drift.append(f"{app.id}: {k.knob}")
        active.append(app.as_dict())
    return {"active": active, "drift": drift}
