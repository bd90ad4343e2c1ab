"""ChangeSession: the only way a runner changes a knob.

Per change: read the old state, journal the intent (fsynced), write, verify,
journal ``applied``. ``restore_all`` undoes in reverse order, each step
isolated; ``__exit__`` calls it, whatever way the block ends. A change is
undone from the intent the session journaled, through the one restore path
(:func:`actuators.restore.restore_intent`) that ``recover`` and ``rollback``
use too. Before an intent is journaled it passes the same check a replayed
record does (:func:`actuators.vetting.vet_intent`): a change whose record could
not be put back (its current value outside the knob's hard bounds, say) is not
made at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from actuators.base import Change, Knob, Token
from actuators.errors import ActuatorError, KnobUnavailable, OutOfBounds
from actuators.journal import Journal
from actuators.records import KnobIntent, parse_intent
from actuators.registry import REGISTRY
from actuators.restore import restore_intent
from actuators.sysroot import SysRoot
from actuators.vetting import Refused, vet_intent

__all__ = ["ChangeSession"]

log = logging.getLogger(__name__)


class ChangeSession:
    """Journaled changes of one trial of one run.

    Args:
        journal: where intents are recorded before each write.
        run_id: the run the changes belong to.
        trial: the trial number, if any.

    After ``restore_all`` (or ``__exit__``), ``failures`` lists what could not
    be restored (those journal entries stay open for ``recover``).
    """

    def __init__(self, journal: Journal, *, run_id: str, trial: int | None) -> None:
        self.journal = journal
        self.run_id = run_id
        self.trial = trial
        self._stack: list[tuple[Knob, KnobIntent]] = []
        self.failures: list[str] = []

    def __enter__(self) -> ChangeSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        failures = self.restore_all()
        if failures and exc_type is None:
            raise ActuatorError("restore failed (journal entries left open for recover): " + "; ".join(failures))

    @property
    def changed(self) -> list[str]:
        """Names of the knobs currently changed by this session, in apply order."""
        return [k.name for k, _ in self._stack]

    # ---------------------------------------------------------------- changes
    def apply(self, knob: Knob, value: Any) -> Change:
        """Change one knob (journal first); a no-op change writes and records nothing.

        Raises:
            OutOfBounds: before anything is written or journaled.
            KnobUnavailable: the knob cannot be used here, or its current state could not be put
                back from the journal (nothing written or journaled).
            ActuatorError: the write failed or did not read back (that knob is
                restored first, as far as possible).
        """
        token = knob.prepare(value)
        old = knob.old_value(token)
        change = Change(knob=knob.name, old=old, new=token.value, changes=not knob.same(old, token.value))
        if not change.changes:
            return change
        intent = self._journal_intent(knob, token)
        try:
            knob.commit(token)
            ok = knob.verify(token.value)
        except BaseException as err:
            self._undo(knob, intent)
            if isinstance(err, ActuatorError) or not isinstance(err, Exception):
                raise
            raise ActuatorError(f"{knob.name}: write failed: {err}") from err
        if not ok:
            self._undo(knob, intent)
            raise ActuatorError(f"{knob.name}: wrote {token.new!r} but it reads back as {knob.read()!r}")
        # on the stack BEFORE the ``applied`` record: if that record cannot be
        # written, the change is still undone by ``restore_all`` (and the open
        # intent lets ``recover`` undo it after a crash)
        self._stack.append((knob, intent))
        self.journal.close_entry(intent, "applied")
        return change

    def _journal_intent(self, knob: Knob, token: Token) -> KnobIntent:
        """Journal (fsync) what restore needs, before the write; the record as the typed reader reads it.

        Raises:
            KnobUnavailable: the record would be refused on replay (nothing journaled).
        """
        root = knob.journal_root or ""
        record = {"seq": 0, "run": self.run_id, "trial": self.trial, "kind": "knob", "event": "intent",
                  "knob": token.knob, "scope": token.scope, "target": token.target, "restore": token.kind,
                  "old": token.old, "new": token.new, "value": token.value, "root": root}
        try:
            vet_intent(parse_intent(record), SysRoot(root) if root else SysRoot())
        except Refused as err:
            raise KnobUnavailable(f"{knob.name}: not changed, novatune could not put it back: {err}") from None
        return parse_intent(self.journal.intent(self.run_id, self.trial, token, root=root))

    def apply_many(self, values: Mapping[Knob, Any]) -> list[Change]:
        """Apply a set, ordered so relations between knobs hold after every write.

        The final state is validated first (each knob against the others' new
        values); then knobs are applied in the families' apply order (see
        :attr:`actuators.family.Family.apply_order`), each as soon as it
        validates against what the system holds at that moment (e.g.
        ``vm.dirty_ratio`` is raised before ``vm.dirty_background_ratio`` when
        both go up).

        Raises:
            OutOfBounds: the set is invalid; nothing was written.
            ActuatorError: see :meth:`apply` (knobs applied so far stay applied
                until ``restore_all``).
        """
        final = {k.name: v for k, v in values.items()}
        for knob, value in values.items():
            knob.validate(value, assume=final)
        # in the families' apply order (affinity.placement after affinity.cpus, a block scheduler before the
        # queue sizes it resets), the given order among equals; a knob of an ordering waits until it holds
        # against what the system has at that moment
        ordered = {n for o in REGISTRY.orderings() for n in (o.lower, o.upper)}
        pending = sorted(values.items(), key=lambda kv: REGISTRY.rank(kv[0].name))
        changes: list[Change] = []
        while pending:
            for i, (knob, value) in enumerate(pending):
                try:
                    if knob.name in ordered:
                        knob.validate(value)
                except OutOfBounds:
                    continue
                changes.append(self.apply(knob, value))
                del pending[i]
                break
            else:
                names = ", ".join(k.name for k, _ in pending)
                raise OutOfBounds(f"no order applies {names} keeping every relation between knobs")
        return changes

    # ---------------------------------------------------------------- restore
    def _undo(self, knob: Knob, intent: KnobIntent) -> str | None:
        # ``restored`` is journaled only AFTER the write succeeded: a crash in
        # between leaves the intent open and ``recover`` writes the old value
        # again (idempotent)
        try:
            restore_intent(intent, SysRoot(intent.root) if intent.root else SysRoot())
        except Exception as err:  # noqa: BLE001 - isolated: recorded and reported
            msg = f"{knob.name}: {err}"
            log.error("restore failed: %s", msg)
            self._close(intent, "restore_failed", error=str(err))
            return msg
        self._close(intent, "restored")
        return None

    def _close(self, intent: KnobIntent, event: str, *, error: str | None = None) -> None:
        try:
            self.journal.close_entry(intent, event, error=error)
        except ActuatorError as err:  # the entry stays open: recover redoes it, harmlessly
            log.error("cannot journal %s of %s: %s", event, intent.knob, err)

    def restore_all(self) -> list[str]:
        """Restore every change in reverse order; one failure does not stop the others.

        Returns:
            the failures (``"knob: reason"``), also kept in ``failures``; empty
            when everything is back. Failed entries stay open in the journal.
        """
        failures: list[str] = []
        interrupted: BaseException | None = None
        while self._stack:
            knob, intent = self._stack[-1]
            try:
                msg = self._undo(knob, intent)
            except BaseException as err:  # noqa: BLE001 - a signal mid-restore: finish the others, then re-raise
                msg = f"{knob.name}: interrupted: {type(err).__name__}"
                interrupted = interrupted or err
            self._stack.pop()
            if msg is not None:
                failures.append(msg)
        self.failures.extend(failures)
        if interrupted is not None:
            raise interrupted
        return failures
