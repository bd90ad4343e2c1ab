"""The fleet's view of every host's state, and the apply and rollback commands routed to a host's agent.

Two tables of the study database, made by alembic revision ``0002_novatune_fleet_state`` beside the host
registry (:mod:`experiments.fleet.hosts`: same engine, same version table, same lock):

* ``novatune_host_state``: what each agent published of its host (:mod:`experiments.fleet.snapshot`): the
  service registry of background studies, the configurations applied to stay, the recommendations, the
  right-sizing proposals, the profiles and the continuous tuners. One row per (host, kind, key), the
  payload JSON, and one row of key ``""`` per kind: when it was published, how many items. A host's own
  files stay the record it acts on (its journal is fsynced on its own disk before any write, and recovery
  must work while the database is away); this is the fleet's copy of them,
  replaced whole, kind by kind, in one transaction, so a reader never sees half of a publication.
* ``novatune_commands``: ``apply``, ``rollback`` and ``rightsize`` (a right-sizing proposal's next step) requests
  for one host (``POST /hosts/{id}/apply``,
  ``novatune fleet apply --host``). Only that host's agent takes them (:meth:`FleetState.take`: one
  conditional update from ``pending`` to ``running``, so two agents of one host id can never both run
  one), runs them through its own journal, and answers (:meth:`FleetState.finish`). A command not taken
  before it expires is never run (``expired``); one whose agent died while running it is ``interrupted``
  when the agent starts again (its journal says what stayed applied, the next publication shows it).

Raises :class:`InvalidCommand` (exit 2, HTTP 422) for an action, arguments or a kind that are not allowed,
:class:`~experiments.fleet.hosts.HostStoreError` (exit 2, HTTP 503) when the database cannot be used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from collectors.errors import NovatuneError
from experiments.fleet.hosts import HostRegistry, HostStoreError, check_host_id

__all__ = ["ACTIONS", "COMMAND_STATES", "KINDS", "Command", "FleetState", "InvalidCommand"]

#: what a host publishes, in the order ``GET /hosts/{id}/state`` shows it
KINDS = ("studies", "applications", "recommendations", "proposals", "profiles", "tuners")
#: what a host's agent can be asked to do
ACTIONS = ("apply", "rollback", "rightsize")
#: ``pending`` -> ``running`` -> ``done`` | ``failed``; ``pending`` -> ``expired``; ``running`` -> ``interrupted``
COMMAND_STATES = ("pending", "running", "done", "failed", "expired", "interrupted")
STATE_TABLE, COMMAND_TABLE = "novatune_host_state", "novatune_commands"
_OF = "the fleet state"
#: the key of the row that records when a kind was published (also when it holds no item); never a real key
_MARK = ""
_MAX_ARGS = 256 * 1024

_METADATA = sa.MetaData()
HOST_STATE = sa.Table(
    STATE_TABLE, _METADATA,
    sa.Column("host_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
COMMANDS = sa.Table(
    COMMAND_TABLE, _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("host_id", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("args", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Column("started", sa.Float, nullable=True),
    sa.Column("finished", sa.Float, nullable=True),
)


class InvalidCommand(NovatuneError, ValueError):
    """A command, its arguments or a published kind that is not allowed; the message says what is
    (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True)
class Command:
    """One request for one host's agent (times in seconds since the epoch)."""

    id: int
    host_id: str
    action: str
    args: dict[str, Any]
    state: str
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    created: float
    expires: float
    started: float | None
    finished: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host_id, "action": self.action, "args": self.args, "state": self.state,
                "result": self.result, "error": self.error, "requested_by": self.requested_by,
                "created": self.created, "expires": self.expires, "started": self.started, "finished": self.finished}


def _command(row: sa.Row[Any]) -> Command:
    m = row._mapping
    return Command(id=m["id"], host_id=m["host_id"], action=m["action"], args=dict(m["args"] or {}),
                   state=m["state"], result=m["result"], error=m["error"], requested_by=m["requested_by"],
                   created=m["created"], expires=m["expires"], started=m["started"], finished=m["finished"])


