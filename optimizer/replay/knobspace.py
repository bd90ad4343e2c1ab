"""The define-by-run search space an Optuna sampler sees during a replay (see ``OptunaProposer``).

Knobs are suggested in the table's order; a knob is suggested only when it
applies given the values chosen so far; numeric knobs are int/float ranges,
the others categoricals (with ``<n/a>`` as a choice where a knob is blank for
some but not all configurations sharing the earlier values).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from optimizer.replay.table import NA, NA_TOKEN, Config, ReplayTable, cell, number, value_order

__all__ = ["KnobSpace", "native"]

Distribution = IntDistribution | FloatDistribution | CategoricalDistribution


def native(s: str) -> Any:
    """Categorical choice as Optuna stores it: numbers stay numbers, the rest strings."""
    x = number(s)
    if x is None:
        return s
    return int(x) if x.is_integer() else x


def _mixed(space: list[Config], n_knobs: int) -> set[int]:
    """Indices of the knobs blank for some but not all configurations sharing the earlier values."""
    mixed = set()
    for j in range(n_knobs):
        by_prefix: dict[Config, set[bool]] = {}
        for c in space:
            by_prefix.setdefault(c[:j], set()).add(c[j] == NA)
        if any(len(s) == 2 for s in by_prefix.values()):
            mixed.add(j)
    return mixed


class KnobSpace:
    """The conditional, define-by-run search space derived from blank cells."""

    def __init__(self, table: ReplayTable) -> None:
        self.table = table
        self.knobs = table.knobs
        mixed = _mixed(table.space, len(self.knobs))
        self.kind: dict[str, str] = {}  # "int" | "float" | "cat"
        self.dist: dict[str, Distribution] = {}
        self.values: dict[str, list[str]] = {}
        for j, k in enumerate(self.knobs):
            vals = sorted({c[j] for c in table.space if c[j] != NA}, key=value_order)
            self.values[k] = vals
            if table.numeric[k] and j not in mixed and len(vals) > 1:
                nums = [float(v) for v in vals]
                if all(x.is_integer() for x in nums):
                    self.kind[k] = "int"
                    self.dist[k] = IntDistribution(int(min(nums)), int(max(nums)))
                else:
                    self.kind[k] = "float"
                    self.dist[k] = FloatDistribution(min(nums), max(nums))
            else:
                self.kind[k] = "cat"
                choices = [native(v) for v in vals] + ([NA_TOKEN] if j in mixed else [])
                self.dist[k] = CategoricalDistribution(choices)

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every knob, as Optuna's GridSampler takes them."""
        return {k: list(d.choices) if isinstance(d, CategoricalDistribution) else [native(v) for v in self.values[k]]
                for k, d in self.dist.items()}

    def _snap(self, k: str, v: Any, allowed: list[str]) -> str:
        """A suggested value as a table cell: a categorical as is, a number to the nearest allowed one."""
        if self.kind[k] == "cat":
            return NA if v == NA_TOKEN else cell(v)
        x = float(v)
        return min(allowed, key=lambda a: (abs(float(a) - x), float(a)))

    def suggest(self, trial: optuna.trial.Trial) -> Config:
        """Ask ``trial`` for each knob that applies given the earlier ones; the proposal as cells."""
        consistent = list(self.table.space)
        chosen: list[str] = []
        for j, k in enumerate(self.knobs):
            vals = {c[j] for c in consistent}
            if vals == {NA}:
                chosen.append(NA)
                continue
            d = self.dist[k]
            v: Any
            if isinstance(d, IntDistribution):
                v = trial.suggest_int(k, d.low, d.high)
            elif isinstance(d, FloatDistribution):
                v = trial.suggest_float(k, d.low, d.high)
            else:
                v = trial.suggest_categorical(k, d.choices)
            allowed = sorted(v2 for v2 in vals if v2 != NA) or [NA]
            s = self._snap(k, v, allowed)
            chosen.append(s)
            narrowed = [c for c in consistent if c[j] == s]
            consistent = narrowed or consistent
        return tuple(chosen)

    def params_of(self, config: Config) -> dict[str, Any]:
        """The params :meth:`suggest` would have asked to land on ``config`` (for ``enqueue_trial``)."""
        out: dict[str, Any] = {}
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
                out[k] = NA_TOKEN if v == NA else native(v)
            consistent = [c for c in consistent if c[j] == v] or consistent
        return out

    def distance(self, a: Config, b: Config) -> float:
        """Per knob: 1 for a categorical mismatch or n/a vs value, |difference|/range for numbers."""
        d = 0.0
        for j, k in enumerate(self.knobs):
            x, y = a[j], b[j]
            if x == y:
                continue
            if x == NA or y == NA or self.kind[k] == "cat":
                d += 1.0
            else:
                lo, hi = float(self.values[k][0]), float(self.values[k][-1])
                d += abs(float(x) - float(y)) / (hi - lo if hi > lo else 1.0)
        return d

    def nearest(self, proposal: Config, configs: list[Config], candidates: list[int], rng: np.random.Generator) -> int:
        """The candidate (index into ``configs``) nearest to ``proposal``; ties at random."""
        d = np.array([self.distance(proposal, configs[i]) for i in candidates])
        best = np.flatnonzero(d <= d.min() + 1e-12)
        return int(candidates[int(rng.choice(best))])
