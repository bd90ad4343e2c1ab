"""Choosing the configuration to ship from a finished study.

Rules (``rule=``):

* ``"knee"`` - the knee of the feasible Pareto front (:func:`optimizer.pareto.knee_index`):
  the balanced compromise.
* ``"max-perf-under-budget"`` - the best ``target`` (default: the first
  objective not named in ``budget``) among trials whose every budgeted
  quantity is ``<=`` its limit, e.g. ``budget={"cost_usd_per_hour": 0.40}``.
* ``"min-cost-under-sla"`` - the best ``target`` (default: the first objective
  whose name contains "cost", else the first minimised objective) among trials
  meeting every SLA condition, e.g. ``sla={"latency_p99_ms": ("<=", 20)}``.
* ``"best"`` - the best ``target`` among the qualifying trials.

``budget`` and ``sla`` filter every rule (a knee "under budget" is the knee of
the front of the trials within budget). A name in ``budget``/``sla``/``target``
is looked up among the objectives first, then in ``metrics[i]`` (any recorded
metric of trial ``i``, e.g. the runner's ``trial.user_attrs["metrics"]``); a
trial missing it does not qualify. Infeasible trials and trials with a
non-finite objective never qualify. Ties on the target go to the trial that is
better on the other objectives (in order), then to the lowest index.

When nothing qualifies, :func:`choose` raises ``ValueError`` naming the rule,
the conditions and the closest candidate (smallest total relative violation).

Example::

    from optimizer.choose import choose

    values = [[1000, 0.30], [1400, 0.80], [1300, 0.45]]     # throughput (max), cost (min)
    names = ["throughput_rps", "cost_usd_per_hour"]
    choose(values, [True] * 3, ["maximize", "minimize"], names).index                       # 2 (knee)
    choose(values, [True] * 3, ["maximize", "minimize"], names,
           rule="max-perf-under-budget", budget={"cost_usd_per_hour": 0.6}).reason
    # 'trial 2: best throughput_rps 1300 among 2 trials with cost_usd_per_hour <= 0.6'
    choose(values, [True] * 3, ["maximize", "minimize"], names, rule="min-cost-under-sla",
           sla={"latency_p99_ms": ("<=", 20)}, metrics=[{"latency_p99_ms": 25}, {"latency_p99_ms": 12},
                                                       {"latency_p99_ms": 19}]).index        # 2
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np

from optimizer.pareto import knee_index

__all__ = ["RULES", "Choice", "choose"]

Rule = Literal["knee", "max-perf-under-budget", "min-cost-under-sla", "best"]
RULES: tuple[str, ...] = ("knee", "max-perf-under-budget", "min-cost-under-sla", "best")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


class Choice(NamedTuple):
    """The chosen trial (index into ``values``), the rule applied and a one-line reason."""

    index: int  # type: ignore[assignment]  # - the field is called index on purpose (callers read choice.index)
    rule: str
    reason: str


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def choose(
    values: np.ndarray | Sequence[Sequence[float]],
    feasible: Sequence[bool],
    directions: Sequence[str],
    objective_names: Sequence[str],
    *,
    rule: Rule = "knee",
    budget: Mapping[str, float] | None = None,
    sla: Mapping[str, tuple[str, float]] | None = None,
    metrics: Sequence[Mapping[str, float]] | None = None,
    target: str | None = None,
    trial_numbers: Sequence[int] | None = None,
) -> Choice:
    """Pick one trial by ``rule`` (see the module docstring).

    Args:
        values: trials x objectives (nan rows for failed trials).
        feasible: per trial, True when it met the study's constraints.
        directions: ``"maximize"``/``"minimize"`` per objective.
        objective_names: a name per objective column.
        rule: ``"knee"``, ``"max-perf-under-budget"``, ``"min-cost-under-sla"`` or ``"best"``.
        budget: ``{name: upper limit}`` (``<=``); required by ``max-perf-under-budget``.
        sla: ``{name: (op, bound)}`` with op in ``<= < >= >``; required by ``min-cost-under-sla``.
        metrics: per trial, other recorded metrics (for budget/sla/target names
            that are not objectives).
        target: the quantity the single-target rules optimise (must be an objective).
        trial_numbers: names for the trials in reasons and errors (default: indices).

    Raises:
        ValueError: unknown rule/name/operator, a missing budget or SLA, or no
            trial qualifies (the message names the closest candidate).
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {list(RULES)}")
    arr = _matrix(values, feasible, directions, objective_names, metrics)
    n = arr.shape[0]
    names = list(objective_names)
    numbers = list(trial_numbers) if trial_numbers is not None else list(range(n))
    budget = dict(budget or {})
    conditions = _conditions(rule, budget, dict(sla or {}))
    lookup = _Lookup(arr, names, metrics)
    for name, _, _ in conditions:
        if name not in names and (metrics is None or not any(name in m for m in metrics)):
            raise ValueError(f"{name!r} is neither an objective {names} nor a recorded metric")

    base = np.asarray(feasible, dtype=bool) & np.all(np.isfinite(arr), axis=1)
    ok = base.copy()
    for i in np.flatnonzero(base):
        if not _meets(lookup, int(i), conditions):
            ok[i] = False
    where = " and ".join(f"{k} {op} {_fmt(b)}" for k, op, b in conditions)
    if not ok.any():
        raise ValueError(_no_candidate(rule, where, base, conditions, lookup, numbers, n))
    idx = np.flatnonzero(ok)
    scope = f"among {len(idx)} trials with {where}" if where else f"among {len(idx)} feasible trials"
    if rule == "knee":
        k = int(idx[knee_index(arr[idx], directions)])
        shown = ", ".join(f"{nm}={_fmt(arr[k, j])}" for j, nm in enumerate(names))
        return Choice(k, rule, f"trial {numbers[k]}: knee of the Pareto front {scope} ({shown})")
    tgt = target or _default_target(rule, names, directions, budget)
    return _best_on_target(arr, idx, names, directions, tgt, rule, scope, numbers)


