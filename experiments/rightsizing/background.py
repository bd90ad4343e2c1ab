"""Validation periods the service runs in the background (``POST /rightsizing/apply/{id}``).

The API applies a proposal and answers at once; the target is then watched for ``rightsizing_validation_s``
in a thread of its own (:meth:`experiments.rightsizing.engine.Rightsizing.validate_after_apply`), which moves
the proposal to ``validated`` or rolls it back. On shutdown every watch still running is stopped, and a
stopped watch rolls its change back: the service never leaves an unvalidated change behind.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from experiments.settings import Paths, Settings

if TYPE_CHECKING:
    from experiments.rightsizing.engine import Rightsizing, Watch
    from experiments.rightsizing.proposals import Proposal

__all__ = ["Validations"]

log = logging.getLogger(__name__)


class Validations:
    """The background watches of applied proposals, by proposal id."""

    def __init__(self, paths: Paths, settings: Settings) -> None:
        self.paths = paths
        self.settings = settings
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, proposal_id: str, watch: Watch, *, duration_s: float | None, who: str) -> None:
        """Watch the applied proposal in a new thread (one per proposal), against ``watch`` (taken before the
        change: :meth:`~experiments.rightsizing.engine.Rightsizing.before_change`)."""
        t = threading.Thread(target=self._run, args=(proposal_id, watch, duration_s, who),
                             name=f"novatune-validate-{proposal_id}", daemon=True)
        with self._lock:
            self._threads = {k: v for k, v in self._threads.items() if v.is_alive()}
            self._threads[proposal_id] = t
        t.start()

    def apply(self, eng: Rightsizing, proposal_id: str, *, who: str, note: str | None,
              duration_s: float | None) -> Proposal:
        """``approved -> applied`` through ``eng`` (:func:`experiments.rightsizing.workflow.apply`), with what
        the validation compares against taken first, then the validation started here in the background.

        Raises:
            what :meth:`Rightsizing.before_change` and :func:`~experiments.rightsizing.workflow.apply` raise
            (nothing written, no watch started).
        """
        from experiments.rightsizing import workflow

        watch = eng.before_change(eng.proposals.check_transition(proposal_id, "applied"))
        p = workflow.apply(eng.proposals, proposal_id, paths=eng.paths, settings=eng.settings, who=who, note=note)
        self.start(p.id, watch, duration_s=duration_s, who=who)
        return p

    def _run(self, proposal_id: str, watch: Watch, duration_s: float | None, who: str) -> None:
        from experiments.rightsizing.engine import Rightsizing

        try:
            eng = Rightsizing(self.paths, self.settings)
            p = eng.validate_after_apply(eng.proposals.get(proposal_id), watch, duration_s=duration_s,
                                         stop=self._stop.is_set, who=who)
            log.info("right-sizing proposal %s on %s: %s", p.id, p.target, p.state)
        except Exception:  # a watch thread must log, never die silently; validate() rolls back on its own errors
            log.exception("validating right-sizing proposal %s failed", proposal_id)

    def running(self) -> list[str]:
        with self._lock:
            return [k for k, v in self._threads.items() if v.is_alive()]

    def status(self) -> dict[str, Any]:
        return {"validating": self.running(), "validation_s": self.settings.rightsizing_validation_s}

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop every watch (each rolls its change back) and wait for them."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout=timeout_s)
