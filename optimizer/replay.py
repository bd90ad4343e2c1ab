"""Replay benchmark: judge samplers on a table of measured configurations.

Each group of the table (e.g. a workload) is a finite grid of configurations
whose objectives were measured. A tuner proposes configurations, the table
answers with the measured values; the summary says how often the best feasible
configuration found within the budget is within 10% of the group's optimum,
beside random search with the same budget and seeds. See docs/replay.md.

Pure decision code: takes a pandas frame, returns dataclasses and rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from optimizer import bo

NA = ""  # a blank cell: the knob does not apply to this configuration
NA_TOKEN = "<n/a>"  # how "not applicable" is shown to an Optuna sampler
SAMPLERS = ("auto", "random", "tpe", "gp", "nsga2", "cmaes", "grid")
TRUE_WORDS = {"true", "1", "yes", "y", "t", "ok", "1.0"}
FALSE_WORDS = {"false", "0", "no", "n", "f", "0.0"}
WITHIN = 0.10
ARD = True  # one length scale for numeric columns, one for categorical/n-a columns
ENCODING = {"onehot": 1.0, "na": 1.0, "num": 1.0}  # feature weights of the auto surrogate


class ReplayError(ValueError):
    """Bad replay input: the message names what is wrong and what is allowed."""


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # "min" | "max"

    @property
    def sign(self) -> float:
        """Multiply by this to get a value to minimise."""
        return 1.0 if self.direction == "min" else -1.0


def parse_objective(text: str) -> Objective:
    name, sep, direction = text.rpartition(":")
    if not sep or not name or direction not in ("min", "max"):
        raise ReplayError(f"--objective {text!r}: expected COLUMN:min or COLUMN:max")
    return Objective(name, direction)


def parse_feasible(values: pd.Series, column: str) -> np.ndarray:
    """Feasibility from a boolean-ish column.

    true/false, 1/0, yes/no (any case) are read as such; the literal ``ok`` is
    true; any other non-empty text (e.g. an error message) is false. A blank
    cell is an error.
    """
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, (bool, np.bool_)):
            out[i] = bool(v)
            continue
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise ReplayError(f"--feasible {column}: row {i} is blank; expected true/false, 1/0, yes/no, ok or an error text")
        s = str(v).strip().lower()
        if s in TRUE_WORDS:
            out[i] = True
        elif s in FALSE_WORDS or s:
            out[i] = False
        else:
            raise ReplayError(f"--feasible {column}: row {i} is blank; expected true/false, 1/0, yes/no, ok or an error text")
    return out


def _cell(v: Any) -> str:
    """A knob cell as text, as it appears in the table ('' = not applicable). 3.0 -> '3'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    s = str(v).strip()
    return s


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


# ------------------------------------------------------------------ the table
@dataclass
class Group:
    name: str
    configs: list[tuple[str, ...]]  # distinct configurations measured in this group
    values: np.ndarray  # (n_configs, n_objectives), median of the rows (see aggregate)
    feasible: np.ndarray  # (n_configs,) bool
    rows: np.ndarray  # (n_configs,) number of rows aggregated

    def optimum(self, j: int, obj: Objective) -> float | None:
        ok = self.values[self.feasible, j]
        if len(ok) == 0:
            return None
        return float(ok.min() if obj.direction == "min" else ok.max())


