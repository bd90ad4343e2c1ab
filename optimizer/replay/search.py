"""The replay's search loop: every group, every seed, the sampler and the random baseline."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optimizer.replay.proposers import make_optuna_sampler, make_proposer
from optimizer.replay.scoring import summarise
from optimizer.replay.table import Group, ReplayError, ReplayTable
from optimizer.samplers import SAMPLERS

__all__ = ["ReplayResult", "run_replay"]


@dataclass
class ReplayResult:
    """One replay: its settings, one trace row per evaluation, and the summary (docs/replay.md)."""

    budget: int
    seeds: int
    sampler: str
    transfer: bool
    trace: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _search(table: ReplayTable, group: Group, seed: int, name: str, budget: int, transfer: bool) -> list[int]:
    """The configurations (indices into ``group.configs``) searcher ``name`` evaluates, in order."""
    p = make_proposer(name, table, group, seed, transfer)
    out: list[int] = []
    for _ in range(min(budget, len(group.configs))):
        i = p.next()
        p.tell(i)
        out.append(i)
    return out


def _seed_for(seed_index: int, group: str) -> int:
    """The seed of search ``seed_index`` on ``group``: fixed, and different per group."""
    return (zlib.crc32(group.encode()) * 1000003 + seed_index) % (2**31 - 1)


def _check(budget: int, seeds: int, sampler: str) -> None:
    """Refuse arguments the replay cannot run with, before any search.

    Raises:
        ReplayError: budget or seeds below 1, an unknown sampler, ``gp`` without PyTorch.
    """
    if budget < 1:
        raise ReplayError(f"--budget {budget}: must be at least 1")
    if seeds < 1:
        raise ReplayError(f"--seeds {seeds}: must be at least 1")
    if sampler not in SAMPLERS:
        raise ReplayError(f"--sampler {sampler!r}: unknown; allowed: {', '.join(SAMPLERS)}")
    if sampler == "gp":
        make_optuna_sampler("gp", 0, None)  # fails early and clearly without torch


def _rows(table: ReplayTable, g: Group, gname: str, seed: int, run: str, picks: list[int]) -> list[dict[str, Any]]:
    """Trace rows of one search: run, group, seed, step, knob cells, objective values, feasible."""
    rows = []
    for step, i in enumerate(picks, 1):
        row: dict[str, Any] = {"run": run, "group": gname, "seed": seed, "step": step}
        row.update({k: v for k, v in zip(table.knobs, g.configs[i])})
        row.update({o.name: float(g.values[i, j]) for j, o in enumerate(table.objectives)})
        row["feasible"] = bool(g.feasible[i])
        rows.append(row)
    return rows


def run_replay(
    table: ReplayTable,
    *,
    budget: int,
    seeds: int,
    sampler: str = "auto",
    transfer: bool = False,
    baseline: bool = True,
    progress: Callable[[str, int], Any] | None = None,
) -> ReplayResult:
    """Replay ``sampler`` and the random baseline on every group, ``seeds`` times each.

    ``progress(group, seed)`` is called after each group's seed.

    Raises:
        ReplayError: budget or seeds below 1, an unknown sampler, ``gp`` without PyTorch.
    """
    _check(budget, seeds, sampler)
    res = ReplayResult(budget, seeds, sampler, transfer)
    runs = [("sampler", sampler)] + ([("baseline", "random")] if baseline else [])
    for gname, g in table.groups.items():
        for s in range(seeds):
            for role, name in runs:
                picks = _search(table, g, _seed_for(s, gname), name, budget, transfer and role == "sampler")
                res.trace += _rows(table, g, gname, s, "sampler" if role == "sampler" else "random", picks)
            if progress:
                progress(gname, s)
    res.summary = summarise(table, res.trace, budget=budget, seeds=seeds, sampler=sampler, transfer=transfer)
    return res
