"""Undo an application (``novatune rollback``, ``POST /tuning/rollback/{id}``): the values it replaced are
restored byte for byte, newest change first, each isolated; refused when a knob drifted since it was
applied, unless ``force``. Every journal record is first checked as a fresh apply would be
(:func:`actuators.vetting.vet_intent`, the check the restore path itself makes): a record that names
another file than its knob's, a value outside the knob's bounds, or no knob at all refuses the
rollback (nothing changed); with ``force`` the valid records are restored and the refused ones
reported (``Rollback.refused``) and closed, never written.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from actuators import (
    ActuatorError,
    Catalog,
    Journal,
    SysRoot,
)
from actuators.errors import UnknownKnob, UnsafePath
from actuators.records import REFUSED_EVENT, JournalView, KnobIntent
from actuators.restore import Skipped, restore_intent
from actuators.vetting import Refused, vet_intent
from experiments.deploy.applications import (
    Application,
    ApplicationNotFound,
    AppliedKnob,
    ApplyConflict,
    ApplyError,
    bound_knob,
    default_catalog,
    holder,
    holding,
    iso,
    locked,
    read_applications,
)
from experiments.settings import Paths

__all__ = ["Rollback", "rollback"]


@dataclass
class Rollback:
    """What :func:`rollback` did: ``knobs`` restored (``old`` is the value put back, ``live`` the value
    found before), ``forced`` when drifted knobs were restored anyway, ``refused`` the journal records
    skipped with ``force`` because they named something novatune would not write (record and why)."""

    id: str
    source: str
    rolled_back_at: str
    knobs: list[AppliedKnob] = field(default_factory=list)
    forced: bool = False
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _vetted(intents: list[KnobIntent], app: Application, root: SysRoot) -> tuple[list[KnobIntent], dict[int, str]]:
    """The intents that pass the restore path's check, and the refused ones (seq -> why).

    Raises:
        ApplyError: a record was made under another root than the catalog's.
    """
    ok: list[KnobIntent] = []
    refused: dict[int, str] = {}
    for e in intents:
        try:
            vet_intent(e, root)
        except Refused as why:
            refused[e.seq] = str(why)
            continue
        except Skipped as why:
            raise ApplyError(f"{app.id}: {e.knob}: {why}") from None
        except ActuatorError as err:  # cannot be checked now (a read failed): nothing is changed
            raise ApplyError(f"{app.id}: {err}") from None
        ok.append(e)
    return ok, refused


def _rollback_rows(
    records: list[dict[str, Any]], app: Application, apps: dict[str, Application], cat: Catalog
) -> tuple[list[tuple[KnobIntent, AppliedKnob]], list[str], list[str], dict[int, str]]:
    """The application's open intents, newest first, each with its row; what drifted; what is held by
    others; the records refused (seq -> why).

    Raises:
        ApplyError: a knob is unknown here, or was applied under another root than the catalog's.
    """
    intents = sorted(JournalView(records).open_intents(app.id), key=lambda e: e.seq, reverse=True)
    intents, refused = _vetted(intents, app, cat.root)
    drift: list[str] = []
    held: list[str] = []
    todo: list[tuple[KnobIntent, AppliedKnob]] = []
    by_name = {k.knob: k for k in app.knobs}
    for e in intents:
        name = str(e.knob)
        try:
            knob = bound_knob(cat, name, e.target)
        except (UnknownKnob, UnsafePath) as err:
            raise ApplyError(f"{app.id}: {name}: {err}") from None
        mine = knob.journal_root
        if e.root and mine and os.path.normpath(e.root) != os.path.normpath(mine):
            raise ApplyError(f"{app.id}: {name} was applied under root {e.root}, this catalog acts on {mine}")
        why = holder(records, knob, e.target, apps, exclude=app.id, after_seq=e.seq)
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
    return todo, drift, held, refused


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
            ``force`` restores anyway), a journal record of the application names
            something novatune would not write (``force`` skips it; it is never
            written), or a restore failed (the others are done; retry rolls back
            what is left).
    """
    cat = catalog if catalog is not None else default_catalog(protect=False)  # putting back is never refused
    journal = Journal(paths.journal)
    with locked(paths), ExitStack() as stack:
        records = journal.records()
        apps = read_applications(records)
        app = _find(apps, id)
        stack.enter_context(holding([k.knob for k in app.knobs], f"novatune rollback of {app.id}"))
        if app.state == "rolled_back":
            raise ApplyConflict(f"application {app.id} was already rolled back at {app.rolled_back_at}")
        if app.state != "applied":
            raise ApplyConflict(f"application {app.id} is {app.state}, not applied ({app.note}); "
                             "nothing to roll back (`novatune recover` undoes an interrupted apply)")
        todo, drift, held, refused = _rollback_rows(records, app, apps, cat)
        if refused and not force:
            raise ApplyError(
                f"cannot roll back {app.id}: {len(refused)} journal record(s) name something novatune would not "
                "write (nothing was changed):\n" + "\n".join(f"  - {why}" for why in refused.values())
                + f"\nthe journal {paths.journal} may have been altered; with --force the other records are "
                "restored and these are skipped"
            )
        if held:
            raise ApplyConflict(f"cannot roll back {app.id} (nothing was changed):\n"
                                + "\n".join(f"  - {h}" for h in held))
        if drift and not force:
            raise ApplyError(
                f"cannot roll back {app.id}: changed since it was applied (nothing was changed):\n"
                + "\n".join(f"  - {d}" for d in drift)
                + "\nrestore the values from before the application anyway with --force"
            )
        for e in JournalView(records).open_intents(app.id):
            if e.seq in refused:  # --force: skipped for good, never written
                journal.close_entry(e, REFUSED_EVENT, error=refused[e.seq])
        rows, failures = _restore_rows(journal, todo, cat.root)
        if failures:
            raise ApplyError(f"rollback of {app.id} incomplete (the other knobs were restored; retry "
                             f"`novatune rollback {app.id}`):\n" + "\n".join(f"  - {f}" for f in failures))
        note = "rolled back (forced over drift)" if drift else "rolled back"
        end = journal.append({"run": app.id, "kind": "run", "event": "end", "note": note, "rolled_back": True,
                              "forced": bool(drift)})
        return Rollback(id=app.id, source=app.source, rolled_back_at=iso(float(end["time"])), knobs=rows,
                        forced=bool(drift), refused=list(refused.values()))


