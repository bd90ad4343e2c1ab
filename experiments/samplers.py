"""Optuna samplers by name, for a study's search space and budget.

``auto`` picks by the space and the budget (``optimizer.bo.auto_sampler_name``);
the other names are Optuna's samplers, configured the way novatune uses them.
Constraints reach every sampler through ``trial.set_constraint`` (Optuna 5), never
the deprecated ``constraints_func``.

``gp`` is Optuna's GPSampler (bounded to 200 training trials, see
``optimizer.gp``), which needs PyTorch: it is an extra
(``pip install 'novatune[gp]'``, which pins the CPU build ``torch==2.13.0``), so
the default install stays small. Without it, ``auto`` uses novatune's own
scikit-learn surrogate (``optimizer.bo.SurrogateSampler``) where it would have
used a GP.
"""

from __future__ import annotations

import importlib.util
import itertools
from typing import Any

import numpy as np
import optuna

from optimizer.space import CategoricalParam, FloatParam, IntParam, SearchSpace

__all__ = ["SAMPLERS", "SamplerChoice", "build_sampler", "torch_available"]

SAMPLERS = ("auto", "random", "tpe", "gp", "nsga2", "cmaes", "grid")
GP_HINT = "pip install 'novatune[gp]'  (the CPU build: torch==2.13.0)"
#: points per numeric knob on a grid without a step (and the most a stepped one gets)
GRID_POINTS = 5
GRID_MAX = 4096


class SamplerChoice:
    """What was built, and why (logged with the study)."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, name: str, reason: str) -> None:
        self.sampler, self.name, self.reason = sampler, name, reason
        self.enqueue: list[dict[str, Any]] = []  # points to run first, in order (the grid)


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


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


def build_sampler(
    name: str, space: SearchSpace, *, n_objectives: int, budget: int, seed: int | None
) -> SamplerChoice:
    """The sampler ``name`` for ``space``.

    Raises:
        ValueError: an unknown name; ``gp`` without PyTorch (the message says how to
            install it); ``cmaes`` with several objectives or a categorical-only space;
            ``grid`` larger than :data:`GRID_MAX` points.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    reason = f"{name} (asked for)"
    if name == "auto":
        from optimizer.bo import auto_sampler_name

        name = auto_sampler_name(space_kind(space), len(space.params), budget, torch_available())
        reason = (f"auto -> {name}: {space_kind(space)} space of {len(space.params)} knob(s), budget {budget}, "
                  f"{'with' if torch_available() else 'without'} PyTorch")
    startup = max(4, min(10, budget // 3))
    if name == "random":
        return SamplerChoice(optuna.samplers.RandomSampler(seed=seed), name, reason)
    if name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)
        return SamplerChoice(sampler, name, reason)
    if name == "nsga2":
        pop = max(4, min(20, budget // 3))
        return SamplerChoice(optuna.samplers.NSGAIISampler(seed=seed, population_size=pop), name, reason)
    if name == "gp":
        if not torch_available():
            raise ValueError(f"sampler gp is Optuna's GPSampler, which needs PyTorch: {GP_HINT}")
        from optimizer.gp import BoundedGPSampler

        sampler = BoundedGPSampler(seed=seed, n_startup_trials=startup)
        return SamplerChoice(sampler, name, reason)
    if name in ("surrogate", "bo"):
        from optimizer.bo import SurrogateSampler

        return SamplerChoice(SurrogateSampler(seed=seed, n_startup_trials=startup), "surrogate", reason)
    if name == "cmaes":
        if n_objectives > 1:
            raise ValueError("sampler cmaes optimises one objective; use tpe, nsga2 or auto for several")
        if space_kind(space) == "categorical":
            raise ValueError("sampler cmaes needs at least one numeric knob; use tpe or grid for categorical ones")
        # categorical knobs are sampled independently by CMA-ES's fallback (random)
        sampler = optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=1, warn_independent_sampling=False)
        return SamplerChoice(sampler, name, reason)
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
