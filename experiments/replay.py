"""The ``novatune replay`` command's work: read the CSV, run the replay, write the trace, render the summary."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd

from optimizer.replay import (
    ReplayError,
    ReplayResult,
    ReplayTable,
    parse_objective,
    run_replay,
)

__all__ = ["ReplayError", "load_table", "render_text", "replay", "write_trace"]


def load_table(path: Path, *, group: str, knobs: str, objectives: list[str], feasible: str | None) -> ReplayTable:
    """The table at ``path`` (CSV, every cell as text; a blank cell is "not applicable").

    ``knobs`` is comma-separated; ``objectives`` are ``COLUMN:min|max``.

    Raises:
        ReplayError: no such file, an unreadable CSV, or a table ``ReplayTable.from_frame`` refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path}: no such file; give a CSV table of measured configurations")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise ReplayError(f"{path}: not a readable CSV ({e})") from None
    knob_list = [k.strip() for k in knobs.split(",") if k.strip()]
    objs = [parse_objective(o) for o in objectives]
    return ReplayTable.from_frame(df, group=group, knobs=knob_list, objectives=objs, feasible=feasible)


def replay(table: ReplayTable, *, budget: int, seeds: int, sampler: str, transfer: bool,
           progress: Any = None) -> ReplayResult:
    """``run_replay``; ``progress(group, seed)`` is called after each group's seed (for a progress bar).

    Raises:
        ReplayError: budget or seeds below 1, an unknown sampler, ``gp`` without PyTorch.
    """
    return run_replay(table, budget=budget, seeds=seeds, sampler=sampler, transfer=transfer, progress=progress)


def write_trace(result: ReplayResult, table: ReplayTable, path: Path) -> None:
    """One CSV row per evaluation: run (sampler|random), group, seed, step, knobs, objectives, feasible."""
    cols = ["run", "group", "seed", "step", *table.knobs, *(o.name for o in table.objectives), "feasible"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in result.trace:
            w.writerow({k: (repr(r[k]) if isinstance(r[k], float) else r[k]) for k in cols})


def _f(v: Any) -> str:
    """A figure with three decimals, ``-`` for none."""
    return "-" if v is None else f"{v:.3f}"


def render_text(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the text table: group, objective, p, random p, regret, random regret."""
    rows = []
    for gname, g in summary["groups"].items():
        if "excluded" in g:
            rows.append([gname, "(excluded: no feasible configuration)", "", "", "", ""])
            continue
        for obj, v in g.items():
            if obj == "hypervolume":
                rows.append([gname, "hypervolume ratio", _f(v["ratio"]), _f(v["random_ratio"]), "", ""])
            else:
                rows.append([gname, obj, _f(v["p_within_10pct"]), _f(v["random_p_within_10pct"]),
                             _f(v["mean_regret"]), _f(v["random_mean_regret"])])
    for obj, v in summary["overall"].items():
        if obj == "hypervolume":
            rows.append(["OVERALL", "hypervolume ratio", _f(v["ratio"]), _f(v["random_ratio"]), "", ""])
        else:
            rows.append(["OVERALL", obj, _f(v["p_within_10pct"]), _f(v["random_p_within_10pct"]),
                         _f(v["mean_regret"]), _f(v["random_mean_regret"])])
    return rows