@dataclass
class ReplayTable:
    knobs: list[str]
    objectives: list[Objective]
    groups: dict[str, Group]
    space: list[tuple[str, ...]]  # every distinct configuration of the table, all groups
    numeric: dict[str, bool]  # knob -> all non-blank values are numbers
    group_column: str = "group"
    feasible_column: str | None = None

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        group: str,
        knobs: list[str],
        objectives: list[Objective],
        feasible: str | None = None,
    ) -> ReplayTable:
        """Validate and aggregate.

        Repeated rows of one (group, configuration) are aggregated: the
        configuration is feasible when at least half of its rows are feasible
        (a tie counts as feasible: it ran at least as often as it failed); its
        objective values are the median of its feasible rows (of all rows when
        none is feasible).
        """
        cols = list(df.columns)
        need = [("--group", group)] + [("--knobs", k) for k in knobs] + [("--objective", o.name) for o in objectives]
        if feasible:
            need.append(("--feasible", feasible))
        for opt, c in need:
            if c not in cols:
                shown = ", ".join(str(x) for x in cols if not str(x).startswith("Unnamed"))
                raise ReplayError(f"{opt} {c!r}: no such column; the table has: {shown}")
        if not knobs:
            raise ReplayError("--knobs: give at least one knob column")
        if len(set(knobs)) != len(knobs):
            raise ReplayError("--knobs: a column is listed twice")
        if not objectives:
            raise ReplayError("give at least one --objective COLUMN:min|max")
        if len(objectives) > 2:
            raise ReplayError("at most two --objective (one, or two for a Pareto front)")
        if len({o.name for o in objectives}) != len(objectives):
            raise ReplayError("--objective: a column is listed twice")
        overlap = ({group} | ({feasible} if feasible else set())) & (set(knobs) | {o.name for o in objectives})
        if overlap or group in knobs:
            raise ReplayError(f"column(s) {sorted(overlap)} used in two roles (group, knob, objective, feasible)")
        if len(df) == 0:
            raise ReplayError("the table has no rows")
        vals = {}
        for o in objectives:
            v = pd.to_numeric(df[o.name], errors="coerce")
            bad = v.isna() & df[o.name].notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise ReplayError(
                    f"--objective {o.name}: not numeric (row {i}: {df[o.name].iloc[i]!r}); objectives must be numbers"
                )
            vals[o.name] = v.to_numpy(dtype=float)
        feas = parse_feasible(df[feasible], feasible) if feasible else np.ones(len(df), dtype=bool)
        for o in objectives:  # a blank objective can only be an infeasible row
            blank = np.isnan(vals[o.name]) & feas
            if blank.any():
                i = int(np.flatnonzero(blank)[0])
                raise ReplayError(f"--objective {o.name}: row {i} is blank but feasible; objectives must be numbers")
        keys = [tuple(_cell(v) for v in row) for row in df[knobs].itertuples(index=False, name=None)]
        gcol = [str(_cell(g)) for g in df[group].tolist()]
        numeric = {}
        for j, k in enumerate(knobs):
            seen = {key[j] for key in keys if key[j] != NA}
            numeric[k] = bool(seen) and all(_num(s) is not None for s in seen)
        Y = np.column_stack([vals[o.name] for o in objectives])
        groups: dict[str, Group] = {}
        frame = pd.DataFrame({"g": gcol, "k": keys, "i": np.arange(len(df))})
        for gname, sub in frame.groupby("g", sort=True):
            idx_by_key: dict[tuple, list[int]] = {}
            for key, i in zip(sub["k"], sub["i"]):
                idx_by_key.setdefault(key, []).append(int(i))
            configs = list(idx_by_key)
            values = np.zeros((len(configs), len(objectives)))
            feasible_c = np.zeros(len(configs), dtype=bool)
            rows = np.zeros(len(configs), dtype=int)
            for c, key in enumerate(configs):
                ii = np.array(idx_by_key[key])
                f = feas[ii]
                feasible_c[c] = f.sum() * 2 >= len(f)
                use = ii[f] if f.any() else ii
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    values[c] = np.nanmedian(Y[use], axis=0)
                rows[c] = len(ii)
            groups[str(gname)] = Group(str(gname), configs, values, feasible_c, rows)
        space = sorted({k for g in groups.values() for k in g.configs}, key=lambda t: tuple((_num(s) is None, _num(s) or 0, s) for s in t))
        return cls(knobs, objectives, groups, space, numeric, group, feasible)

    # -- encoding for the surrogate: one-hot categoricals (incl. n/a), numeric scaled + n/a flag
    def encoder(self, onehot: float = 1.0, na: float = 1.0, num: float = 1.0):
        """Feature map for the surrogate; each argument weighs one kind of column."""
        cols: list[tuple[int, str, Any]] = []
        for j, k in enumerate(self.knobs):
            vals = sorted({c[j] for c in self.space})
            if self.numeric[k]:
                nums = [_num(v) for v in vals if v != NA]
                lo, hi = min(nums), max(nums)
                cols.append((j, "num", (lo, hi)))
                if NA in vals:
                    cols.append((j, "na", None))
            else:
                for v in vals:
                    cols.append((j, "cat", v))

        self._groups = np.array([0 if kind == "num" else 1 for _, kind, _ in cols])

        def encode(configs: list[tuple[str, ...]]) -> np.ndarray:
            X = np.zeros((len(configs), len(cols)))
            for r, c in enumerate(configs):
                for i, (j, kind, arg) in enumerate(cols):
                    v = c[j]
                    if kind == "num":
                        if v != NA:
                            lo, hi = arg
                            X[r, i] = 0.0 if hi == lo else num * (_num(v) - lo) / (hi - lo)
                        else:
                            X[r, i] = 0.0
                    elif kind == "na":
                        X[r, i] = na if v == NA else 0.0
                    else:
                        X[r, i] = onehot if v == arg else 0.0
            return X

        return encode