def _matrix(
    values: np.ndarray | Sequence[Sequence[float]],
    feasible: Sequence[bool],
    directions: Sequence[str],
    objective_names: Sequence[str],
    metrics: Sequence[Mapping[str, float]] | None,
) -> np.ndarray:
    """``values`` as a trials x objectives float matrix.

    Raises:
        ValueError: the shape does not match the directions, names, flags or metric dicts.
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != len(directions) or len(objective_names) != len(directions):
        raise ValueError(
            f"values must be trials x {len(directions)} objectives with {len(directions)} names, got shape {arr.shape}"
        )
    n = arr.shape[0]
    if len(feasible) != n or (metrics is not None and len(metrics) != n):
        raise ValueError(f"{n} trials but {len(feasible)} feasibility flags / {len(metrics or [])} metric dicts")
    return arr


def _conditions(
    rule: str, budget: Mapping[str, float], sla: Mapping[str, tuple[str, float]]
) -> list[tuple[str, str, float]]:
    """The budget (``<=``) and SLA conditions as (name, operator, bound).

    Raises:
        ValueError: the rule's budget or SLA is missing, or an SLA operator is unknown.
    """
    if rule == "max-perf-under-budget" and not budget:
        raise ValueError("rule 'max-perf-under-budget' needs a budget, e.g. {'cost_usd_per_hour': 0.5}")
    if rule == "min-cost-under-sla" and not sla:
        raise ValueError("rule 'min-cost-under-sla' needs an SLA, e.g. {'latency_p99_ms': ('<=', 20)}")
    conditions: list[tuple[str, str, float]] = [(k, "<=", float(v)) for k, v in budget.items()]
    for k, spec in sla.items():
        op, bound = spec
        if op not in _OPS:
            raise ValueError(f"SLA on {k!r}: operator {op!r} is not one of {list(_OPS)}")
        conditions.append((k, op, float(bound)))
    return conditions


class _Lookup:
    """A trial's value of a name: an objective first, then a recorded metric; NaN when missing."""

    def __init__(self, arr: np.ndarray, names: list[str], metrics: Sequence[Mapping[str, float]] | None) -> None:
        self.arr, self.names, self.metrics = arr, names, metrics

    def __call__(self, i: int, name: str) -> float:
        if name in self.names:
            return float(self.arr[i, self.names.index(name)])
        if self.metrics is not None and name in self.metrics[i]:
            v = self.metrics[i][name]
            return float(v) if v is not None else math.nan
        return math.nan


