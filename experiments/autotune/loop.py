"""The continuous tuner's loop: measure, check drift, search when due, validate what wins, converge.

One :class:`Autotuner` keeps one spec's knobs tuned. Each cycle:

1. **measure** the current configuration (``windows`` windows of the spec's workload, nothing changed)
   and compare it with the reference (the first measurement after the last kept step, or after the last
   drift): :func:`~experiments.autotune.drift.check_drift`. Performance fallen beyond ``drop_limit``
   since a kept step rolls that step back; any change beyond the noise is drift (re-tune, the trust
   region back to its full size, convergence reset).
2. **search** when due (the first cycle, after drift, and every cycle until converged): a small study
   (``study_trials``) in the trust region around the current configuration, warm-started from the
   earlier cycles' studies of the same target.
3. **validate** the study's choice when it beats the current configuration: a validated apply
   (:func:`experiments.validate.engine.validated_apply`); ``kept`` makes it the new current configuration
   (an application: ``novatune rollback ID`` undoes it), anything else leaves the current one.
4. **converge**: ``converge_after`` cycles without a kept change and without drift -> ``converged``
   (re-checks go on at ``converged_interval_s``); the trust region shrinks (× 0.5) on a cycle without
   improvement and grows (× 1.5) on a kept one, within ``min_scale`` .. ``max_scale``.
5. **history**: every cycle and step is appended to the tuner's store (:mod:`experiments.autotune.store`).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from collectors.errors import NovatuneError
from experiments.autotune import probe
from experiments.autotune.drift import check_drift
from experiments.autotune.model import AutotuneError, AutotuneOptions, CycleRecord
from experiments.autotune.steps import Steps
from experiments.autotune.store import TunerStore, new_tuner_id
from experiments.settings import Paths, Settings
from experiments.spec import StudySpec
from experiments.study.outcomes import Interrupted
from experiments.study.prepare import StudyPlan, prepare
from experiments.validate.model import ValidationReport, ValidationRequest

__all__ = ["Autotuner", "Validator"]

log = logging.getLogger(__name__)

Validator = Callable[[ValidationRequest], ValidationReport]
#: consecutive failed cycles after which the tuner gives up (state ``failed``); between them it waits
#: FIRST_BACKOFF_S, then twice as long each time (at most MAX_BACKOFF_S): 10 + 20 + 40 + 80 s by default
MAX_FAILURES = 5
FIRST_BACKOFF_S = 10.0
MAX_BACKOFF_S = 300.0


class Autotuner:
    """Keeps the knobs of ``spec`` tuned (see the module docstring).

    Args:
        spec: the checked spec (its workload, knobs, objectives, trust region).
        paths: the data directory.
        options: :class:`AutotuneOptions` (checked here).
        validate: the validated apply (default: :func:`experiments.validate.engine.validated_apply` bound to
            ``paths`` and the tuner's stop event, imported when first needed).
        tuner_id: continue the tuner of this id (its history and state) instead of starting a new one.
        workload: called at the start of each cycle, returns overrides of the spec's workload fields (a
            benchmark's changing load); default: none.
        on_event: ``on_event(kind, fields)`` for progress display (kinds: ``state``, ``cycle``, ``step``).
        settings: the operator's settings (default: loaded when the spec is checked).
    Raises:
        AutotuneError: bad options (and, from :meth:`run`, no validated apply installed).
        AutotuneNotFound: ``tuner_id`` unknown. SpecError: the spec does not fit
            this machine (a new tuner is checked before anything is written).
    """

    def __init__(self, spec: StudySpec, *, paths: Paths, options: AutotuneOptions, validate: Validator | None = None,
                 tuner_id: str | None = None, source: str = "<spec>",
                 workload: Callable[[], dict[str, Any]] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 settings: Settings | None = None, min_gain: float = 0.02) -> None:
        self.spec, self.paths, self.options = spec, paths.ensure(), options.check()
        self.source, self.settings, self.min_gain = source, settings, min_gain
        self.workload = workload
        self.on_event = on_event or (lambda kind, fields: None)
        self.stop_event = threading.Event()
        self._validate = validate
        resume = tuner_id is not None
        self.scale: float = 1.0
        if not resume:
            self.check()  # a spec that does not fit this machine leaves no tuner behind
        self.id = tuner_id or new_tuner_id()
        self.store = TunerStore(self.paths, self.id, create=not resume)
        meta = self.store.meta() if resume else {}
        self.cycle: int = int(meta.get("cycle", 0))
        self.scale = float(meta.get("trust_scale", 1.0))
        self.quiet: int = int(meta.get("quiet_cycles", 0))
        self.converged: bool = bool(meta.get("converged", False))
        self.reference: dict[str, list[float]] | None = meta.get("reference")
        self.current: dict[str, Any] = dict(meta.get("current") or {})
        self.steps = Steps(self.paths, self.store)
        self.failures = 0
        self.state = "starting"
        self.store.update(id=self.id, spec=spec.model_dump(mode="json"), source=source, options=options.as_dict(),
                          knobs=list(spec.knobs), objectives=dict(spec.objectives), state="starting",
                          pid=os.getpid(), started=meta.get("started", time.time()), cycle=self.cycle,
                          restarts=int(meta.get("restarts", -1)) + 1)

    # ------------------------------------------------------------ plumbing
    def _set(self, state: str, **fields: Any) -> None:
        self.state = state
        self.store.update(state=state, **fields)
        self.on_event("state", {"state": state, "cycle": self.cycle, **fields})

    def _save(self) -> None:
        self.store.update(cycle=self.cycle, trust_scale=self.scale, quiet_cycles=self.quiet,
                          converged=self.converged, reference=self.reference, current=self.current,
                          kept_steps=self.steps.kept_ids())

    def _spec(self, trials: int) -> StudySpec:
        override = self.workload() if self.workload is not None else None
        return probe.scaled_spec(self.spec, scale=self.scale, trials=trials, window_s=self.options.window_s,
                                 workload=override)

    def _plan(self, spec: StudySpec, trials: int) -> StudyPlan:
        return prepare(spec, paths=self.paths, trials=trials, source=self.source, settings=self.settings)

    def validator(self) -> Validator:
        """The validated apply the tuner uses (the engine, bound to the data directory and the stop event)."""
        if self._validate is None:
            # the validated apply (experiments.validate.engine), imported when first needed
            try:
                validated_apply = importlib.import_module("experiments.validate.engine").validated_apply
            except ImportError as err:
                raise AutotuneError(f"the validated apply (experiments.validate.engine) is not installed here "
                                    f"({err}); the continuous tuner never applies without it") from None

            def _engine(req: ValidationRequest) -> ValidationReport:
                return validated_apply(req, paths=self.paths, stop=self.stop_event,
                                       on_event=lambda kind, fields: self.on_event("validation", {"event": kind,
                                                                                                   **fields}))
            self._validate = _engine
        return self._validate

    def check(self) -> StudyPlan:
        """Check the spec on this machine (as a study would). Raises SpecError."""
        return self._plan(self._spec(self.options.study_trials), self.options.study_trials)

    # ---------------------------------------------------------------- run
    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Cycles until ``options.cycles`` / ``options.duration_s`` or ``stop`` (or :meth:`stop`); returns the
        final meta. The duration is a bound: a cycle still running when it ends stops like on :meth:`stop`.
        A stop during a study or a validation ends it with its knobs restored; kept steps stay (applications).
        Raises SpecError (the spec does not fit this machine) before any cycle."""
        if stop is not None:
            def relay() -> None:
                stop.wait()
                self.stop_event.set()
            threading.Thread(target=relay, name=f"novatune-autotune-{self.id}-stop", daemon=True).start()
        opts, t0 = self.options, time.monotonic()
        self.check()
        try:
            self.validator()  # AutotuneError now, not after the first study, when there is none
        except AutotuneError as err:
            self._set("failed", ended=time.time(), reason=str(err))
            raise
        start_cycle = self.cycle
        deadline = threading.Timer(opts.duration_s, self.stop_event.set) if opts.duration_s is not None else None
        if deadline is not None:  # the duration bounds the run: a cycle still running then ends, restored
            deadline.daemon = True
            deadline.start()
        try:
            while not self.stop_event.is_set():
                if opts.cycles is not None and self.cycle - start_cycle >= opts.cycles:
                    break
                started = time.monotonic()
                self.cycle += 1
                self._one_cycle()
                if self.state == "failed":
                    break
                wait = (opts.quiet_interval_s if self.converged else opts.interval_s) - (time.monotonic() - started)
                if self.failures:  # a busy knob, a failing workload: back off before the next try
                    wait = max(wait, min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (self.failures - 1)))
                done = opts.cycles is not None and self.cycle - start_cycle >= opts.cycles
                if not done and wait > 0 and self.stop_event.wait(wait):
                    break
        except (KeyboardInterrupt, Interrupted):
            self.stop_event.set()
        except Exception as err:  # a bug: recorded as the tuner's end, then raised
            self._set("failed", ended=time.time(), reason=f"{type(err).__name__}: {err}")
            raise
        finally:
            if deadline is not None:
                deadline.cancel()
        final = "failed" if self.state == "failed" else "stopped"
        timed_out = opts.duration_s is not None and time.monotonic() - t0 >= opts.duration_s
        why = self.store.meta().get("reason") if final == "failed" else (
            f"duration of {opts.duration_s:g} s reached" if timed_out else "stopped")
        self._set(final, ended=time.time(), kept_steps=self.steps.kept_ids(), reason=why)
        return self.store.meta()

    def stop(self) -> None:
        """Ask the loop to stop (a study or a validation in progress ends with its knobs restored)."""
        self.stop_event.set()

    # ------------------------------------------------------------- a cycle
    def _one_cycle(self) -> None:
        rec = CycleRecord(tuner=self.id, cycle=self.cycle, started=time.time(), trust_scale=self.scale)
        try:
            self._cycle(rec)
            self.failures = 0
        except (KeyboardInterrupt, Interrupted):
            rec.decision, rec.reason = "stopped", "stopped during the cycle (knobs restored)"
            self.stop_event.set()
        except NovatuneError as err:  # a busy knob, a workload that failed: the next cycle retries
            self.failures += 1
            rec.decision, rec.error = "error", f"{type(err).__name__}: {err}"
            rec.reason = f"the cycle failed ({self.failures}/{MAX_FAILURES} in a row)"
            log.warning("autotune %s cycle %d: %s", self.id, self.cycle, rec.error)
        finally:
            rec.ended, rec.state = time.time(), self.state
            rec.trust_scale = self.scale
            self.store.append(rec.as_dict())
            self._save()
            self.on_event("cycle", rec.as_dict())
        if self.failures >= MAX_FAILURES:
            self._set("failed", reason=rec.error)

    def _cycle(self, rec: CycleRecord) -> None:
        opts = self.options
        self._set("measuring", cycle=self.cycle)
        spec1 = self._spec(1)
        now = probe.measure(self._plan(spec1, 1), paths=self.paths, name=f"{self.id}-c{self.cycle}-m",
                            windows=opts.windows, stop=self.stop_event)
        rec.measured, rec.summary = now.windows, probe.summarise(now.windows)
        self.current = {k: now.live[k] for k in self.spec.knobs if k in now.live}
        drifted = False
        if self.reference is None:
            rec.drift = {"drifted": False, "fell": False, "reason": "reference measurement"}
            self.reference = now.windows
        else:
            rec.drift = check_drift(self.reference, now.windows, objectives=self.spec.objectives,
                                    drop_limit=opts.drop_limit, drift_limit=opts.drift_limit)
            drifted = bool(rec.drift["drifted"])
        if drifted:
            self._set("drifted", drift=rec.drift["reason"])
            self.converged, self.quiet, self.scale = False, 0, 1.0
            self.reference = now.windows  # the new regime is what later cycles compare with
            if rec.drift["fell"]:
                undone = self.steps.roll_back_last(self.cycle, reason=rec.drift["reason"], knobs=list(self.spec.knobs))
                if undone is not None:
                    rec.step, self.reference = undone.id, None
                    self.on_event("step", undone.as_dict())
        due = self.cycle == 1 or drifted or not self.converged
        kept = False
        if due and not self.stop_event.is_set():
            kept = self._search_and_validate(rec)
        elif not due:
            rec.decision, rec.reason = "none", "converged: re-check only"
        self._converge(kept, drifted)

    def _search_and_validate(self, rec: CycleRecord) -> bool:
        opts = self.options
        self._set("searching")
        spec = self._spec(opts.study_trials)
        rec.study = f"{self.id}-c{self.cycle}-s"
        out = probe.search(self._plan(spec, opts.study_trials), paths=self.paths, name=rec.study,
                           min_gain=self.min_gain, stop=self.stop_event)
        rec.candidate = out.candidate
        if out.candidate is None:
            rec.decision, rec.reason = "no_change", out.reason
            return False
        self._set("validating", candidate=out.candidate)
        path = self.store.dir / "spec.json"
        from experiments.safefs import write_file
        write_file(path, spec.model_dump_json(indent=1).encode(), mode=0o600)
        step = self.steps.validated(self.cycle, out.candidate, validate=self.validator(), spec_path=str(path),
                                    window_s=opts.validation_s, guards=self._guards(),
                                    knobs=list(self.spec.knobs))
        rec.step, rec.decision = step.id, step.decision
        rec.reason = f"{out.reason} -> {step.decision}: {step.reason}"
        self.on_event("step", step.as_dict())
        if self.stop_event.is_set() and step.decision != "kept":
            return False
        if step.decision == "kept":
            self.current.update(step.after or out.candidate)
            self.reference = None  # the next measurement is the new reference
            return True
        return False

    def _guards(self) -> tuple[tuple[str, float], ...]:
        """The primary objective at ``keep_limit`` (a kept step shows a gain), the others at ``drop_limit``."""
        opts = self.options
        return tuple((m, opts.keep_limit if k == 0 else opts.drop_limit) for k, m in enumerate(self.spec.objectives))

    def _converge(self, kept: bool, drifted: bool) -> None:
        opts = self.options
        if kept:
            self.quiet, self.scale = 0, min(opts.max_scale, self.scale * 1.5)
        elif not drifted:
            self.quiet += 1
            self.scale = max(opts.min_scale, self.scale * 0.5)
        if self.quiet >= opts.converge_after and not self.converged:
            self.converged = True
        self._set("converged" if self.converged else ("drifted" if drifted else "measuring"),
                  converged=self.converged, quiet_cycles=self.quiet, trust_scale=self.scale)
