"""What an agent does for its host beside the trials: the apply and rollback commands routed to it, and the
publication of the host's state (:mod:`experiments.fleet.state`).

:class:`HostDuties` runs in a thread of the agent, so a command does not wait for a study to end: every
``poll_s`` it takes this host's pending commands, one at a time, and runs each through this host's own data
directory exactly as ``novatune apply`` / ``novatune rollback`` would (:func:`run_command`): the same checks
(unknown knob, hard bounds, availability here, a knob held by a run or another application: refused with
nothing changed), the old values journaled and fsynced before each write, the application kept. Every
``publish_s``, and right after a command, it publishes the host's state (:func:`experiments.fleet.snapshot.publish`).
A database that cannot be reached only delays both: the next tick tries again.

Arguments a command carries (checked again here: the database is not trusted more than a user):

* ``apply``: ``{"config": {...}}`` (an export document ``novatune.config/v1`` or a mapping knob -> value) or
  ``{"study": NAME, "trial": N | null}`` (a trial of a study in the fleet's storage), and ``dry_run``.
* ``rollback``: ``{"application": ID, "force": false}``.
* ``rightsize``: ``{"proposal": ID, "move": "approve" | "reject" | "apply" | "rollback", "note": TEXT | null,
  "validate_s": SECONDS | null}``: a step of the host's right-sizing workflow, as ``POST /rightsizing/MOVE/ID`` on
  that host (an applied proposal is validated in the background there, and rolled back on degradation).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from collectors.errors import NovatuneError
from experiments.deploy.applications import APPLICATION_ID_RE
from experiments.fleet.hosts import HostRegistry, HostStoreError, UnknownHost
from experiments.fleet.patient import UNREACHABLE
from experiments.fleet.state import Command, FleetState, InvalidCommand
from experiments.rightsizing.proposals import PROPOSAL_ID_RE
from experiments.settings import Paths

if TYPE_CHECKING:
    from experiments.rightsizing.background import Validations

__all__ = ["MOVES", "HostAway", "HostDuties", "check_args",
           "roll_back_unvalidated", "route", "run_command", "wait"]

log = logging.getLogger(__name__)

_APPLICATION_ID = re.compile(APPLICATION_ID_RE)
_APPLY_KEYS, _ROLLBACK_KEYS = {"config", "study", "trial", "dry_run"}, {"application", "force"}
_RIGHTSIZE_KEYS = {"proposal", "move", "note", "validate_s"}
#: the steps of a right-sizing proposal a ``rightsize`` command can take
MOVES = ("approve", "reject", "apply", "rollback")
_PROPOSAL_ID = re.compile(PROPOSAL_ID_RE)


def check_args(action: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` when they are what ``action`` takes (see the module's docstring).

    Raises:
        InvalidCommand: an unknown action, an unknown or missing argument, a value of the wrong type.
    """
    if action == "apply":
        extra = set(args) - _APPLY_KEYS
        if extra:
            raise InvalidCommand(f"apply takes {', '.join(sorted(_APPLY_KEYS))}; not {', '.join(sorted(extra))}")
        has_config, has_study = args.get("config") is not None, args.get("study") is not None
        if has_config == has_study:
            raise InvalidCommand("apply needs either 'config' (an exported configuration or knob -> value) or "
                                 "'study' (and optionally 'trial'), not both and not neither")
        if has_config and not isinstance(args["config"], dict):
            raise InvalidCommand("apply's 'config' must be a JSON object (an export document or knob -> value)")
        if has_study and not isinstance(args["study"], str):
            raise InvalidCommand("apply's 'study' must be a study name")
        trial = args.get("trial")
        if trial is not None and (not isinstance(trial, int) or isinstance(trial, bool) or trial < 0):
            raise InvalidCommand(f"apply's 'trial' must be a trial number >= 0 or null, not {trial!r}")
        if not isinstance(args.get("dry_run", False), bool):
            raise InvalidCommand("apply's 'dry_run' must be true or false")
    elif action == "rollback":
        extra = set(args) - _ROLLBACK_KEYS
        if extra:
            raise InvalidCommand(f"rollback takes {', '.join(sorted(_ROLLBACK_KEYS))}; not "
                                 f"{', '.join(sorted(extra))}")
        app = args.get("application")
        if not isinstance(app, str) or not _APPLICATION_ID.fullmatch(app):
            raise InvalidCommand(f"rollback's 'application' must be an application id (1 to 80 of A-Z, a-z, 0-9, "
                                 f"'_', '.', ':', '-'), not {app!r}")
        if not isinstance(args.get("force", False), bool):
            raise InvalidCommand("rollback's 'force' must be true or false")
    elif action == "rightsize":
        _check_rightsize(args)
    else:
        raise InvalidCommand(f"action {action!r} is not allowed; allowed: apply, rollback, rightsize")
    return args