def _meets(lookup: Callable[[int, str], float], i: int, conditions: list[tuple[str, str, float]]) -> bool:
    """Whether trial ``i`` has every condition's quantity, finite and within its bound."""
    for name, op, bound in conditions:
        v = lookup(i, name)
        if not (math.isfinite(v) and _OPS[op](v, bound)):
            return False
    return True


def _best_on_target(
    arr: np.ndarray,
    idx: np.ndarray,
    names: list[str],
    directions: Sequence[str],
    tgt: str,
    rule: str,
    scope: str,
    numbers: list[int],
) -> Choice:
    """The qualifying trial best on ``tgt``; ties go to the other objectives in order, then the lowest index.

    Raises:
        ValueError: ``tgt`` is not an objective.
    """
    if tgt not in names:
        raise ValueError(f"target {tgt!r} is not an objective {names}")
    t = names.index(tgt)
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    loss = arr * sign
    order = [t] + [j for j in range(len(names)) if j != t]
    best = min(idx, key=lambda i: (*(loss[i, j] for j in order), i))
    word = "best" if rule == "best" else ("highest" if directions[t] == "maximize" else "lowest")
    return Choice(int(best), rule, f"trial {numbers[best]}: {word} {tgt} {_fmt(arr[best, t])} {scope}")


def _default_target(rule: str, names: list[str], directions: Sequence[str], budget: Mapping[str, float]) -> str:
    if rule == "max-perf-under-budget":
        free = [nm for nm in names if nm not in budget]
        maxi = [nm for nm, d in zip(names, directions) if d == "maximize" and nm not in budget]
        if maxi or free:
            return (maxi or free)[0]
        raise ValueError("every objective is budgeted: pass target= to say what to maximise")
    if rule == "min-cost-under-sla":
        cost = [nm for nm in names if "cost" in nm.lower()]
        mini = [nm for nm, d in zip(names, directions) if d == "minimize"]
        if cost or mini:
            return (cost or mini)[0]
        raise ValueError("no cost-like or minimised objective: pass target= to say what to minimise")
    return names[0]


def _no_candidate(
    rule: str,
    where: str,
    base: np.ndarray,
    conditions: list[tuple[str, str, float]],
    lookup: Callable[[int, str], float],
    numbers: list[int],
    n: int,
) -> str:
    if not base.any():
        return f"rule {rule!r}: no feasible trial with finite objectives ({n} trials, none usable)"
    best_i, best_score, best_txt = -1, math.inf, ""
    for i in np.flatnonzero(base):
        score, parts = 0.0, []
        for name, op, bound in conditions:
            v = lookup(int(i), name)
            if not math.isfinite(v):
                score, parts = math.inf, [f"{name} not recorded"]
                break
            if _OPS[op](v, bound):
                continue
            rel = abs(v - bound) / max(abs(bound), 1e-12)
            score += rel
            side = "over" if op in ("<=", "<") else "under"
            parts.append(f"{name}={_fmt(v)}, {rel * 100:.1f}% {side} {_fmt(bound)}")
        if score < best_score or best_i < 0:
            best_i, best_score, best_txt = int(i), score, "; ".join(parts)
    return (
        f"rule {rule!r}: no feasible trial has {where}; "
        f"closest is trial {numbers[best_i]} ({best_txt})"
    )
