"""The replay's figures: regret, "within 10 %" and the hypervolume ratio, per group and overall.

The JSON shape of the summary is documented in docs/replay.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.pareto import hypervolume
from optimizer.replay.table import Group, Objective, ReplayTable

__all__ = ["WITHIN", "hv_ratio", "regret", "summarise", "within"]

WITHIN = 0.10
RUNS = ("sampler", "random")
_KEYS = ("p_within_10pct", "random_p_within_10pct", "mean_regret", "random_mean_regret")

Row = dict[str, Any]  # one trace row: run, group, seed, step, knob cells, objective values, feasible
Runs = dict[tuple[str, str, int], list[Row]]  # (group, run, seed) -> its trace rows


def regret(best: float, optimum: float, direction: str) -> float:
    """Relative regret >= 0: (found - optimum)/|optimum| for min, (optimum - found)/|optimum| for max.

    When the optimum is 0 the regret is the absolute difference.
    """
    gap = best - optimum if direction == "min" else optimum - best
    return max(gap, 0.0) / (abs(optimum) if optimum != 0 else 1.0)


def within(best: float, optimum: float, direction: str) -> bool:
    """Whether ``best`` is within :data:`WITHIN` (10 %) of ``optimum``."""
    return regret(best, optimum, direction) <= WITHIN + 1e-12


def hv_ratio(found: np.ndarray, allfeas: np.ndarray) -> float:
    """Hypervolume of the found feasible points / of the true front (minimisation form).

    Both objectives are normalised by the group's feasible ideal and nadir; the
    reference point is 1.1 x nadir in that scale (i.e. (1.1, 1.1)). The
    hypervolume is ``optimizer.pareto.hypervolume``.
    """
    lo, hi = allfeas.min(axis=0), allfeas.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    ref = np.array([1.1, 1.1])
    true = hypervolume((allfeas - lo) / scale, ref)
    if len(found) == 0 or true <= 0:
        return 0.0 if true > 0 else 1.0
    return hypervolume((found - lo) / scale, ref) / true


def _feasible_rows(by: Runs, gname: str, run: str, seed: int, budget: int) -> list[Row]:
    """The feasible rows of one search within the budget."""
    return [r for r in by.get((gname, run, seed), []) if r["step"] <= budget and r["feasible"]]


def _objective_figures(by: Runs, g: Group, j: int, o: Objective, *, budget: int, seeds: int) -> dict[str, Any]:
    """p_within_10pct and mean regret of the sampler and of random search on objective ``j`` of ``g``."""
    opt = g.optimum(j, o)
    assert opt is not None  # the caller skips groups with nothing feasible
    worst = float(g.values[g.feasible, j].max() if o.direction == "min" else g.values[g.feasible, j].min())
    figs = {}
    for run in RUNS:
        w, rg = [], []
        for s in range(seeds):
            vals = [r[o.name] for r in _feasible_rows(by, g.name, run, s, budget)]
            best = (min(vals) if o.direction == "min" else max(vals)) if vals else worst
            w.append(float(bool(vals) and within(best, opt, o.direction)))
            rg.append(regret(best, opt, o.direction))
        figs[run] = (float(np.mean(w)), float(np.mean(rg)))
    return {
        "p_within_10pct": figs["sampler"][0],
        "random_p_within_10pct": figs["random"][0],
        "mean_regret": figs["sampler"][1],
        "random_mean_regret": figs["random"][1],
        "optimum": opt,
    }


def _hypervolume_figures(by: Runs, g: Group, objs: list[Objective], *, budget: int, seeds: int) -> dict[str, float]:
    """Mean hypervolume ratio of the sampler's and of random search's feasible finds in ``g``."""
    signs = np.array([o.sign for o in objs])
    allf = g.values[g.feasible] * signs
    hv = {}
    for run in RUNS:
        rs = []
        for s in range(seeds):
            rows = _feasible_rows(by, g.name, run, s, budget)
            found = np.array([[r[o.name] for o in objs] for r in rows]).reshape(-1, 2) * signs
            rs.append(hv_ratio(found, allf))
        hv[run] = float(np.mean(rs))
    return {"ratio": hv["sampler"], "random_ratio": hv["random"]}


def _overall(groups_out: dict[str, Any], used: list[str], objs: list[Objective]) -> dict[str, Any]:
    """Each figure's mean over the groups used (None when no group is)."""
    overall: dict[str, Any] = {}
    for o in objs:
        overall[o.name] = {k: (float(np.mean([groups_out[gn][o.name][k] for gn in used])) if used else None)
                           for k in _KEYS}
    if len(objs) == 2:
        overall["hypervolume"] = {
            k: (float(np.mean([groups_out[gn]["hypervolume"][k] for gn in used])) if used else None)
            for k in ("ratio", "random_ratio")
        }
    return overall


def summarise(
    table: ReplayTable, trace: list[Row], *, budget: int, seeds: int, sampler: str, transfer: bool
) -> dict[str, Any]:
    """The summary (JSON shape of docs/replay.md) from trace rows and the table's optima.

    A group without a feasible configuration is excluded (listed, not averaged).
    """
    objs = table.objectives
    groups_out: dict[str, Any] = {}
    excluded: list[str] = []
    by: Runs = {}
    for r in trace:
        by.setdefault((r["group"], r["run"], r["seed"]), []).append(r)
    for gname, g in table.groups.items():
        if not g.feasible.any():
            excluded.append(gname)
            groups_out[gname] = {"excluded": "no feasible configuration"}
            continue
        gout: dict[str, Any] = {
            o.name: _objective_figures(by, g, j, o, budget=budget, seeds=seeds) for j, o in enumerate(objs)
        }
        if len(objs) == 2:
            gout["hypervolume"] = _hypervolume_figures(by, g, objs, budget=budget, seeds=seeds)
        groups_out[gname] = gout
    used = [gname for gname in table.groups if gname not in excluded]
    return {
        "budget": budget,
        "seeds": seeds,
        "sampler": sampler,
        "transfer": transfer,
        "groups": groups_out,
        "overall": _overall(groups_out, used, objs),
        "excluded": excluded,
    }
