"""The validated apply: measure the spec's workload with and without a change, keep it only when shown safe.

:func:`validated_apply` checks the request first (:mod:`experiments.validate.checks`: nothing is measured or
written when the spec, a knob, a window or a guard is wrong), then, under the data directory's lock, refuses
knobs held by a running study, a dead unrecovered run or an active application (the checks of ``novatune
apply``), takes the machine-wide holds on the knobs and journals the validation as a run of its own. The
workload runs as a study's does (:class:`~experiments.study.setup.RunContext`, windows of
:class:`~experiments.study.measure.Measurer`), in A/B pairs interleaved A B B A A B ... (or, with
``interleave=False``, every *before* window, then the change, then the *after* windows), and
:func:`optimizer.decision.sequential` decides, extending the window while the answer is inconclusive.

The change is written only through an :class:`actuators.ChangeSession` of the validation's run: the old value
is journaled (fsynced) before each write, so a crash (kill -9) leaves open entries that ``novatune recover``
puts back. At the end the change is always undone through the journal and each knob is read back (``restored``
in the report). When the decision is *keep*, the values are then applied to stay by
:func:`experiments.deploy.apply.apply_config`: an ordinary application (``novatune rollback ID``, ``history``,
``status``). Every report is stored (:mod:`experiments.validate.store`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import pandas as pd

from actuators import ActuatorError, ChangeSession, Journal
from collectors.errors import CollectorError, NovatuneError, WorkloadError
from experiments.deploy.applications import ApplyConflict, holding, locked
from experiments.settings import Paths
from experiments.spec import StudySpec
from experiments.study.measure import Measurer
from experiments.study.outcomes import Interrupted, signals_raise
from experiments.study.setup import RunContext
from experiments.validate.checks import Checked, check_request
from experiments.validate.model import OnEvent, ValidationReport, ValidationRequest
from experiments.validate.store import RUNNING, list_reports, load_report, new_validation_id, save_report
from optimizer.decision import Decision, sequential

__all__ = ["list_reports", "load_report", "validated_apply"]

_DECISION = {"keep": "kept", "roll_back": "rolled_back", "inconclusive": "inconclusive"}


class _WorkloadContext(RunContext):
    """A study's run context without tuned knobs: the workload started, journaled and stopped as a study's; the
    validated knobs are held and written by the validation itself (the plan's spec has no knobs)."""

    def _bind_knobs(self) -> None:
        self.resolved = self.plan.resolved
        self.skipped = {}

    def _hold_knobs(self) -> None:
        """The validation holds its own knobs (for its whole length, not only the workload's)."""


class _Stopped(Exception):
    """``stop`` was set between two windows."""


class _Validation:
    """One validation's measuring: the workload context, the change session, the windows so far."""

    def __init__(self, checked: Checked, report: ValidationReport, *, ctx: RunContext, session: ChangeSession,
                 paths: Paths, on_event: OnEvent, stop: threading.Event | None) -> None:
        self.checked = checked
        self.report = report
        self.session = session
        self.paths = paths
        self.on_event = on_event
        self.stop = stop
        self.measurer = Measurer(checked.plan, ctx)
        self.metrics = {g.metric for g in checked.guards}
        self._series: list[pd.DataFrame] = []
        self._timelines: list[pd.DataFrame] = []
        self._units: dict[str, str] = {}

    def _set(self, phase: str) -> None:
        """The old values (``before``) or the change (``after``) in place, through the journaled session."""
        if phase == "after" and not self.session.changed:
            self.session.apply_many(dict(self.checked.writes))
        elif phase == "before" and self.session.changed:
            failures = self.session.restore_all()
            if failures:
                raise ActuatorError("restore failed (journal entries left open for recover): " + "; ".join(failures))

    def window(self, phase: str, pair: int) -> dict[str, float]:
        """One measurement window in ``phase``; its guarded figures (recorded in the report, which is saved).

        Raises:
            _Stopped: ``stop`` is set; ActuatorError, WorkloadError, CollectorError, OSError.
        """
        if self.stop is not None and self.stop.is_set():
            raise _Stopped()
        self._set(phase)
        started = time.time()
        n = len(self.report.windows)
        raw = self.measurer.window(n, self._series, self._timelines, self._units)
        full = self.measurer.reduce([raw], {}, throughput_unit=self._units.get("throughput", ""))
        values = {m: float(full[m]) for m in sorted(self.metrics) if m in full and math.isfinite(full[m])}
        entry = {"index": n, "pair": pair, "phase": phase, "started": started, "ended": time.time(), "values": values}
        self.report.windows.append(entry)
        save_report(self.paths, self.report)
        self.on_event("window", dict(entry))
        return values

    def pair_measure(self, interleave: bool) -> Any:
        """The ``measure_pair`` of :func:`optimizer.decision.sequential`: interleaved A B / B A, or (``interleave``
        False) every *before* window first, then only *after* windows."""
        count = [0]
        queued: list[dict[str, float]] = []
        if not interleave:
            queued = [self.window("before", i) for i in range(self.checked.initial_pairs)]

        def measure() -> tuple[Mapping[str, float], Mapping[str, float]]:
            i = count[0]
            count[0] += 1
            if not interleave:
                return (queued.pop(0) if queued else {}), self.window("after", i)
            if i % 2 == 0:
                before = self.window("before", i)
                return before, self.window("after", i)
            after = self.window("after", i)
            return self.window("before", i), after

        return measure


def _emit(on_event: OnEvent | None) -> OnEvent:
    return on_event if on_event is not None else (lambda kind, fields: None)


def _restore_and_verify(v: _Validation) -> dict[str, Any]:
    """Undo the change through the journal; each knob's value read back."""
    v.session.restore_all()
    back: dict[str, Any] = {}
    for knob in v.checked.writes:
        try:
            back[knob.name] = knob.read()
        except (ActuatorError, OSError) as err:
            back[knob.name] = f"(unreadable: {err})"
    return back


def _conclude(report: ValidationReport, checked: Checked, decision: Decision | None, why: str | None) -> None:
    if decision is not None:
        report.decision = _DECISION[decision.decision]
        report.reason = decision.reason
        report.metrics = json.loads(json.dumps(decision.as_dict()["metrics"]))  # as stored: intervals as lists
    else:
        report.decision, report.reason = "rolled_back", why or "stopped"
    if report.decision == "inconclusive":
        report.reason = f"inconclusive at the longest window ({checked.max_pairs} pairs), rolled back: {report.reason}"
    if report.restored is not None:
        wrong = [f"{k}: reads {report.restored[k]!r}, was {report.old[k]!r}" for k in report.old
                 if report.restored.get(k) != report.old[k]]
        if wrong:
            report.reason += "; NOT restored as it was (`novatune recover`, then check): " + "; ".join(wrong)


def _measure(v: _Validation, req: ValidationRequest) -> tuple[Decision | None, str | None]:
    """Run the sequential procedure; a stop, a signal or a failure of the workload or a knob ends it."""
    checked = v.checked
    try:
        decision, pairs = sequential(v.pair_measure(req.interleave), checked.guards,
                                     initial_pairs=checked.initial_pairs, max_pairs=checked.max_pairs,
                                     paired=req.interleave)  # interleaved windows are A/B pairs
        v.on_event("decided", {"decision": decision.decision, "pairs": pairs, "reason": decision.reason})
        return decision, None
    except (_Stopped, KeyboardInterrupt, Interrupted) as err:
        detail = f" ({type(err).__name__}: {err})" if not isinstance(err, _Stopped) else ""
        return None, f"stopped{detail}: the change was undone before a decision"
    except (ActuatorError, WorkloadError, CollectorError, OSError, ValueError) as err:  # as a study's trial
        return None, f"failed: {type(err).__name__}: {err}; the change was undone"


def _signals() -> AbstractContextManager[None]:
    return signals_raise() if threading.current_thread() is threading.main_thread() else nullcontext()


def _keep(report: ValidationReport, checked: Checked, req: ValidationRequest, paths: Paths,
          catalog: Any) -> None:
    """Apply the shown-safe change to stay, as an ordinary application."""
    from experiments.deploy.apply import apply_config

    try:
        app = apply_config(checked.changes, paths=paths, source=f"{req.source} (validated {report.id})",
                           catalog=catalog)
    except NovatuneError as err:
        report.decision = "rolled_back"
        report.reason = f"shown safe ({report.reason}), but applying it to stay failed: {err}"
        return
    report.application = app.id
    report.restored = None


def validated_apply(req: ValidationRequest, *, paths: Paths, on_event: OnEvent | None = None,
                    stop: threading.Event | None = None, spec: StudySpec | None = None,
                    catalog: Any = None, checked: Checked | None = None,
                    validation_id: str | None = None) -> ValidationReport:
    """Apply ``req.values`` for a validation period and keep them only when no guard is worse than its limit.

    ``on_event(kind, fields)`` is called with ``start`` (pairs, guards), ``window`` (each measured window)
    and ``decided``; ``stop`` set ends the validation between two windows (the change is undone, decision
    ``rolled_back``, reason ``stopped``); ``spec``: the spec itself instead of ``req.spec_path`` (the API's
    inline spec); ``catalog``: the knobs (default: this machine's); ``checked`` and ``validation_id``: the
    request already checked (:func:`~experiments.validate.checks.check_request`) and its id already chosen
    (:func:`~experiments.validate.store.new_validation_id`), for a caller that answers before it runs (the API).

    Returns the stored report: ``kept`` (``application`` is the id ``novatune rollback`` takes),
    ``rolled_back`` or ``inconclusive`` (the old values are back: ``restored``).

    Raises:
        SpecError, ValidationRefused, ApplyError: bad input (nothing measured or written).
        ApplyConflict: a knob is held by a running study, a dead unrecovered run or an active application.
        StudyConflict: another novatune process holds a knob the workload needs.
    """
    emit = _emit(on_event)
    if checked is None:
        checked = check_request(req, paths=paths, spec=spec, catalog=catalog)
    paths = paths.ensure()
    vid = validation_id or new_validation_id(paths)
    report = ValidationReport(id=vid, decision=RUNNING, reason="measuring", source=req.source,
                              values=checked.changes, started=time.time(), old=checked.old)
    journal = Journal(paths.journal)
    with ExitStack() as stack:
        with locked(paths):
            stack.enter_context(holding(list(checked.changes), f"novatune validated apply {vid}"))
            from experiments.deploy.apply import held_knobs

            held = held_knobs(checked.vetted, journal.records())
            if held:
                raise ApplyConflict("cannot validate (nothing was changed):\n" + "\n".join(f"  - {h}" for h in held))
            stack.enter_context(journal.run(vid))
        save_report(paths, report)
        emit("start", {"id": vid, "pairs": checked.initial_pairs, "max_pairs": checked.max_pairs,
                       "window_len_s": checked.window_len_s, "guards": [g.metric for g in checked.guards]})
        stack.enter_context(_signals())
        workdir = paths.runs / vid
        (workdir / "trials").mkdir(parents=True, exist_ok=True)
        session = ChangeSession(journal, run_id=vid, trial=None)
        try:
            with _WorkloadContext(checked.plan, paths=paths, name=vid, run_id=vid, journal=journal,
                                  workdir=workdir) as ctx:
                v = _Validation(checked, report, ctx=ctx, session=session, paths=paths, on_event=emit, stop=stop)
                try:
                    decision, why = _measure(v, req)
                finally:
                    report.restored = _restore_and_verify(v)
        except (WorkloadError, CollectorError, ActuatorError, OSError, KeyboardInterrupt, Interrupted) as err:
            session.restore_all()
            decision, why = None, f"failed: {type(err).__name__}: {err}; the change was undone"
            if report.restored is None:
                report.restored = {k.name: k.read() for k in checked.writes}
        _conclude(report, checked, decision, why)
    if report.decision == "kept":
        _keep(report, checked, req, paths, catalog)
    report.ended = time.time()
    save_report(paths, report)
    emit("end", {"decision": report.decision, "reason": report.reason, "application": report.application})
    return report

