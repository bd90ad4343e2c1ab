"""Optuna samplers by name: the one factory for studies and for the offline replay.

:func:`optuna_sampler` builds a sampler by name with explicit :class:`SamplerSettings`
(start-up trials, population, which GP); the study runner and the replay
(``optimizer.replay``) both build theirs through it, each with its own settings.
:func:`build_sampler` is the study's face: it resolves ``auto`` by the space and
the budget (``optimizer.bo.auto_sampler_name``), refuses choices that cannot work
and returns a :class:`SamplerChoice` saying what was built and why. Constraints
reach every sampler through ``trial.set_constraint`` (Optuna 5), never the
deprecated ``constraints_func``.

``gp`` is Optuna's GPSampler (in studies bounded to 200 training trials, see
``optimizer.gp``), which needs PyTorch: it is an extra
(``pip install 'novatune[gp]'``, which pins the CPU build ``torch==2.13.0``), so
the default install stays small. Without it, ``auto`` uses novatune's own
scikit-learn surrogate (``optimizer.bo.SurrogateSampler``) where it would have
used a GP.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from optimizer.space import CategoricalParam, FloatParam, IntParam, SearchSpace

__all__ = [
    "GP_HINT",
    "GRID_MAX",
    "GRID_POINTS",
    "SAMPLERS",
    "SamplerChoice",
    "SamplerSettings",
    "build_sampler",
    "grid_values",
    "optuna_sampler",
    "space_kind",
    "study_settings",
    "torch_installed",
]

#: the names a study (and ``novatune replay --sampler``) accepts
SAMPLERS = ("auto", "random", "tpe", "gp", "nsga2", "cmaes", "grid")
GP_HINT = "pip install 'novatune[gp]'  (the CPU build: torch==2.13.0)"
#: points per numeric knob on a grid without a step (and the most a stepped one gets)
GRID_POINTS = 5
GRID_MAX = 4096


@dataclass(frozen=True)
class SamplerSettings:
    """How :func:`optuna_sampler` configures a sampler (studies and the replay differ here).

    Attributes:
        n_startup_trials: random trials before TPE, GP or the surrogate model the results.
        population_size: NSGA-II's population.
        cmaes_startup_trials: CMA-ES's random start-up trials.
        bounded_gp: ``gp`` is :class:`optimizer.gp.BoundedGPSampler` (at most 200 training
            trials, a lighter acquisition search) when true, Optuna's plain GPSampler when false
            (both fitted on the trials inside the search space only: :mod:`optimizer.gp`).
    """

    n_startup_trials: int
    population_size: int
    cmaes_startup_trials: int
    bounded_gp: bool = True


class SamplerChoice:
    """What was built, and why (logged with the study)."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, name: str, reason: str) -> None:
        self.sampler, self.name, self.reason = sampler, name, reason
        self.enqueue: list[dict[str, Any]] = []  # points to run first, in order (the grid)


def torch_installed() -> bool:
    """True when PyTorch is installed (found without importing it; ``optimizer.bo.torch_available``
    imports it to be sure it works)."""
    return importlib.util.find_spec("torch") is not None


