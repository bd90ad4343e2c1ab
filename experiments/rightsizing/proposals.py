"""Right-sizing proposals and their approval history (``Paths.rightsizing_db``, SQLite in WAL mode).

A :class:`Proposal` is one recommendation for one running target, with the knob values that would put it in
place (``rightsize.cpu_cores``, ``rightsize.memory_gib``, optionally ``rightsize.cpuset_cpus``), the offers /
purchase plan it was priced with (opaque here), its state and every step of its history (who, when, a note).
The states and the only moves between them (:data:`TRANSITIONS`)::

    proposed -> approved -> applied -> validated | rolled_back
    proposed | approved -> rejected
    applied | validated -> rolled_back            (a manual rollback)

Any other move is :class:`InvalidTransition` (HTTP 409; the message lists the allowed next states), an unknown
id :class:`UnknownProposal` (404). A move is checked and recorded in one ``BEGIN IMMEDIATE`` transaction, so two
processes cannot both move the same proposal out of one state.

The database file lives in novatune's private data directory: the directory is checked (and created 0700) by
:func:`experiments.safefs.private_dir`; the database and its WAL files must be regular files of this user with
one link each (a symlink, a device or a hard link is refused, never opened), created ``O_EXCL | O_NOFOLLOW``
0600. Each call gets a fresh connection, closed after it (safe across threads and processes).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actuators.cgroup import VCPUS_FLOOR
from actuators.sizing import MEMORY_FLOOR_GIB
from collectors.errors import NovatuneError
from collectors.sqlitefile import SqliteFile
from experiments.safefs import private_dir

__all__ = [
    "KNOBS",
    "PROPOSAL_ID_RE",
    "STATES",
    "TRANSITIONS",
    "HistoryStep",
    "InvalidTransition",
    "Proposal",
    "ProposalError",
    "ProposalStore",
    "UnknownProposal",
    "UnsafeProposalStore",
    "check_values",
    "values_from_recommendation",
]

STATES = ("proposed", "approved", "applied", "validated", "rolled_back", "rejected")
#: state -> the states it may move to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "proposed": ("approved", "rejected"),
    "approved": ("applied", "rejected"),
    "applied": ("validated", "rolled_back"),
    "validated": ("rolled_back",),
    "rolled_back": (),
    "rejected": (),
}
#: a proposal's id, as :meth:`ProposalStore.create` makes it (``rs-YYYYmmdd-HHMMSS-xxxxxx``)
PROPOSAL_ID_RE = r"^rs-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$"
#: the knobs a proposal may carry
KNOBS = ("rightsize.cpu_cores", "rightsize.memory_gib", "rightsize.cpuset_cpus")
SCHEMA_VERSION = 1
_MAX_WHO = 200
_MAX_NOTE = 4000
_MAX_JSON = 1 << 20
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS proposals (
        id TEXT PRIMARY KEY, target TEXT NOT NULL, profile TEXT NOT NULL, created TEXT NOT NULL,
        recommendation TEXT NOT NULL, knob_values TEXT NOT NULL, plan TEXT NOT NULL,
        state TEXT NOT NULL, application TEXT, updated REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS proposals_target ON proposals (target, created)",
    "CREATE INDEX IF NOT EXISTS proposals_state ON proposals (state, created)",
    """CREATE TABLE IF NOT EXISTS history (
        proposal_id TEXT NOT NULL REFERENCES proposals (id) ON DELETE CASCADE, seq INTEGER NOT NULL,
        state TEXT NOT NULL, who TEXT NOT NULL, at TEXT NOT NULL, note TEXT,
        PRIMARY KEY (proposal_id, seq)) WITHOUT ROWID""",
)


class ProposalError(NovatuneError, ValueError):
    """A proposal's fields are not acceptable (a value, a knob, a name, a filter); the message says what is
    allowed (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class InvalidTransition(NovatuneError):
    """A move the workflow does not allow from the proposal's current state; the message lists the allowed next
    states (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class UnknownProposal(NovatuneError, LookupError):
    """No proposal with that id (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class UnsafeProposalStore(NovatuneError):
    """The proposal database is not novatune's private file (a symlink, a hard link, another owner), is damaged,
    or has a newer schema; the message names it and what to do (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


def now_iso(t: float | None = None) -> str:
    """``t`` (default now) as ISO 8601 UTC with microseconds (history steps sort by it)."""
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class HistoryStep:
    """One step of a proposal's history: the state it entered, who moved it, when (ISO 8601 UTC), why."""

    state: str
    who: str
    at: str
    note: str | None = None


@dataclass(frozen=True)
class Proposal:
    """One right-sizing proposal (see the module doc). ``values``: knob -> value to apply; ``recommendation``:
    :meth:`optimizer.rightsizing.model.Recommendation.to_dict`; ``plan``: offers / purchase plan (opaque);
    ``application``: the journal's application id once applied (``novatune rollback ID``)."""

    id: str
    target: str
    profile: str
    created: str
    recommendation: dict[str, Any]
    values: dict[str, Any]
    plan: dict[str, Any]
    state: str
    application: str | None = None
    history: list[HistoryStep] = field(default_factory=list)

    @property
    def allowed_next(self) -> tuple[str, ...]:
        """The states this proposal may move to now."""
        return TRANSITIONS.get(self.state, ())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the faces' view), with ``allowed_next``."""
        return {**asdict(self), "allowed_next": list(self.allowed_next)}


# ------------------------------------------------------------------ checks
def _text(what: str, value: Any, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ProposalError(f"{what} must be a non-empty text of at most {limit} characters, got {value!r:.80}")
    if any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in value):
        raise ProposalError(f"{what} holds control characters: {value!r:.80}")
    return value


def _json(what: str, value: Any) -> str:
    if not isinstance(value, Mapping):
        raise ProposalError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ProposalError(f"{what} is not plain JSON data (finite numbers, text, lists, mappings): {err}") from None
    if len(text) > _MAX_JSON:
        raise ProposalError(f"{what} is {len(text)} bytes as JSON; at most {_MAX_JSON}")
    return text


def check_values(values: Any) -> dict[str, Any]:
    """The knob values of a proposal: ``rightsize.cpu_cores`` and ``rightsize.memory_gib`` (finite numbers > 0),
    optionally ``rightsize.cpuset_cpus`` (a CPU list text). Their hard bounds are checked against the target when
    it is applied (:func:`experiments.rightsizing.workflow.apply`).

    Raises:
        ProposalError: anything else (what is allowed in the message).
    """
    if not isinstance(values, Mapping) or not values:
        raise ProposalError(f"values must map knobs to values; allowed knobs: {', '.join(KNOBS)}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in KNOBS:
            raise ProposalError(f"{name!r} is not a right-sizing knob; allowed: {', '.join(KNOBS)}")
        if name == "rightsize.cpuset_cpus":
            out[name] = _text(name, value, 256)
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if not ok:
            raise ProposalError(f"{name}: {value!r} is not a finite number > 0")
        out[name] = float(value)
    return out


def values_from_recommendation(recommendation: Mapping[str, Any], *, cpuset_cpus: str | None = None) -> dict[str, Any]:
    """The knob values that put a recommendation (:meth:`Recommendation.to_dict`) in place: its CPU target in
    cores (rounded up to 0.01, at least the quota floor 0.05) and memory target in GiB (rounded up to a MiB, at
    least 64 MiB), optionally a cpuset.

    Raises:
        ProposalError: the recommendation has insufficient data (how many more hours it needs) or no sizes.
    """
    if recommendation.get("finding") == "insufficient-data":
        raise ProposalError(f"{recommendation.get('target')}: insufficient data to propose a size; needs "
                            f"{recommendation.get('needs_hours', '?')} more hours of history")
    try:
        cpu = float(recommendation["cpu"]["target"])
        mem = float(recommendation["memory"]["target"])
    except (KeyError, TypeError, ValueError):
        raise ProposalError("the recommendation has no cpu.target / memory.target sizes") from None
    # never below the knobs' hard floors (an idle target's recommendation can be smaller than a quota may be)
    values: dict[str, Any] = {"rightsize.cpu_cores": max(VCPUS_FLOOR, math.ceil(cpu * 100 - 1e-9) / 100),
                              "rightsize.memory_gib": max(MEMORY_FLOOR_GIB, math.ceil(mem * 1024 - 1e-9) / 1024)}
    if cpuset_cpus is not None:
        values["rightsize.cpuset_cpus"] = cpuset_cpus
    return check_values(values)


# ------------------------------------------------------------------ the store
class ProposalStore:
    """The proposals in the SQLite database ``path`` (``Paths.rightsizing_db``), made safe and current on
    construction.

    Raises:
        UnsafeProposalStore: the directory or a database file breaks the rule of the module doc, the file is not
            a database, or it has a newer schema.
        UnsafeLocation: the directory is another user's or writable by others.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        given = Path(path)
        directory = private_dir(given.parent, what="the right-sizing store's directory", create=True)
        self.path = directory / given.name
        self.busy_timeout_s = busy_timeout_s
        # FULL: an approval or an applied change, once answered, survives a power loss
        self._db = SqliteFile(self.path, what="right-sizing store", schema=_SCHEMA, version=SCHEMA_VERSION,
                              unsafe=UnsafeProposalStore, busy_timeout_s=busy_timeout_s, synchronous="FULL")

    # -------------------------------------------------------------- reading
    @staticmethod
    def _history(conn: sqlite3.Connection, pid: str) -> list[HistoryStep]:
        rows = conn.execute("SELECT state, who, at, note FROM history WHERE proposal_id = ? ORDER BY seq", (pid,))
        return [HistoryStep(r["state"], r["who"], r["at"], r["note"]) for r in rows]

    def _proposal(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Proposal:
        return Proposal(
            id=row["id"], target=row["target"], profile=row["profile"], created=row["created"],
            recommendation=json.loads(row["recommendation"]), values=json.loads(row["knob_values"]),
            plan=json.loads(row["plan"]), state=row["state"], application=row["application"],
            history=self._history(conn, row["id"]),
        )

    def _row(self, conn: sqlite3.Connection, id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM proposals WHERE id = ?", (id,)).fetchone() if isinstance(id, str) else None
        if row is None:
            raise UnknownProposal(f"no right-sizing proposal {id!r:.80}; list them with `novatune rightsize list`")
        return row

    def get(self, id: str) -> Proposal:
        """The proposal ``id`` with its history.

        Raises:
            UnknownProposal: no such id.
        """
        with self._db.connect() as conn:
            return self._proposal(conn, self._row(conn, id))

    def list(self, state: str | None = None, target: str | None = None) -> list[Proposal]:
        """Proposals, newest first, optionally of one ``state`` and/or one ``target``.

        Raises:
            ProposalError: ``state`` is not one of :data:`STATES`.
        """
        if state is not None and state not in STATES:
            raise ProposalError(f"unknown proposal state {state!r}; allowed: {', '.join(STATES)}")
        where, args = [], []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if target is not None:
            where.append("target = ?")
            args.append(target)
        sql = "SELECT * FROM proposals" + (" WHERE " + " AND ".join(where) if where else "")
        with self._db.connect() as conn:
            rows = conn.execute(sql + " ORDER BY created DESC, id DESC", args).fetchall()
            return [self._proposal(conn, r) for r in rows]

    # -------------------------------------------------------------- writing
    def create(
        self,
        *,
        target: str,
        profile: str,
        recommendation: Mapping[str, Any],
        values: Mapping[str, Any],
        plan: Mapping[str, Any] | None = None,
        who: str = "novatune",
        note: str | None = None,
    ) -> Proposal:
        """Record a new proposal in state ``proposed`` (its first history step).

        Raises:
            ProposalError: a field is not acceptable (see :func:`check_values`; texts non-empty, without control
                characters; recommendation and plan plain JSON mappings).
        """
        _text("target", target, 512)
        _text("profile", profile, 64)
        _text("who", who, _MAX_WHO)
        _text("note", note, _MAX_NOTE, optional=True)
        knob_values = json.dumps(check_values(values), sort_keys=True)
        rec, pl = _json("recommendation", recommendation), _json("plan", plan or {})
        created = now_iso()
        pid = f"rs-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        with self._db.writing() as conn:
            conn.execute("INSERT INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?, 'proposed', NULL, ?)",
                         (pid, target, profile, created, rec, knob_values, pl, time.time()))
            conn.execute("INSERT INTO history VALUES (?, 0, 'proposed', ?, ?, ?)", (pid, who, created, note))
        return self.get(pid)

    def transition(self, id: str, to: str, *, who: str, note: str | None = None,
                   application: str | None = None) -> Proposal:
        """Move proposal ``id`` to state ``to`` and record who/when/why (``application``: the journal's
        application id, set when it is applied).

        Raises:
            UnknownProposal: no such id.
            InvalidTransition: ``to`` is not an allowed next state of the current one (they are listed).
            ProposalError: ``to`` is no state at all, or ``who`` / ``note`` are not acceptable.
        """
        if to not in STATES:
            raise ProposalError(f"unknown proposal state {to!r}; allowed: {', '.join(STATES)}")
        _text("who", who, _MAX_WHO)
        _text("note", note, _MAX_NOTE, optional=True)
        with self._db.writing() as conn:
            row = self._row(conn, id)
            allowed = TRANSITIONS[row["state"]]
            if to not in allowed:
                nxt = ", ".join(allowed) or "none (a final state)"
                raise InvalidTransition(f"proposal {id} is {row['state']}: it cannot become {to}; "
                                        f"allowed next: {nxt}")
            seq = conn.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM history WHERE proposal_id = ?",
                               (id,)).fetchone()[0]
            conn.execute("UPDATE proposals SET state = ?, application = COALESCE(?, application), updated = ? "
                         "WHERE id = ?", (to, application, time.time(), id))
            conn.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", (id, seq, to, who, now_iso(), note))
        return self.get(id)

    def check_transition(self, id: str, to: str) -> Proposal:
        """The proposal ``id``, if it may move to ``to`` now (nothing recorded).

        Raises:
            UnknownProposal, InvalidTransition: as :meth:`transition`.
        """
        p = self.get(id)
        if to not in p.allowed_next:
            nxt = ", ".join(p.allowed_next) or "none (a final state)"
            raise InvalidTransition(f"proposal {id} is {p.state}: it cannot become {to}; allowed next: {nxt}")
        return p
