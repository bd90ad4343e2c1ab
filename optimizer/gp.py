"""Optuna's GPSampler with a bounded cost per ask, for long studies.

A Gaussian process costs O(n^3) to fit on n trials, and Optuna's acquisition
search over mixed (integer + categorical) knobs runs many local searches. At
500 trials that is seconds per ask on a 2-core VM. :class:`BoundedGPSampler`
fits on at most ``max_trials`` completed trials — the best ones (non-dominated
rank, feasible first) and the most recent ones, half each — and runs a lighter
acquisition search. ``benchmarks/optimizer_overhead.py`` measures the result.

Both samplers here leave out of the GP's data the trials with a value outside the
search space: the study's trial 0 is the machine as found, which may lie outside
the spec's range, and Optuna's GP acquisition search asserts that its starting
points (the best trials) sit on the space's grid (Optuna 5.1, ``optim_mixed``).
A GP cannot model a point outside its box anyway; those trials still count in
the study, its Pareto front and its comparison with the baseline.

:class:`BoundedGPSampler` overrides two extension points of Optuna's GPSampler
(``_sample_relative_impl`` and the ``_n_local_search`` /
``_n_preliminary_samples`` settings its ``_optimize_acqf`` reads); when the
installed Optuna lacks them, it behaves exactly as ``GPSampler``
(:data:`BOUNDED` says which). PyTorch is needed at ask time, not at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

__all__ = ["BOUNDED", "BoundedGPSampler", "InRangeGPSampler", "in_space", "select_training_trials"]

BOUNDED = hasattr(optuna.samplers.GPSampler, "_sample_relative_impl")


def _rank(values: np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank (0 = front) of loss rows."""
    n = len(values)
    rank = np.full(n, -1)
    remaining = np.arange(n)
    r = 0
    while remaining.size:
        sub = values[remaining]
        dominated = np.array([
            np.any(np.all(sub <= sub[i], axis=1) & np.any(sub < sub[i], axis=1)) for i in range(len(sub))
        ])
        front = remaining[~dominated]
        rank[front] = r
        remaining = remaining[dominated]
        r += 1
    return rank


def _violation(t: FrozenTrial) -> float:
    """Total constraint violation (Optuna 5: ``trial.constraints`` maps names to values, <= 0 is met)."""
    cons = getattr(t, "constraints", None) or {}
    values = cons.values() if isinstance(cons, dict) else cons
    return float(sum(max(0.0, float(c)) for c in values))


def select_training_trials(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], max_trials: int
) -> list[FrozenTrial]:
    """At most ``max_trials`` of ``trials`` (completed, with values): the best half by
    (constraint violation, non-dominated rank) and the most recent half; order kept."""
    if len(trials) <= max_trials:
        return list(trials)
    sign = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    loss = np.array([np.asarray(t.values, dtype=float) * sign for t in trials])
    viol = np.array([_violation(t) for t in trials])
    rank = np.zeros(len(trials), dtype=int)
    for group in (viol <= 0, viol > 0):  # ranked among their own kind: an infeasible trial dominates nothing
        idx = np.flatnonzero(group)
        if idx.size:
            rank[idx] = _rank(loss[idx])
    n_best = max_trials // 2
    by_quality = sorted(range(len(trials)), key=lambda i: (viol[i] > 0, viol[i], rank[i], -i))
    keep = set(by_quality[:n_best])
    for i in range(len(trials) - 1, -1, -1):  # then the most recent ones
        if len(keep) >= max_trials:
            break
        keep.add(i)
    return [trials[i] for i in sorted(keep)]


def in_space(trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> bool:
    """Every value ``trial`` has for a knob of ``search_space`` lies inside that knob's distribution."""
    for name, dist in search_space.items():
        if name in trial.params:
            try:
                if not dist._contains(dist.to_internal_repr(trial.params[name])):
                    return False
            except (ValueError, TypeError):  # a categorical value that is not one of the choices
                return False
    return True


class InRangeGPSampler(optuna.samplers.GPSampler):
    """Optuna's ``GPSampler`` fitted only on trials whose values lie inside the search space."""

    def _sample_relative_impl(
        self,
        study: optuna.Study,
        completed_trials: list[FrozenTrial],
        running_trials: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        inside = [t for t in completed_trials if in_space(t, search_space)]
        if not inside:  # nothing the GP can use yet: this trial is sampled independently
            return {}
        running = [t for t in running_trials if in_space(t, search_space)]
        return super()._sample_relative_impl(study, inside, running, search_space)


class BoundedGPSampler(InRangeGPSampler):
    """``GPSampler`` fitted on at most ``max_trials`` trials, with a lighter acquisition search.

    Args:
        max_trials: completed trials the GP is fitted on (default 200).
        n_local_search: local searches of the acquisition function (Optuna's default 10).
        n_preliminary_samples: random candidates scored before them (Optuna's default 2048).
        **kwargs: passed to ``GPSampler`` (``seed``, ``n_startup_trials``, ...).
    """

    def __init__(
        self, *, max_trials: int = 200, n_local_search: int = 2, n_preliminary_samples: int = 256, **kwargs: Any
    ) -> None:
        kwargs.setdefault("warn_independent_sampling", False)
        super().__init__(**kwargs)
        if max_trials < 2:
            raise ValueError(f"max_trials must be >= 2, got {max_trials}")
        self.max_trials = max_trials
        if BOUNDED and hasattr(self, "_n_local_search") and hasattr(self, "_n_preliminary_samples"):
            self._n_local_search = n_local_search
            self._n_preliminary_samples = n_preliminary_samples

    def _sample_relative_impl(
        self,
        study: optuna.Study,
        completed_trials: list[FrozenTrial],
        running_trials: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        """Optuna's relative sampling on the trials :func:`select_training_trials` keeps."""
        chosen = select_training_trials(completed_trials, study.directions, self.max_trials)
        return super()._sample_relative_impl(study, chosen, running_trials, search_space)