def _json(value: object, what: str) -> Any:
    try:
        text = json.dumps(value, allow_nan=False, default=str)
    except (TypeError, ValueError) as err:
        raise InvalidCommand(f"{what} must be JSON (strings, numbers, lists, mappings; no NaN): {err}") from None
    if len(text) > _MAX_ARGS:
        raise InvalidCommand(f"{what} is {len(text)} bytes of JSON; at most {_MAX_ARGS} are allowed")
    return json.loads(text)


class FleetState:
    """The two tables in the database of ``registry`` (writable: the registry was opened with
    ``migrate=True``, which made them; read-only: a database without them reads as nothing published and
    no command)."""

    def __init__(self, registry: HostRegistry) -> None:
        self.registry = registry
        self._seen = registry.writable

    def _readable(self) -> bool:
        if not self._seen:
            self._seen = self.registry.has_table(COMMAND_TABLE, of=_OF)
        return self._seen

    def _writable(self, what: str) -> None:
        if not self._readable():
            raise HostStoreError(f"cannot {what}: the study database has no fleet state yet (an agent of this "
                                 "novatune makes it when it starts: `novatune agent --storage URL`)")

    # ------------------------------------------------------------------ published state
    def publish(self, host_id: str, kind: str, items: dict[str, Any]) -> None:
        """Replace what ``host_id`` published of ``kind`` by ``items`` (key -> JSON payload), in one transaction.

        Raises:
            InvalidCommand: an unknown kind, a key longer than 256 characters, a payload that is not JSON.
            HostStoreError: the database cannot be written.
        """
        hid = check_host_id(host_id)
        if kind not in KINDS:
            raise InvalidCommand(f"kind {kind!r} is not published; allowed: {', '.join(KINDS)}")
        rows = []
        now = time.time()
        for key, payload in items.items():
            if not isinstance(key, str) or not 0 < len(key) <= 256:
                raise InvalidCommand(f"{kind} key {key!r} must be 1 to 256 characters")
            rows.append({"host_id": hid, "kind": kind, "key": key, "payload": _json(payload, f"{kind} {key!r}"),
                         "updated": now})
        rows.append({"host_id": hid, "kind": kind, "key": _MARK, "payload": {"items": len(rows)}, "updated": now})
        self._writable("publish a host's state")
        with self.registry.begin("write", of=_OF) as conn:
            conn.execute(sa.delete(HOST_STATE).where(HOST_STATE.c.host_id == hid, HOST_STATE.c.kind == kind))
            conn.execute(sa.insert(HOST_STATE), rows)

    def state(self, host_id: str) -> dict[str, Any]:
        """What ``host_id`` published: ``{kind: [payload, ...] (by key)}`` for every kind, and ``updated``:
        ``{kind: seconds since the epoch}`` of the kinds it published (a kind never published is absent)."""
        hid = check_host_id(host_id)
        out: dict[str, Any] = {kind: [] for kind in KINDS}
        updated: dict[str, float] = {}
        if self._readable():
            with self.registry.begin("read", of=_OF) as conn:
                rows = conn.execute(sa.select(HOST_STATE).where(HOST_STATE.c.host_id == hid)
                                    .order_by(HOST_STATE.c.kind, HOST_STATE.c.key)).all()
            for row in rows:
                m = row._mapping
                if m["kind"] not in out:
                    continue
                if m["key"] == _MARK:
                    updated[m["kind"]] = float(m["updated"])
                else:
                    out[m["kind"]].append(m["payload"])
        out["updated"] = {k: updated[k] for k in KINDS if k in updated}
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """``{host: {kind: rows}}`` of everything published (``GET /hosts`` shows them)."""
        if not self._readable():
            return {}
        with self.registry.begin("read", of=_OF) as conn:
            rows = conn.execute(sa.select(HOST_STATE.c.host_id, HOST_STATE.c.kind, sa.func.count())
                                .where(HOST_STATE.c.key != _MARK)
                                .group_by(HOST_STATE.c.host_id, HOST_STATE.c.kind)).all()
        out: dict[str, dict[str, int]] = {}
        for host, kind, n in rows:
            out.setdefault(host, {})[kind] = int(n)
        return out

    # ------------------------------------------------------------------ commands
    def submit(self, host_id: str, action: str, args: dict[str, Any], *, by: str, ttl_s: float) -> Command:
        """Queue ``action`` for ``host_id``'s agent; it is never run after ``ttl_s`` seconds from now.

        Raises:
            InvalidCommand: an unknown action, arguments that are not a JSON object, a ttl not in (0, 86400].
            HostStoreError: the database cannot be written, or holds no fleet state yet.
        """
        hid = check_host_id(host_id)
        if action not in ACTIONS:
            raise InvalidCommand(f"action {action!r} is not allowed; allowed: {', '.join(ACTIONS)}")
        if not isinstance(args, dict):
            raise InvalidCommand(f"the arguments of {action} must be a JSON object, not {type(args).__name__}")
        if not 0 < ttl_s <= 86400:
            raise InvalidCommand(f"a command's time to live must be > 0 and at most 86400 s, not {ttl_s!r}")
        self._writable("queue a command")
        now = time.time()
        values = {"host_id": hid, "action": action, "args": _json(args, f"the arguments of {action}"),
                  "state": "pending", "requested_by": str(by)[:128], "created": now, "expires": now + ttl_s}
        with self.registry.begin("write", of=_OF) as conn:
            new_id = conn.execute(sa.insert(COMMANDS).values(**values).returning(COMMANDS.c.id)).scalar_one()
        found = self.command(int(new_id))
        assert found is not None
        return found

    def command(self, command_id: int) -> Command | None:
        """The command of that id, or None."""
        if not self._readable():
            return None
        with self.registry.begin("read", of=_OF) as conn:
            row = conn.execute(sa.select(COMMANDS).where(COMMANDS.c.id == command_id)).first()
        return None if row is None else _command(row)

    def commands(self, host_id: str, *, limit: int = 100) -> list[Command]:
        """``host_id``'s commands, newest first."""
        hid = check_host_id(host_id)
        if not self._readable():
            return []
        with self.registry.begin("read", of=_OF) as conn:
            rows = conn.execute(sa.select(COMMANDS).where(COMMANDS.c.host_id == hid)
                                .order_by(COMMANDS.c.id.desc()).limit(limit)).all()
        return [_command(r) for r in rows]

    def take(self, host_id: str) -> Command | None:
        """The oldest pending command of ``host_id``, now ``running`` (taken by this caller alone); the pending
        ones past their expiry are marked ``expired`` on the way and never run."""
        hid = check_host_id(host_id)
        now = time.time()
        with self.registry.begin("write", of=_OF) as conn:
            conn.execute(sa.update(COMMANDS).where(COMMANDS.c.host_id == hid, COMMANDS.c.state == "pending",
                                                   COMMANDS.c.expires < now)
                         .values(state="expired", finished=now,
                                 error="not taken before it expired: the host's agent was away or busy; never run"))
            ids = conn.execute(sa.select(COMMANDS.c.id).where(COMMANDS.c.host_id == hid,
                                                              COMMANDS.c.state == "pending")
                               .order_by(COMMANDS.c.id)).scalars().all()
        for cid in ids:
            with self.registry.begin("write", of=_OF) as conn:
                taken = conn.execute(sa.update(COMMANDS).where(COMMANDS.c.id == cid, COMMANDS.c.state == "pending")
                                     .values(state="running", started=time.time())).rowcount
            if taken:
                return self.command(cid)
        return None

    def finish(self, command_id: int, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        """A running command done (``result``) or failed (``error``)."""
        values: dict[str, Any] = {"finished": time.time()}
        if error is None:
            values |= {"state": "done", "result": _json(result or {}, "a command's result")}
        else:
            values |= {"state": "failed", "error": error[:4000]}
        with self.registry.begin("write", of=_OF) as conn:
            conn.execute(sa.update(COMMANDS).where(COMMANDS.c.id == command_id, COMMANDS.c.state == "running")
                         .values(**values))

    def interrupt_running(self, host_id: str) -> int:
        """Mark ``host_id``'s ``running`` commands ``interrupted`` (its agent starts again: the one that ran
        them is gone); returns how many."""
        hid = check_host_id(host_id)
        with self.registry.begin("write", of=_OF) as conn:
            return int(conn.execute(
                sa.update(COMMANDS).where(COMMANDS.c.host_id == hid, COMMANDS.c.state == "running")
                .values(state="interrupted", finished=time.time(),
                        error="the agent stopped while running it; it recovered its journal when it started "
                              "again: the host's published applications say what is applied")).rowcount)