# ------------------------------------------------------------------ figures
def regret(best: float, optimum: float, direction: str) -> float:
    """Relative regret >= 0: (found - optimum)/|optimum| for min, (optimum - found)/|optimum| for max.

    When the optimum is 0 the regret is the absolute difference.
    """
    gap = best - optimum if direction == "min" else optimum - best
    return max(gap, 0.0) / (abs(optimum) if optimum != 0 else 1.0)


def within(best: float, optimum: float, direction: str) -> bool:
    return regret(best, optimum, direction) <= WITHIN + 1e-12


def _front_2d(P: np.ndarray) -> np.ndarray:
    """Non-dominated rows of a minimisation matrix with two columns."""
    if len(P) == 0:
        return P
    P = P[np.lexsort((P[:, 1], P[:, 0]))]
    keep, best1 = [], math.inf
    for p in P:
        if p[1] < best1:
            keep.append(p)
            best1 = p[1]
    return np.array(keep)


def hypervolume_2d(P: np.ndarray, ref: np.ndarray) -> float:
    F = _front_2d(np.asarray(P, dtype=float).reshape(-1, 2))
    F = F[(F[:, 0] < ref[0]) & (F[:, 1] < ref[1])] if len(F) else F
    hv, prev1 = 0.0, ref[1]
    for p in F:  # sorted by first objective ascending, second descending
        hv += (ref[0] - p[0]) * (prev1 - p[1])
        prev1 = p[1]
    return hv


def hv_ratio(found: np.ndarray, allfeas: np.ndarray) -> float:
    """Hypervolume of the found feasible points / of the true front (minimisation form).

    Both objectives are normalised by the group's feasible ideal and nadir; the
    reference point is 1.1 x nadir in that scale (i.e. (1.1, 1.1)).
    """
    lo, hi = allfeas.min(axis=0), allfeas.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    ref = np.array([1.1, 1.1])
    true = hypervolume_2d((allfeas - lo) / scale, ref)
    if len(found) == 0 or true <= 0:
        return 0.0 if true > 0 else 1.0
    return hypervolume_2d((found - lo) / scale, ref) / true


# ------------------------------------------------------------------ proposers
class _Run:
    """One (group, seed) search: which configurations were evaluated so far."""

    def __init__(self, table: ReplayTable, group: Group, seed: int):
        self.table, self.group, self.seed = table, group, seed
        self.rng = np.random.default_rng(seed)
        self.evaluated: list[int] = []

    def remaining(self) -> np.ndarray:
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


