"""Validated applies the service runs in the background (``POST /tuning/apply`` with ``validate``).

The request is checked at once (bad input: 422, a held knob: 409, nothing written); then the validation gets
its id, a ``running`` report is stored, and it runs in a thread of its own. On shutdown every validation still
running is stopped: each puts its old values back and is reported ``rolled_back`` (reason ``stopped``), as
:mod:`experiments.rightsizing.background` does for right-sizing watches.
"""

from __future__ import annotations

import logging
import threading
import time

from actuators import Journal
from collectors.errors import NovatuneError
from experiments.deploy.applications import ApplyConflict
from experiments.settings import Paths
from experiments.spec import StudySpec
from experiments.validate.checks import Checked, check_request
from experiments.validate.model import ValidationReport, ValidationRequest
from experiments.validate.store import RUNNING, new_validation_id, save_report

__all__ = ["ValidationRunner"]

log = logging.getLogger(__name__)


class ValidationRunner:
    """The service's background validated applies, by validation id."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, req: ValidationRequest, *, spec: StudySpec) -> ValidationReport:
        """Check ``req`` now, store its ``running`` report and run it in a new thread; returns that report.

        Raises:
            SpecError, ValidationRefused, ApplyError: bad input. ApplyConflict: a knob is held now.
        """
        from experiments.deploy.apply import held_knobs

        checked = check_request(req, paths=self.paths, spec=spec)
        paths = self.paths.ensure()
        held = held_knobs(checked.vetted, Journal(paths.journal).records())
        if held:
            raise ApplyConflict("cannot validate (nothing was changed):\n" + "\n".join(f"  - {h}" for h in held))
        vid = new_validation_id(paths)
        report = ValidationReport(id=vid, decision=RUNNING, reason="starting", source=req.source,
                                  values=checked.changes, started=time.time(), old=checked.old)
        save_report(paths, report)
        t = threading.Thread(target=self._run, args=(req, checked, report), name=f"novatune-{vid}", daemon=True)
        with self._lock:
            self._threads = {k: v for k, v in self._threads.items() if v.is_alive()}
            self._threads[vid] = t
        t.start()
        return report

    def _run(self, req: ValidationRequest, checked: Checked, report: ValidationReport) -> None:
        from experiments.validate.engine import validated_apply

        try:
            done = validated_apply(req, paths=self.paths, stop=self._stop, checked=checked, validation_id=report.id)
            log.info("validated apply %s: %s (%s)", done.id, done.decision, done.reason)
        except NovatuneError as err:  # refused when it started (a knob taken meanwhile): nothing was written
            report.decision, report.ended = "rolled_back", time.time()
            report.reason = f"refused, nothing changed: {err}"
            save_report(self.paths, report)
        except Exception:  # a thread must log, never die silently; the session restored what it wrote
            log.exception("validated apply %s failed", report.id)
            report.decision, report.ended = "rolled_back", time.time()
            report.reason = "failed (see the service log); the journaled change was undone"
            save_report(self.paths, report)

    def running(self) -> list[str]:
        with self._lock:
            return [k for k, v in self._threads.items() if v.is_alive()]

    def shutdown(self, timeout_s: float = 120.0) -> None:
        """Stop every validation (each restores its old values) and wait for them."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout=timeout_s)