def _check_rightsize(args: dict[str, Any]) -> None:
    extra = set(args) - _RIGHTSIZE_KEYS
    if extra:
        raise InvalidCommand(f"rightsize takes {', '.join(sorted(_RIGHTSIZE_KEYS))}; not {', '.join(sorted(extra))}")
    if not isinstance(args.get("proposal"), str) or not _PROPOSAL_ID.fullmatch(args["proposal"]):
        raise InvalidCommand(f"rightsize's 'proposal' must be a proposal id (rs-YYYYmmdd-HHMMSS-xxxxxx), not "
                             f"{args.get('proposal')!r}")
    if args.get("move") not in MOVES:
        raise InvalidCommand(f"rightsize's 'move' {args.get('move')!r} is not allowed; allowed: {', '.join(MOVES)}")
    note = args.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise InvalidCommand("rightsize's 'note' must be text of at most 500 characters")
    secs = args.get("validate_s")
    if secs is not None and (not isinstance(secs, int | float) or isinstance(secs, bool) or not 1 <= secs <= 7 * 86400):
        raise InvalidCommand(f"rightsize's 'validate_s' must be 1 to 604800 seconds, not {secs!r}")


class HostAway(NovatuneError):
    """A command for a host whose agent is not alive: nothing was queued (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


def route(registry: HostRegistry, state: FleetState, host_id: str, action: str, args: dict[str, Any], *, by: str,
          ttl_s: float, dead_after_s: float) -> Command:
    """Queue ``action`` for the agent of ``host_id`` (``POST /hosts/{id}/apply|rollback``, ``novatune fleet
    apply|rollback``), after the checks that can be made here.

    Raises:
        InvalidCommand: arguments that are not allowed; a knob the host's facts say it does not have.
        UnknownHost: no host of that id is registered.
        HostAway: its agent is not alive (stopped, or no heartbeat for ``dead_after_s``).
        HostStoreError: the database cannot be used.
    """
    from experiments.deploy.apply import config_values

    checked = check_args(action, args)
    host = registry.get(host_id)
    if host is None:
        raise UnknownHost(f"no host {host_id!r} is registered; `novatune fleet hosts` (GET /hosts) lists them")
    now = time.time()
    if not host.alive(now, dead_after_s):
        why = "it stopped" if host.state == "stopped" else f"last heartbeat {now - host.last_seen:.0f} s ago"
        raise HostAway(f"host {host_id!r}: its agent is not alive ({why}; alive means a heartbeat within "
                       f"fleet_dead_after_s = {dead_after_s:g} s): nothing was queued")
    if checked.get("config") is not None:
        unavailable = (host.facts.get("knobs") or {}).get("unavailable") or {}
        missing = {k: unavailable[k] for k in config_values(checked["config"]) if k in unavailable}
        if missing:
            raise InvalidCommand(f"not available on host {host_id!r} (nothing was queued): "
                                 + "; ".join(f"{k}: {why}" for k, why in sorted(missing.items())))
    return state.submit(host_id, action, checked, by=by, ttl_s=ttl_s)


def wait(state: FleetState, command_id: int, timeout_s: float, *, poll_s: float = 0.5) -> Command:
    """The command once it is no longer pending or running, or as it is after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        cmd = state.command(command_id)
        if cmd is None:
            raise InvalidCommand(f"no command {command_id}")
        if cmd.state not in ("pending", "running") or time.monotonic() >= deadline:
            return cmd
        time.sleep(poll_s)