def _prior_for(table: ReplayTable, target: str, weights: np.ndarray | None) -> dict[tuple, float]:
    """Transfer prior from the OTHER groups (never ``target``): per configuration, the mean over
    the other groups of its rank-normalised (scalarised) objective in that group; infeasible = 1.
    Lower is better."""
    acc: dict[tuple, list[float]] = {}
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

    def __init__(self, table, group, seed, transfer=False):
        self.run = _Run(table, group, seed)

    def next(self) -> int:
        rem = self.run.remaining()
        return int(self.run.rng.choice(rem))

    def tell(self, i: int) -> None:
        self.run.evaluated.append(i)


class AutoProposer:
    """novatune's ``auto``: GP + EI over the group's remaining configurations (optimizer.bo.propose)."""

    name = "auto"

    def __init__(self, table: ReplayTable, group: Group, seed: int, transfer: bool = False, n_init: int = 3):
        self.run = _Run(table, group, seed)
        self.X = table.encoder(**ENCODING)(group.configs)
        self.groups = table._groups if ARD else None
        self.n_init = n_init
        self.transfer = transfer
        self.multi = len(table.objectives) > 1
        self.prior = None
        if transfer and not self.multi:
            p = _prior_for(table, group.name, None)
            self.prior = np.array([p.get(c, 0.5) for c in group.configs])

    def next(self) -> int:
        run = self.run
        rem = run.remaining()
        w = bo.random_weights(len(run.table.objectives), run.rng) if self.multi else None
        prior = self.prior
        if self.transfer and self.multi:
            p = _prior_for(run.table, run.group.name, w)
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
        )
        return int(rem[k])

    def tell(self, i: int) -> None:
        self.run.evaluated.append(i)


