"""The replay's searchers: each proposes the next configuration of a group to evaluate.

* :class:`RandomProposer` - uniform over the configurations not yet evaluated (the baseline);
* :class:`AutoProposer` - novatune's ``auto``: GP + expected improvement over the
  group's remaining configurations (``optimizer.bo.propose``);
* :class:`OptunaProposer` - an Optuna sampler (built by ``optimizer.samplers``)
  through ask/tell on the table's :class:`~optimizer.replay.knobspace.KnobSpace`.

With ``transfer``, :func:`transfer_prior` turns the OTHER groups' results into a
prior; the tuned group's own values are never read before they are evaluated.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Protocol

import numpy as np
import optuna
import pandas as pd

from optimizer import bo
from optimizer.replay.encoding import encode, has_resource_knobs, known_log_price
from optimizer.replay.knobspace import KnobSpace
from optimizer.replay.table import Config, Group, ReplayError, ReplayTable
from optimizer.samplers import SAMPLERS, SamplerSettings, optuna_sampler

__all__ = [
    "REPLAY_SETTINGS",
    "AutoProposer",
    "OptunaProposer",
    "Proposer",
    "RandomProposer",
    "make_optuna_sampler",
    "make_proposer",
    "transfer_prior",
]

ARD = True  # one length scale for numeric columns, one for categorical/n-a columns
#: the ridge-trend model joins the GP only when the knobs size resources (encoding.has_resource_knobs): on the
#: replay suite's train split the trend is worth +0.1..+0.2 on the cloud tables and costs -0.2 on the
#: numeric test functions (docs/replay.md); False: the trend always (bo.TREND_WEIGHT)
TREND_RESOURCES_ONLY = True
#: at replay budgets (~10) the stock 10 random start-up trials would make TPE random search;
#: the replay's GP is Optuna's plain GPSampler
REPLAY_SETTINGS = SamplerSettings(n_startup_trials=3, population_size=4, cmaes_startup_trials=3, bounded_gp=False)
#: replay sampler names that are Optuna samplers -> the factory's names
_OPTUNA_NAMES = {"tpe": "tpe", "gp": "gp", "nsga2": "nsga2", "cmaes": "cmaes", "grid": "grid",
                 "optuna-random": "random"}
GP_MISSING = (
    "--sampler gp: Optuna's GPSampler needs PyTorch, which is not importable here; "
    "install it with: pip install 'novatune[gp]'  (or: pip install torch==2.13.0), "
    "or use --sampler auto (novatune's GP, no PyTorch)"
)


class Proposer(Protocol):
    """What the search loop drives: ``next()`` proposes a configuration index, ``tell(i)`` evaluates it."""

    def next(self) -> int: ...

    def tell(self, i: int) -> None: ...


class _Run:
    """One (group, seed) search: which configurations were evaluated so far."""

    def __init__(self, table: ReplayTable, group: Group, seed: int) -> None:
        self.table, self.group, self.seed = table, group, seed
        self.rng = np.random.default_rng(seed)
        self.evaluated: list[int] = []

    def remaining(self) -> np.ndarray:
        """Indices of the group's configurations not evaluated yet, in order."""
        done = set(self.evaluated)
        return np.array([i for i in range(len(self.group.configs)) if i not in done], dtype=int)

    def scores(self, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Minimisation target of the evaluated configurations (scalarised for two objectives)."""
        idx = np.array(self.evaluated, dtype=int)
        Y = self.group.values[idx] * np.array([o.sign for o in self.table.objectives])
        f = self.group.feasible[idx]
        if Y.shape[1] == 1:
            return Y[:, 0], f
        if weights is None:
            weights = np.full(Y.shape[1], 1.0 / Y.shape[1])
        y = np.full(len(idx), np.nan)
        if f.any():
            lo, hi = Y[f].min(0), Y[f].max(0)
            Z = (Y - lo) / np.where(hi > lo, hi - lo, 1.0)
            y = (Z * weights).max(1) + 0.05 * (Z * weights).sum(1) + 1.0  # > 0
        return y, f


def transfer_prior(table: ReplayTable, target: str, weights: np.ndarray | None) -> dict[Config, float]:
    """Transfer prior from the OTHER groups (never ``target``): per configuration, the mean over
    the other groups of its rank-normalised (scalarised) objective in that group; infeasible = 1.
    Lower is better."""
    acc: dict[Config, list[float]] = {}
    signs = np.array([o.sign for o in table.objectives])
    for gname, g in table.groups.items():
        if gname == target or not g.feasible.any():
            continue
        Y = g.values * signs
        if Y.shape[1] == 1:
            y = Y[:, 0]
        else:
            w = weights if weights is not None else np.full(Y.shape[1], 1.0 / Y.shape[1])
            lo, hi = Y[g.feasible].min(0), Y[g.feasible].max(0)
            Z = (Y - lo) / np.where(hi > lo, hi - lo, 1.0)
            y = (Z * w).max(1) + 0.05 * (Z * w).sum(1)
        r = np.ones(len(y))
        ok = np.flatnonzero(g.feasible)
        if len(ok) > 1:
            r[ok] = pd.Series(y[ok]).rank(method="average").to_numpy() / len(ok)
            r[ok] = (r[ok] - r[ok].min()) / max(r[ok].max() - r[ok].min(), 1e-12)
        elif len(ok) == 1:
            r[ok] = 0.0
        for c, v in zip(g.configs, r):
            acc.setdefault(c, []).append(float(v))
    return {c: float(np.mean(v)) for c, v in acc.items()}


class RandomProposer:
    """Uniform sampling of distinct table configurations (the baseline)."""

    name = "random"

    def __init__(self, table: ReplayTable, group: Group, seed: int, transfer: bool = False) -> None:
        self.run = _Run(table, group, seed)

    def next(self) -> int:
        """A configuration not evaluated yet, uniformly at random."""
        rem = self.run.remaining()
        return int(self.run.rng.choice(rem))

    def tell(self, i: int) -> None:
        """Record configuration ``i`` as evaluated."""
        self.run.evaluated.append(i)


class AutoProposer:
    """novatune's ``auto``: GP + EI over the group's remaining configurations (optimizer.bo.propose)."""

    name = "auto"

    def __init__(self, table: ReplayTable, group: Group, seed: int, transfer: bool = False, n_init: int = 3) -> None:
        self.run = _Run(table, group, seed)
        self.X, self.groups = encode(table, group.configs, ard=ARD)
        #: log price per hour of each configuration when the single objective is price x time (else None)
        self.log_price = None if len(table.objectives) > 1 else known_log_price(table, group.configs,
                                                                                table.objectives[0])
        self.n_init = n_init
        #: the trend's weight for bo.propose (None: bo's default; 0.0: the GP alone)
        self.trend: float | None = None if not TREND_RESOURCES_ONLY or has_resource_knobs(table) else 0.0
        self.transfer = transfer
        self.multi = len(table.objectives) > 1
        self.prior: np.ndarray | None = None
        if transfer and not self.multi:
            p = transfer_prior(table, group.name, None)
            self.prior = np.array([p.get(c, 0.5) for c in group.configs])

    def next(self) -> int:
        """The remaining configuration with the largest expected improvement (space-filling first)."""
        run = self.run
        rem = run.remaining()
        w = bo.random_weights(len(run.table.objectives), run.rng) if self.multi else None
        prior = self.prior
        if self.transfer and self.multi:
            p = transfer_prior(run.table, run.group.name, w)
            prior = np.array([p.get(c, 0.5) for c in run.group.configs])
        y, f = run.scores(w) if run.evaluated else (np.zeros(0), np.zeros(0, dtype=bool))
        seen = np.array(run.evaluated, dtype=int)
        n_init = self.n_init if prior is None else 2
        k = bo.propose(
            self.X[seen],
            y,
            f,
            self.X[rem],
            run.rng,
            n_init=n_init,
            log_y=not self.multi,
            prior_seen=None if prior is None else prior[seen],
            prior_candidates=None if prior is None else prior[rem],
            groups=self.groups,
            offset_seen=None if self.log_price is None else self.log_price[seen],
            offset_candidates=None if self.log_price is None else self.log_price[rem],
            trend=self.trend,
        )
        return int(rem[k])

    def tell(self, i: int) -> None:
        """Record configuration ``i`` as evaluated."""
        self.run.evaluated.append(i)


class OptunaProposer:
    """An Optuna sampler through ask/tell, define-by-run over the knobs (:class:`KnobSpace`).

    The proposal is snapped to the nearest configuration of the group not yet
    evaluated (distance: per knob, 1 for a categorical mismatch or n/a vs value,
    |difference|/range for numbers; ties at random). The trial is told the
    snapped configuration's values, and its params are the proposal's.
    """

    def __init__(self, table: ReplayTable, group: Group, seed: int, sampler_name: str, transfer: bool = False) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.table, self.group, self.name = table, group, sampler_name
        self.run = _Run(table, group, seed)
        self.objs = table.objectives
        self._dist = KnobSpace(table)
        sampler = make_optuna_sampler(sampler_name, seed, self._dist)
        dirs: list[Literal["minimize", "maximize"]] = [
            "minimize" if o.direction == "min" else "maximize" for o in self.objs
        ]
        self.study = optuna.create_study(directions=dirs, sampler=sampler)
        self.queue: list[int] = []
        if transfer:  # warm start: the configurations best on average over the OTHER groups
            p = transfer_prior(table, group.name, None)
            order = sorted(range(len(group.configs)), key=lambda i: (p.get(group.configs[i], 0.5), i))
            self.queue = order[:2]
        self._trial: optuna.trial.Trial | None = None

    def next(self) -> int:
        """Ask the sampler; its proposal snapped to the nearest remaining configuration."""
        rem = sorted(self.run.remaining().tolist())
        if self.queue:  # a warm-start configuration: enqueued, so the sampler sees it as its own trial
            self.study.enqueue_trial(self._dist.params_of(self.group.configs[self.queue.pop(0)]))
        self._trial = self.study.ask()
        proposal = self._dist.suggest(self._trial)
        return self._dist.nearest(proposal, self.group.configs, rem, self.run.rng)

    def tell(self, i: int) -> None:
        """Tell the asked trial configuration ``i``'s values (and feasibility, when the table has it).

        Raises:
            RuntimeError: called before :meth:`next`.
        """
        trial = self._trial
        if trial is None:
            raise RuntimeError("tell() before next()")
        self.run.evaluated.append(i)
        g = self.group
        if self.table.feasible_column is not None:
            trial.set_constraint("feasible", 0.0 if g.feasible[i] else 1.0)
        vals = [float(v) for v in g.values[i]]
        if any(math.isnan(v) for v in vals):
            vals = [float(np.nanmax(g.values[:, j])) if o.direction == "min" else float(np.nanmin(g.values[:, j]))
                    for j, o in enumerate(self.objs)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. CMA-ES: 'constraints will not be used'
            self.study.tell(trial, vals)


def make_optuna_sampler(name: str, seed: int, space: KnobSpace | None) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by replay name (``tpe``, ``gp``, ``nsga2``, ``cmaes``, ``grid``, ``optuna-random``),
    built by ``optimizer.samplers.optuna_sampler`` with :data:`REPLAY_SETTINGS` (``grid`` walks ``space``).

    Raises:
        ReplayError: an unknown name; ``gp`` without PyTorch (the message says how to install it).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings (multivariate TPE)
        if name not in _OPTUNA_NAMES:
            raise ReplayError(f"--sampler {name!r}: unknown; allowed: {', '.join(SAMPLERS)}")
        if name == "gp" and not bo.torch_available():
            raise ReplayError(GP_MISSING)
        grid = None
        if name == "grid":
            assert space is not None
            grid = space.grid()
        return optuna_sampler(_OPTUNA_NAMES[name], seed=seed, settings=REPLAY_SETTINGS, grid=grid)


def make_proposer(name: str, table: ReplayTable, group: Group, seed: int, transfer: bool) -> Proposer:
    """The searcher ``name`` for one (group, seed) search.

    Raises:
        ReplayError: an unknown name.
    """
    if name == "random":
        return RandomProposer(table, group, seed, transfer)
    if name == "auto":
        return AutoProposer(table, group, seed, transfer)
    if name in SAMPLERS:
        return OptunaProposer(table, group, seed, name, transfer)
    raise ReplayError(f"--sampler {name!r}: unknown; allowed: {', '.join(SAMPLERS)}")