def run_command(cmd: Command, paths: Paths, *, validations: Validations | None = None) -> dict[str, Any]:
    """Run ``cmd`` on this host's data directory ``paths``; returns what ``novatune apply|rollback --json``
    would print.

    ``validations`` watches a right-sizing proposal the command applied (``None``: a ``rightsize apply`` is
    refused).

    Raises:
        InvalidCommand: its arguments are not allowed.
        NovatuneError: what apply or rollback refused (nothing changed) or failed on (what was written restored).
    """
    from experiments.deploy.apply import apply_config, apply_trial

    args = check_args(cmd.action, cmd.args)
    source = f"fleet command {cmd.id} from {cmd.requested_by}"
    if cmd.action == "rightsize":
        return _rightsize(args, paths, who=source, validations=validations)
    if cmd.action == "rollback":
        from experiments.autotune.service import rollback_by_id

        return rollback_by_id(paths, args["application"], force=bool(args.get("force")))
    if args.get("study") is not None:
        return apply_trial(args["study"], args.get("trial"), paths=paths, dry_run=bool(args.get("dry_run"))).as_dict()
    return apply_config(args["config"], paths=paths, dry_run=bool(args.get("dry_run")), source=source).as_dict()


def _rightsize(args: dict[str, Any], paths: Paths, *, who: str, validations: Validations | None) -> dict[str, Any]:
    """A step of this host's right-sizing workflow, as its ``POST /rightsizing/MOVE/ID`` takes it."""
    from experiments.rightsizing import workflow
    from experiments.rightsizing.engine import Rightsizing
    from experiments.settings import Settings

    eng = Rightsizing(paths, Settings.load())
    pid, move, note = args["proposal"], args["move"], args.get("note")
    if move == "approve":
        return workflow.approve(eng.proposals, pid, who=who, note=note).to_dict()
    if move == "reject":
        return workflow.reject(eng.proposals, pid, who=who, note=note).to_dict()
    if move == "rollback":
        return workflow.rollback(eng.proposals, pid, paths=paths, who=who, note=note).to_dict()
    if validations is None:
        raise InvalidCommand("a right-sizing apply needs the agent's validation watch; none runs here")
    return validations.apply(eng, pid, who=who, note=note, duration_s=args.get("validate_s")).to_dict()


def roll_back_unvalidated(paths: Paths) -> list[str]:
    """Roll back the right-sizing proposals a fleet command applied and no validation finished (the agent that
    watched them was killed): no change stays unvalidated. Returns their ids; one that cannot be rolled back
    is logged and left applied (``novatune rightsize rollback ID`` says why)."""
    from experiments.rightsizing import workflow
    from experiments.rightsizing.proposals import ProposalStore

    if not paths.rightsizing_db.exists():
        return []
    try:
        store = ProposalStore(paths.rightsizing_db)
        applied = store.list(state="applied")
    except NovatuneError as err:
        log.error("cannot look for right-sizing changes left unvalidated: %s", err)
        return []
    done = []
    for p in applied:
        if not p.history or not p.history[-1].who.startswith("fleet command"):
            continue
        try:
            workflow.rollback(store, p.id, paths=paths, who="novatune agent",
                              note="its agent stopped during the validation period: rolled back when it started again")
            done.append(p.id)
        except NovatuneError as err:
            log.error("right-sizing proposal %s was left unvalidated and cannot be rolled back: %s", p.id, err)
    return done