def study_settings(budget: int) -> SamplerSettings:
    """A study's settings for ``budget`` trials: a third of the budget as start-up trials (4 to 10)
    and as NSGA-II's population (4 to 20), one CMA-ES start-up trial, the bounded GP."""
    return SamplerSettings(
        n_startup_trials=max(4, min(10, budget // 3)),
        population_size=max(4, min(20, budget // 3)),
        cmaes_startup_trials=1,
        bounded_gp=True,
    )


def optuna_sampler(
    name: str, *, seed: int | None, settings: SamplerSettings, grid: dict[str, list[Any]] | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (``random``, ``tpe``, ``nsga2``, ``gp``, ``surrogate``/``bo``, ``cmaes``,
    or ``grid`` with ``grid`` given: Optuna's GridSampler over those values), configured by ``settings``.

    ``gp`` needs PyTorch when it is asked, not here: callers check first and say how to install it.

    Raises:
        ValueError: an unknown name, or ``grid`` without a grid.
    """
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=settings.n_startup_trials, multivariate=True, group=True
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=settings.population_size)
    if name == "gp":
        from optimizer.gp import BoundedGPSampler, InRangeGPSampler  # imported when used: Optuna's GP internals

        if not settings.bounded_gp:
            return InRangeGPSampler(seed=seed, n_startup_trials=settings.n_startup_trials)
        return BoundedGPSampler(seed=seed, n_startup_trials=settings.n_startup_trials)
    if name in ("surrogate", "bo"):
        from optimizer.bo import SurrogateSampler

        return SurrogateSampler(seed=seed, n_startup_trials=settings.n_startup_trials)
    if name == "cmaes":
        # categorical knobs are sampled independently by CMA-ES's fallback (random)
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=settings.cmaes_startup_trials, warn_independent_sampling=False
        )
    if name == "grid" and grid is not None:
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "grid":
        raise ValueError("sampler grid: no grid given")
    raise ValueError(f"unknown sampler {name!r}")


def space_kind(space: SearchSpace) -> str:
    """``numeric``, ``categorical`` or ``mixed``."""
    cats = sum(isinstance(p, CategoricalParam) for p in space.params)
    if cats == 0:
        return "numeric"
    return "categorical" if cats == len(space.params) else "mixed"


def grid_values(space: SearchSpace) -> dict[str, list[Any]]:
    """The grid the ``grid`` sampler walks: every choice, every step of a stepped range (at most
    :data:`GRID_POINTS` evenly spaced ones), :data:`GRID_POINTS` points of an unstepped range."""
    out: dict[str, list[Any]] = {}
    for p in space.params:
        if isinstance(p, CategoricalParam):
            out[p.name] = list(p.choices)
        elif isinstance(p, IntParam):
            vals = list(range(p.low, p.high + 1, p.step))
            if len(vals) > GRID_POINTS:
                idx = np.linspace(0, len(vals) - 1, GRID_POINTS).round().astype(int)
                vals = [vals[i] for i in dict.fromkeys(idx.tolist())]
            out[p.name] = vals
        else:
            assert isinstance(p, FloatParam)
            out[p.name] = [float(v) for v in np.linspace(p.low, p.high, GRID_POINTS)]
    return out


def _auto(space: SearchSpace, budget: int) -> tuple[str, str]:
    """``auto``'s pick for ``space`` and ``budget``, and the reason shown with the study."""
    from optimizer.bo import auto_sampler_name

    kind, torch = space_kind(space), torch_installed()
    name = auto_sampler_name(kind, len(space.params), budget, torch)
    reason = (f"auto -> {name}: {kind} space of {len(space.params)} knob(s), budget {budget}, "
              f"{'with' if torch else 'without'} PyTorch")
    return name, reason


def _grid_choice(space: SearchSpace, seed: int | None, reason: str) -> SamplerChoice:
    """The study's ``grid``: a random sampler with every valid grid point enqueued in a seeded order.

    Raises:
        ValueError: more than :data:`GRID_MAX` points, or none that satisfies the knob orderings.
    """
    grid = grid_values(space)
    size = int(np.prod([len(v) for v in grid.values()]))
    if size > GRID_MAX:
        raise ValueError(f"the grid of this space has {size} points, more than {GRID_MAX}; narrow the knob ranges, "
                         "give them a step, or use another sampler")
    keys = list(grid)
    # every valid point, in a seeded order, enqueued: combinations a knob ordering forbids
    # (dirty_background_ratio >= dirty_ratio) are never proposed
    points = [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]
    points = [pt for pt in points if space.is_valid(pt)]
    if not points:
        raise ValueError("no point of the grid satisfies the knob orderings; widen the ranges")
    np.random.default_rng(seed).shuffle(points)
    choice = SamplerChoice(optuna.samplers.RandomSampler(seed=seed), "grid",
                           f"{reason}: {len(points)} valid points of {size}")
    choice.enqueue = points
    return choice


def build_sampler(
    name: str, space: SearchSpace, *, n_objectives: int, budget: int, seed: int | None
) -> SamplerChoice:
    """The sampler ``name`` for a study over ``space`` with ``budget`` trials (settings: :func:`study_settings`).

    Raises:
        ValueError: an unknown name; ``gp`` without PyTorch (the message says how to
            install it); ``cmaes`` with several objectives or a categorical-only space;
            ``grid`` larger than :data:`GRID_MAX` points.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    reason = f"{name} (asked for)"
    if name == "auto":
        name, reason = _auto(space, budget)
    if name == "gp" and not torch_installed():
        raise ValueError(f"sampler gp is Optuna's GPSampler, which needs PyTorch: {GP_HINT}")
    if name == "cmaes":
        if n_objectives > 1:
            raise ValueError("sampler cmaes optimises one objective; use tpe, nsga2 or auto for several")
        if space_kind(space) == "categorical":
            raise ValueError("sampler cmaes needs at least one numeric knob; use tpe or grid for categorical ones")
    if name == "grid":
        return _grid_choice(space, seed, reason)
    sampler = optuna_sampler(name, seed=seed, settings=study_settings(budget))
    return SamplerChoice(sampler, "surrogate" if name in ("surrogate", "bo") else name, reason)
