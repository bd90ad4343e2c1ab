"""Convergence: when has a study stopped paying for its trials?

A study has converged when its *progress measure* has not improved by more than
a threshold for ``patience`` consecutive trials:

* single objective: the best feasible value;
* several objectives: the hypervolume of the feasible points, measured against
  a **frozen** reference point (see below).

Failed, aborted and infeasible trials count toward ``patience``: they are
trials without improvement. Optuna's terminator can be consulted as a second
opinion (:func:`terminator_says_stop`); its verdict is passed to
:meth:`ConvergenceMonitor.update` and reported as the reason when it fires.

Improvement is measured against the *anchor*, the value at the last trial that
counted as an improvement, not against the previous trial: a slow creep of
0.3 % per trial does not reset the counter each time, but once the creep adds
up to more than the threshold it counts.

Reference point policy (multi-objective)
----------------------------------------
A hypervolume is only comparable from trial to trial when the reference point
does not move; with a reference derived from "all points so far", one bad new
point (e.g. a trial with a very high cost) pushes the nadir out and the
hypervolume jumps although nothing better was found. Here the reference is
fixed once, from the first ``reference_trials`` feasible trials (by default just
the first one: the study's enqueued *baseline*):

1. each objective is turned into a loss (minimised) and divided by the
   magnitude of the baseline's loss, so objectives of different units weigh the
   same and "1.0" means "as good as the baseline";
2. the reference is the worst normalised loss of those first trials plus
   ``reference_margin`` (default 0.5, i.e. 50 % worse than the baseline), then
   frozen for the rest of the study.

Points worse than the reference in some objective add no hypervolume: they are
no progress for a tuner whose job is to beat the baseline. The hypervolume
values are therefore unitless (the baseline alone scores
``reference_margin ** n_objectives``).

Example::

    from optimizer.convergence import ConvergenceMonitor, terminator_says_stop

    monitor = ConvergenceMonitor(["maximize", "minimize"], patience=8, min_rel_improvement=0.01)
    for values, feasible in [([100.0, 1.0], True), ([120.0, 1.0], True), (None, False)]:
        state = monitor.update(values, feasible=feasible)
    state.converged, state.reason
    # (False, 'hypervolume 0.35 (last counted improvement at trial 1); 1 of 8 trials without improvement')

    # per trial in an ask/tell loop, after study.tell(...):
    state = monitor.update_from_trial(study.trials[-1], terminator=terminator_says_stop(study))
    if state.converged:
        log.info("stopping: %s", state.reason)

    # or replay a finished study from its value matrix:
    state = ConvergenceMonitor.replay(values, feasible, ["maximize", "minimize"], patience=8)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from optimizer.pareto import hypervolume

if TYPE_CHECKING:
    import optuna

__all__ = ["ConvergenceMonitor", "ConvergenceState", "terminator_says_stop"]

_VALID = ("maximize", "minimize")


@dataclass(frozen=True)
class ConvergenceState:
    """Where a study stands after the last trial fed to the monitor.

    Attributes:
        converged: True once the study should stop.
        reason: one human-readable sentence saying why (or why not yet).
        trials_seen: trials fed so far (failed and infeasible included).
        trials_since_improvement: trials since the last one that improved
            the progress measure by more than the threshold.
        best: best feasible value per objective (each objective on its own;
            for one objective it is the best value). ``None`` before the first
            feasible trial.
        best_trial: number of the last trial that improved the progress
            measure at all (the best value's or the hypervolume's trial).
        improved_at: number of the last trial whose improvement counted
            (exceeded the threshold); the patience counter restarts there.
        hypervolume: current hypervolume (several objectives only, else None).
        history: the progress measure after each trial (best value for one
            objective, normalised hypervolume for several; nan until the first
            feasible trial).
        reference: the frozen reference point, in normalised loss space
            (several objectives, once fixed).
    """

    converged: bool
    reason: str
    trials_seen: int
    trials_since_improvement: int
    best: list[float] | None
    best_trial: int | None
    improved_at: int | None
    hypervolume: float | None
    history: list[float] = field(default_factory=list)
    reference: list[float] | None = None


class ConvergenceMonitor:
    """Feed it one trial at a time; it says when improvement has stalled.

    Args:
        directions: ``"maximize"``/``"minimize"`` per objective.
        patience: K, the number of trials in a row without a significant
            improvement after which the study has converged.
        min_rel_improvement: an improvement counts only when it exceeds this
            fraction of the anchor (the value at the last counted improvement).
            Single objective: ``gain > max(min_rel_improvement * |anchor|,
            min_abs_improvement)``; hypervolume likewise.
        min_abs_improvement: absolute floor of a counted gain (useful when the
            anchor is 0).
        min_trials: never converged before this many trials have been fed
            (default: ``patience``).
        reference_trials: how many first feasible trials fix the reference
            point and the normalisation (several objectives only).
        reference_margin: how far beyond the worst of those trials the
            reference lies, in baseline units (0.5 = 50 % worse).
    """

    def __init__(
        self,
        directions: Sequence[str],
        *,
        patience: int = 10,
        min_rel_improvement: float = 0.01,
        min_abs_improvement: float = 0.0,
        min_trials: int | None = None,
        reference_trials: int = 1,
        reference_margin: float = 0.5,
    ) -> None:
        if not directions:
            raise ValueError("at least one objective direction is needed")
        for d in directions:
            if d not in _VALID:
                raise ValueError(f"direction {d!r} is not one of {list(_VALID)}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if min_rel_improvement < 0 or min_abs_improvement < 0:
            raise ValueError("improvement thresholds must be >= 0")
        if reference_trials < 1:
            raise ValueError(f"reference_trials must be >= 1, got {reference_trials}")
        if reference_margin <= 0:
            raise ValueError(f"reference_margin must be > 0, got {reference_margin}")
        self.directions = tuple(directions)
        self.patience = patience
        self.min_rel_improvement = min_rel_improvement
        self.min_abs_improvement = min_abs_improvement
        self.min_trials = patience if min_trials is None else min_trials
        self.reference_trials = reference_trials
        self.reference_margin = reference_margin
        self._sign = np.array([-1.0 if d == "maximize" else 1.0 for d in self.directions])
        self._losses: list[np.ndarray] = []  # feasible points, raw loss
        self._scale: np.ndarray | None = None
        self._ref: np.ndarray | None = None
        self._history: list[float] = []
        self._seen = 0
        self._since = 0
        self._anchor: float | None = None  # progress value at the last counted improvement
        self._anchor_trial: int | None = None
        self._best_trial: int | None = None  # last trial that changed the progress measure at all
        self._last_gain: float | None = None
        self._state = ConvergenceState(False, "no trials yet", 0, 0, None, None, None, None, [])

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    @property
    def state(self) -> ConvergenceState:
        return self._state

    # ------------------------------------------------------------- feeding
    def update(
        self,
        values: Sequence[float] | np.ndarray | None,
        *,
        feasible: bool = True,
        trial: int | None = None,
        terminator: tuple[bool, str] | None = None,
    ) -> ConvergenceState:
        """Account for one more trial and return the new state.

        Args:
            values: the trial's objective values (None, or any non-finite value,
                for a failed trial).
            feasible: False for a trial that broke a constraint.
            trial: the trial's number, used in reasons (default: the count of
                trials fed before this one).
            terminator: ``(stop, reason)`` from :func:`terminator_says_stop`;
                when ``stop`` is True (and ``min_trials`` is reached) the
                study has converged with that reason.
        """
        number = self._seen if trial is None else trial
        self._seen += 1
        point = None
        if values is not None and feasible:
            arr = np.asarray(values, dtype=float)
            if arr.shape != (len(self.directions),):
                raise ValueError(f"{arr.size} values for {len(self.directions)} objectives")
            if np.all(np.isfinite(arr)):
                point = arr * self._sign
        if point is not None:
            self._losses.append(point)
        progress = self._progress()
        previous = self._history[-1] if self._history else math.nan
        self._history.append(progress if progress is not None else math.nan)
        if progress is not None and (math.isnan(previous) or progress != previous):
            self._best_trial = number
        if progress is not None and self._improved(progress):
            self._last_gain = None if self._anchor is None else abs(progress - self._anchor)
            self._anchor, self._anchor_trial, self._since = progress, number, 0
        else:
            self._since += 1
        self._state = self._make_state(terminator)
        return self._state

    def update_from_trial(
        self, trial: optuna.trial.FrozenTrial, *, terminator: tuple[bool, str] | None = None
    ) -> ConvergenceState:
        """:meth:`update` from an Optuna trial: COMPLETE with all constraints <= 0 is feasible,
        anything else (FAIL, PRUNED, a violated constraint) is a trial without improvement."""
        from optuna.trial import TrialState

        constraints = getattr(trial, "constraints", None)  # Optuna 5: {name: value}
        if constraints is None:  # older Optuna: a list under the "constraints" system attribute
            constraints = trial.system_attrs.get("constraints") or ()
        values = constraints.values() if isinstance(constraints, dict) else constraints
        ok = trial.state == TrialState.COMPLETE and trial.values is not None
        feasible = ok and all(c <= 0 for c in values)
        return self.update(trial.values if ok else None, feasible=feasible, trial=trial.number, terminator=terminator)

    @classmethod
    def replay(
        cls, values: np.ndarray, feasible: Sequence[bool], directions: Sequence[str], **kwargs: float | None
    ) -> ConvergenceState:
        """State after feeding every row of ``values`` (trials x objectives) in order.

        Rows of failed trials may be nan; ``feasible[i]`` False marks trials
        that broke a constraint or failed.
        """
        monitor = cls(directions, **kwargs)  # type: ignore[arg-type]  # - the caller's keyword arguments, as given
        arr = np.asarray(values, dtype=float).reshape(len(feasible), len(directions))
        for row, ok in zip(arr, feasible):
            monitor.update(row, feasible=bool(ok))
        return monitor.state

    # ------------------------------------------------------------ internals
    def _progress(self) -> float | None:
        if not self._losses:
            return None
        pts = np.vstack(self._losses)
        if not self.multi:
            return float(-pts[:, 0].min() if self.directions[0] == "maximize" else pts[:, 0].min())
        if self._ref is None:
            if len(self._losses) < self.reference_trials:
                return None
            first = pts[: self.reference_trials]
            base = first[0]
            self._scale = np.where(np.abs(base) > 0, np.abs(base), 1.0)
            self._ref = (first / self._scale).max(axis=0) + self.reference_margin
        return hypervolume(pts / self._scale, self._ref)

    def _improved(self, progress: float) -> bool:
        if self._anchor is None:
            return True  # the first measurable trial sets the anchor
        if self.multi or self.directions[0] == "maximize":
            gain = progress - self._anchor
        else:
            gain = self._anchor - progress
        return gain > max(self.min_rel_improvement * abs(self._anchor), self.min_abs_improvement) and gain > 0

    def _make_state(self, terminator: tuple[bool, str] | None) -> ConvergenceState:
        best: list[float] | None = None
        if self._losses:
            mins = np.vstack(self._losses).min(axis=0)
            best = [float(v * s) for v, s in zip(mins, self._sign)]
        hv = self._history[-1] if self.multi and self._history and math.isfinite(self._history[-1]) else None
        what = "hypervolume" if self.multi else "best value"
        pct = f"{self.min_rel_improvement * 100:.3g}%"
        converged = False
        if self._anchor is None:
            if self.multi and self._losses:
                reason = f"no reference point yet ({len(self._losses)} of {self.reference_trials} feasible trials)"
            else:
                reason = f"no feasible trial yet ({self._seen} trials)"
        else:
            best_txt = f"best {self._history[-1]:.4g} at trial {self._best_trial}"
            if self._since >= self.patience and self._seen >= self.min_trials:
                converged = True
                reason = f"{what} improved < {pct} over the last {self._since} trials ({best_txt})"
            else:
                if self._since == 0 and self._last_gain is not None:
                    before = self._anchor - self._last_gain if self.multi or self.directions[0] == "maximize" \
                        else self._anchor + self._last_gain
                    rel = f"{abs(self._last_gain / before) * 100:.1f}%" if before != 0 else f"{self._last_gain:.4g}"
                    change = f"improved {rel} at trial {self._anchor_trial}"
                else:
                    change = f"last counted improvement at trial {self._anchor_trial}"
                reason = (
                    f"{what} {self._history[-1]:.4g} ({change}); "
                    f"{self._since} of {self.patience} trials without improvement"
                )
                if self._since >= self.patience:
                    reason += f" (waiting for min_trials={self.min_trials})"
        if terminator is not None and terminator[0] and not converged and self._seen >= self.min_trials:
            converged, reason = True, f"optuna terminator: {terminator[1]}"
        return ConvergenceState(
            converged=converged,
            reason=reason,
            trials_seen=self._seen,
            trials_since_improvement=self._since,
            best=best,
            best_trial=self._best_trial,
            improved_at=self._anchor_trial,
            hypervolume=hv,
            history=list(self._history),
            reference=None if self._ref is None else [float(x) for x in self._ref],
        )


def terminator_says_stop(
    study: optuna.Study,
    *,
    evaluator: str = "regret-bound",
    error: float | None = None,
    min_n_trials: int = 20,
    max_stagnation_trials: int = 30,
) -> tuple[bool, str]:
    """Ask ``optuna.terminator`` whether ``study`` should stop: ``(stop, reason)``.

    Never raises: when the terminator cannot run the answer is
    ``(False, "terminator unavailable: ...")`` and the caller relies on
    :class:`ConvergenceMonitor` alone. Known cases (Optuna 5.0):

    * ``optuna.terminator`` handles single-objective studies only;
    * the default improvement evaluator (``RegretBoundEvaluator``, a Gaussian
      process) needs ``torch``, which novatune does not depend on;
    * its default error evaluator needs cross-validation scores, which a
      systems benchmark does not have: novatune passes the measurement noise
      instead (``error``, e.g. the half-width of the best trial's confidence
      interval) or, without it, uses ``MedianErrorEvaluator``;
    * the module is deprecated since Optuna 4.9 and goes away in 6.0 (its
      ``FutureWarning`` is silenced here).

    Args:
        study: the study (``study.trials`` are read, nothing is written).
        evaluator: ``"regret-bound"`` (Optuna's default; needs torch) or
            ``"stagnation"`` (``BestValueStagnationEvaluator``; no torch).
        error: statistical error of the objective (same units) for the
            regret-bound evaluator.
        min_n_trials: the terminator's own minimum of complete trials.
        max_stagnation_trials: for ``"stagnation"``.
    """
    if evaluator not in ("regret-bound", "stagnation"):
        raise ValueError(f"evaluator must be 'regret-bound' or 'stagnation', got {evaluator!r}")
    if len(study.directions) != 1:
        return False, "terminator unavailable: optuna.terminator supports single-objective studies only"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from optuna.terminator import (
                BestValueStagnationEvaluator,
                MedianErrorEvaluator,
                RegretBoundEvaluator,
                StaticErrorEvaluator,
                Terminator,
            )

            improvement: BestValueStagnationEvaluator | RegretBoundEvaluator
            err_eval: StaticErrorEvaluator | MedianErrorEvaluator
            if evaluator == "stagnation":
                improvement = BestValueStagnationEvaluator(max_stagnation_trials=max_stagnation_trials)
                err_eval = StaticErrorEvaluator(constant=0)
            else:
                try:
                    import torch  # noqa: F401 - imported only to learn whether it imports
                except ImportError:
                    return False, (
                        "terminator unavailable: its regret-bound evaluator needs torch, which is not installed"
                    )
                improvement = RegretBoundEvaluator()
                err_eval = (
                    StaticErrorEvaluator(constant=error) if error is not None else MedianErrorEvaluator(improvement)
                )
            term = Terminator(improvement_evaluator=improvement, error_evaluator=err_eval, min_n_trials=min_n_trials)
            complete = [t for t in study.trials if t.state.name == "COMPLETE"]
            if len(complete) < min_n_trials:
                return False, f"terminator waits for {min_n_trials} complete trials ({len(complete)} so far)"
            room = improvement.evaluate(trials=study.trials, study_direction=study.direction)
            noise = err_eval.evaluate(trials=study.trials, study_direction=study.direction)
            stop = bool(term.should_terminate(study))
    except Exception as err:  # noqa: BLE001 - the terminator is advisory: never let it break a study
        return False, f"terminator unavailable: {type(err).__name__}: {err}"
    name = "best-value stagnation" if evaluator == "stagnation" else "regret bound"
    if stop:
        return True, f"{name} {room:.4g} is below the statistical error {noise:.4g}"
    return False, f"{name} {room:.4g} still exceeds the statistical error {noise:.4g}"