class HostDuties:
    """The thread of an agent that runs its host's commands and publishes its state.

    Args:
        state: the fleet state (opened on a registry that migrated: the agent's).
        host_id: this host.
        paths: this host's data directory.
        poll_s: how often pending commands are looked for.
        publish_s: how often the host's state is published (and after every command).
        on_event: ``on_event(kind, **data)``; kinds ``command`` (id, action, state), ``published``.
    """

    def __init__(self, state: FleetState, host_id: str, paths: Paths, *, poll_s: float = 2.0,
                 publish_s: float = 30.0, on_event: Callable[..., None] | None = None) -> None:
        self.state, self.host, self.paths = state, host_id, paths
        self.poll_s, self.publish_s = poll_s, publish_s
        self.on_event = on_event or (lambda kind, **data: None)
        self._stop = threading.Event()
        self._validations: Validations | None = None
        self._thread = threading.Thread(target=self._loop, name=f"novatune-duties-{host_id}", daemon=True)
        self._published_at = 0.0

    def start(self) -> HostDuties:
        """Mark what an earlier agent of this host left running ``interrupted``, roll back the right-sizing
        changes it applied and left unvalidated (:func:`roll_back_unvalidated`), start the thread (which
        publishes at once)."""
        try:
            n = self.state.interrupt_running(self.host)
            if n:
                log.warning("%d command(s) of host %s were running when its earlier agent stopped: interrupted",
                            n, self.host)
        except HostStoreError as err:
            log.warning("cannot look at the commands left running: %s", err)
        rolled_back = roll_back_unvalidated(self.paths)
        if rolled_back:
            log.warning("right-sizing change(s) left unvalidated by the earlier agent rolled back: %s",
                        ", ".join(rolled_back))
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the command running now (if any) ends; a right-sizing change still in its validation
        period is rolled back (as the service does at shutdown: never an unvalidated change left behind)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._validations is not None:
            self._validations.shutdown()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.tick()
            except (HostStoreError, *UNREACHABLE) as err:
                log.warning("host duties: the fleet database is unreachable now (%s); trying again", err)
                ran = False
            except Exception:  # never let the thread die silently: log, and go on at the next tick
                log.exception("host duties: unexpected error; trying again at the next tick")
                ran = False
            if not ran:
                self._stop.wait(self.poll_s)

    def tick(self) -> bool:
        """Run every pending command of this host, then publish if due; whether a command ran."""
        ran = False
        while not self._stop.is_set() and (cmd := self.state.take(self.host)) is not None:
            self._run(cmd)
            ran = True
        if ran or time.monotonic() - self._published_at >= self.publish_s:
            self.publish()
        return ran

    def _run(self, cmd: Command) -> None:
        log.info("command %d: %s %s (from %s)", cmd.id, cmd.action, cmd.args, cmd.requested_by)
        try:
            result = run_command(cmd, self.paths, validations=self._watches())
        except NovatuneError as err:
            error, shown = str(err), str(err)
        except Exception as err:  # an internal error: recorded for the requester, logged in full here
            log.exception("command %d failed", cmd.id)
            error, shown = f"internal error on host {self.host}: {type(err).__name__}: {err}", str(err)
        else:
            self.state.finish(cmd.id, result=result)
            self.on_event("command", id=cmd.id, action=cmd.action, state="done")
            return
        self.state.finish(cmd.id, error=error)
        self.on_event("command", id=cmd.id, action=cmd.action, state="failed", error=shown)

    def _watches(self) -> Validations:
        from experiments.rightsizing.background import Validations
        from experiments.settings import Settings

        if self._validations is None:
            self._validations = Validations(self.paths, Settings.load())
        return self._validations

    def publish(self) -> None:
        """Publish this host's state now (a kind that cannot be read keeps its last copy; logged)."""
        from experiments.fleet.snapshot import publish

        snap = publish(self.state, self.host, self.paths)
        for kind, reason in snap.skipped.items():
            log.warning("host state %s not published: %s", kind, reason)
        self._published_at = time.monotonic()
        self.on_event("published", kinds=sorted(snap.kinds))