class OptunaProposer:
    """An Optuna sampler through ask/tell, define-by-run over the knobs.

    Knobs are suggested in the order given; a knob is suggested only when it
    applies given the values chosen so far (some configuration of the table with
    those values has it non-blank); numeric knobs are suggested as int/float
    ranges, the others as categoricals (with ``<n/a>`` as a choice when the knob
    is blank for some but not all configurations that share the earlier values).
    The proposal is then snapped to the nearest configuration of the group not yet
    evaluated (distance: per knob, 1 for a categorical mismatch or n/a vs value,
    |difference|/range for numbers; ties at random). The trial is told the
    snapped configuration's values, and its params are the proposal's.
    """

    def __init__(self, table: ReplayTable, group: Group, seed: int, sampler_name: str, transfer: bool = False):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.table, self.group, self.name = table, group, sampler_name
        self.run = _Run(table, group, seed)
        self.objs = table.objectives
        self._dist = _KnobSpace(table)
        sampler = make_optuna_sampler(sampler_name, seed, self._dist, len(self.objs) > 1, table.feasible_column is not None)
        dirs = ["minimize" if o.direction == "min" else "maximize" for o in self.objs]
        self.study = optuna.create_study(directions=dirs, sampler=sampler)
        self.queue: list[int] = []
        if transfer:  # warm start: the configurations best on average over the OTHER groups
            p = _prior_for(table, group.name, None)
            order = sorted(range(len(group.configs)), key=lambda i: (p.get(group.configs[i], 0.5), i))
            self.queue = order[:2]
        self._trial = None

    def next(self) -> int:
        rem = sorted(self.run.remaining().tolist())
        if self.queue:  # a warm-start configuration: enqueued, so the sampler sees it as its own trial
            self.study.enqueue_trial(self._dist.params_of(self.group.configs[self.queue.pop(0)]))
        self._trial = self.study.ask()
        proposal = self._dist.suggest(self._trial)
        return self._dist.nearest(proposal, self.group.configs, rem, self.run.rng)

    def tell(self, i: int) -> None:
        self.run.evaluated.append(i)
        g = self.group
        if self.table.feasible_column is not None:
            self._trial.set_constraint("feasible", 0.0 if g.feasible[i] else 1.0)
        vals = [float(v) for v in g.values[i]]
        if any(math.isnan(v) for v in vals):
            vals = [float(np.nanmax(g.values[:, j])) if o.direction == "min" else float(np.nanmin(g.values[:, j]))
                    for j, o in enumerate(self.objs)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. CMA-ES: 'constraints will not be used'
            self.study.tell(self._trial, vals)


class _KnobSpace:
    """The conditional, define-by-run search space derived from blank cells (see OptunaProposer)."""

    def __init__(self, table: ReplayTable):
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        self.table = table
        self.knobs = table.knobs
        space = table.space
        mixed = set()
        for j in range(len(self.knobs)):
            by_prefix: dict[tuple, set] = {}
            for c in space:
                by_prefix.setdefault(c[:j], set()).add(c[j] == NA)
            if any(len(s) == 2 for s in by_prefix.values()):
                mixed.add(j)
        self.kind: dict[str, str] = {}
        self.dist: dict[str, Any] = {}
        self.values: dict[str, list[str]] = {}
        for j, k in enumerate(self.knobs):
            vals = sorted({c[j] for c in space if c[j] != NA}, key=lambda s: (_num(s) is None, _num(s) or 0, s))
            self.values[k] = vals
            if table.numeric[k] and j not in mixed and len(vals) > 1:
                nums = [_num(v) for v in vals]
                if all(float(x).is_integer() for x in nums):
                    self.kind[k] = "int"
                    self.dist[k] = IntDistribution(int(min(nums)), int(max(nums)))
                else:
                    self.kind[k] = "float"
                    self.dist[k] = FloatDistribution(min(nums), max(nums))
            else:
                self.kind[k] = "cat"
                choices = [(_native(v)) for v in vals] + ([NA_TOKEN] if j in mixed else [])
                self.dist[k] = CategoricalDistribution(choices)

    def _snap(self, k: str, v: Any, allowed: list[str]) -> str:
        if self.kind[k] == "cat":
            s = NA if v == NA_TOKEN else _cell(v)
            return s
        x = float(v)
        return min(allowed, key=lambda a: (abs(_num(a) - x), _num(a)))

    def suggest(self, trial) -> tuple[str, ...]:
        consistent = list(self.table.space)
        chosen: list[str] = []
        for j, k in enumerate(self.knobs):
            vals = {c[j] for c in consistent}
            if vals == {NA}:
                chosen.append(NA)
                continue
            d = self.dist[k]
            if self.kind[k] == "int":
                v = trial.suggest_int(k, d.low, d.high)
            elif self.kind[k] == "float":
                v = trial.suggest_float(k, d.low, d.high)
            else:
                v = trial.suggest_categorical(k, d.choices)
            allowed = sorted(v2 for v2 in vals if v2 != NA) or [NA]
            s = self._snap(k, v, allowed)
            chosen.append(s)
            narrowed = [c for c in consistent if c[j] == s]
            consistent = narrowed or consistent
        return tuple(chosen)

    def params_of(self, config: tuple[str, ...]) -> dict[str, Any]:
        out = {}
        consistent = list(self.table.space)
        for j, k in enumerate(self.knobs):
            vals = {c[j] for c in consistent}
            if vals == {NA}:
                continue
            v = config[j]
            if self.kind[k] == "int":
                out[k] = int(float(v))
            elif self.kind[k] == "float":
                out[k] = float(v)
            else:
                out[k] = NA_TOKEN if v == NA else _native(v)
            consistent = [c for c in consistent if c[j] == v] or consistent
        return out

    def distance(self, a: tuple[str, ...], b: tuple[str, ...]) -> float:
        d = 0.0
        for j, k in enumerate(self.knobs):
            x, y = a[j], b[j]
            if x == y:
                continue
            if x == NA or y == NA or self.kind[k] == "cat":
                d += 1.0
            else:
                lo, hi = _num(self.values[k][0]), _num(self.values[k][-1])
                d += abs(_num(x) - _num(y)) / (hi - lo if hi > lo else 1.0)
        return d

    def nearest(self, proposal, configs, candidates: list[int], rng) -> int:
        d = np.array([self.distance(proposal, configs[i]) for i in candidates])
        best = np.flatnonzero(d <= d.min() + 1e-12)
        return int(candidates[int(rng.choice(best))])


def _native(s: str) -> Any:
    """Categorical choice as Optuna stores it: numbers stay numbers, the rest strings."""
    x = _num(s)
    if x is None:
        return s
    return int(x) if x.is_integer() else x


def make_optuna_sampler(name: str, seed: int, space: _KnobSpace | None, multi: bool, constrained: bool):
    """An Optuna sampler by replay name (``tpe``, ``gp``, ``nsga2``, ``cmaes``, ``grid``, ``optuna-random``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings (multivariate TPE)
        return _make_optuna_sampler(name, seed, space, multi, constrained)


def _make_optuna_sampler(name: str, seed: int, space: _KnobSpace | None, multi: bool, constrained: bool):
    import optuna

    if name == "tpe":
        # at replay budgets (~10) the stock 10 random start-up trials would make TPE random search
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=3, multivariate=True, group=True)
    if name == "gp":
        if not bo.torch_available():
            raise ReplayError(
                "--sampler gp: Optuna's GPSampler needs PyTorch, which is not importable here; "
                "install it with: pip install 'novatune[gp]'  (or: pip install torch==2.13.0), "
                "or use --sampler auto (novatune's GP, no PyTorch)"
            )
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=3)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=4)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=3, warn_independent_sampling=False)
    if name == "grid":
        assert space is not None
        grid = {k: list(d.choices) if space.kind[k] == "cat" else [_native(v) for v in space.values[k]]
                for k, d in space.dist.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "optuna-random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ReplayError(f"--sampler {name!r}: unknown; allowed: {', '.join(SAMPLERS)}")


def make_proposer(name: str, table: ReplayTable, group: Group, seed: int, transfer: bool):
    if name == "random":
        return RandomProposer(table, group, seed, transfer)
    if name == "auto":
        return AutoProposer(table, group, seed, transfer)
    if name in SAMPLERS:
        return OptunaProposer(table, group, seed, name, transfer)
    raise ReplayError(f"--sampler {name!r}: unknown; allowed: {', '.join(SAMPLERS)}")


# ------------------------------------------------------------------ the replay
@dataclass
class ReplayResult:
    budget: int
    seeds: int
    sampler: str
    transfer: bool
    trace: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _search(table: ReplayTable, group: Group, seed: int, name: str, budget: int, transfer: bool) -> list[int]:
    p = make_proposer(name, table, group, seed, transfer)
    out: list[int] = []
    for _ in range(min(budget, len(group.configs))):
        i = p.next()
        p.tell(i)
        out.append(i)
    return out


def _seed_for(seed_index: int, group: str) -> int:
    import zlib

    return (zlib.crc32(group.encode()) * 1000003 + seed_index) % (2**31 - 1)


def run_replay(
    table: ReplayTable,
    *,
    budget: int,
    seeds: int,
    sampler: str = "auto",
    transfer: bool = False,
    baseline: bool = True,
    progress=None,
) -> ReplayResult:
    """Replay ``sampler`` and the random baseline on every group, ``seeds`` times each."""
    if budget < 1:
        raise ReplayError(f"--budget {budget}: must be at least 1")
    if seeds < 1:
        raise ReplayError(f"--seeds {seeds}: must be at least 1")
    if sampler not in SAMPLERS:
        raise ReplayError(f"--sampler {sampler!r}: unknown; allowed: {', '.join(SAMPLERS)}")
    if sampler == "gp":
        make_optuna_sampler("gp", 0, None, False, False)  # fails early and clearly without torch
    res = ReplayResult(budget, seeds, sampler, transfer)
    runs = [("sampler", sampler)] + ([("baseline", "random")] if baseline else [])
    for gname, g in table.groups.items():
        for s in range(seeds):
            for role, name in runs:
                picks = _search(table, g, _seed_for(s, gname), name, budget, transfer and role == "sampler")
                for step, i in enumerate(picks, 1):
                    row = {"run": "sampler" if role == "sampler" else "random", "group": gname, "seed": s, "step": step}
                    row.update({k: v for k, v in zip(table.knobs, g.configs[i])})
                    row.update({o.name: float(g.values[i, j]) for j, o in enumerate(table.objectives)})
                    row["feasible"] = bool(g.feasible[i])
                    res.trace.append(row)
            if progress:
                progress(gname, s)
    res.summary = summarise(table, res.trace, budget=budget, seeds=seeds, sampler=sampler, transfer=transfer)
    return res


def summarise(table: ReplayTable, trace: list[dict[str, Any]], *, budget: int, seeds: int, sampler: str, transfer: bool) -> dict:
    """The summary (JSON shape of docs/replay.md) from trace rows and the table's optima."""
    objs = table.objectives
    groups_out: dict[str, Any] = {}
    excluded: list[str] = []
    by = {}
    for r in trace:
        by.setdefault((r["group"], r["run"], r["seed"]), []).append(r)
    signs = np.array([o.sign for o in objs])
    for gname, g in table.groups.items():
        if not g.feasible.any():
            excluded.append(gname)
            groups_out[gname] = {"excluded": "no feasible configuration"}
            continue
        gout: dict[str, Any] = {}
        for j, o in enumerate(objs):
            opt = g.optimum(j, o)
            worst = float(g.values[g.feasible, j].max() if o.direction == "min" else g.values[g.feasible, j].min())
            figs = {}
            for run in ("sampler", "random"):
                w, rg = [], []
                for s in range(seeds):
                    rows = [r for r in by.get((gname, run, s), []) if r["step"] <= budget and r["feasible"]]
                    vals = [r[o.name] for r in rows]
                    best = (min(vals) if o.direction == "min" else max(vals)) if vals else worst
                    w.append(float(bool(vals) and within(best, opt, o.direction)))
                    rg.append(regret(best, opt, o.direction))
                figs[run] = (float(np.mean(w)), float(np.mean(rg)))
            gout[o.name] = {
                "p_within_10pct": figs["sampler"][0],
                "random_p_within_10pct": figs["random"][0],
                "mean_regret": figs["sampler"][1],
                "random_mean_regret": figs["random"][1],
                "optimum": opt,
            }
        if len(objs) == 2:
            allf = g.values[g.feasible] * signs
            hv = {}
            for run in ("sampler", "random"):
                rs = []
                for s in range(seeds):
                    rows = [r for r in by.get((gname, run, s), []) if r["step"] <= budget and r["feasible"]]
                    found = np.array([[r[o.name] for o in objs] for r in rows]).reshape(-1, 2) * signs
                    rs.append(hv_ratio(found, allf))
                hv[run] = float(np.mean(rs))
            gout["hypervolume"] = {"ratio": hv["sampler"], "random_ratio": hv["random"]}
        groups_out[gname] = gout
    overall: dict[str, Any] = {}
    used = [gname for gname in table.groups if gname not in excluded]
    keys = ("p_within_10pct", "random_p_within_10pct", "mean_regret", "random_mean_regret")
    for o in objs:
        overall[o.name] = {k: (float(np.mean([groups_out[gn][o.name][k] for gn in used])) if used else None) for k in keys}
    if len(objs) == 2:
        overall["hypervolume"] = {
            k: (float(np.mean([groups_out[gn]["hypervolume"][k] for gn in used])) if used else None)
            for k in ("ratio", "random_ratio")
        }
    return {
        "budget": budget,
        "seeds": seeds,
        "sampler": sampler,
        "transfer": transfer,
        "groups": groups_out,
        "overall": overall,
        "excluded": excluded,
    }
