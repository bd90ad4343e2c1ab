"""``novatune replay``: judge a sampler on a table of measured configurations (docs/replay.md).

The search itself is :mod:`experiments.replay`'s (over :mod:`optimizer.replay`); its ``ReplayError``
(a ``ValueError`` of the optimizer) and unreadable files become a :class:`UserError` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from experiments.cli._common import JsonOpt, UserError, err, out
from experiments.cli._common import print_json as _print_json

__all__ = ["replay_cmd"]


def replay_cmd(
    table_file: Annotated[Path, typer.Argument(metavar="TABLE.csv", help="CSV of measured configurations")],
    group: Annotated[str, typer.Option("--group", help="column naming the group (e.g. workload)")],
    knobs: Annotated[str, typer.Option("--knobs", help="knob columns, comma-separated (blank cell = not applicable)")],
    objective: Annotated[list[str], typer.Option("--objective", help="COLUMN:min|max; once, or twice for a front")],
    budget: Annotated[int, typer.Option("--budget", help="evaluations per search (>= 1)")],
    seeds: Annotated[int, typer.Option("--seeds", help="searches per group (>= 1)")],
    feasible: Annotated[str | None, typer.Option("--feasible",
                                                 help="true/false, 1/0, yes/no or ok/error-text column")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="auto, random, tpe, gp, nsga2, cmaes, grid")] = "auto",
    trace: Annotated[Path | None, typer.Option("--trace", help="write one CSV row per evaluation here")] = None,
    as_json: JsonOpt = False,
    transfer: Annotated[bool, typer.Option("--transfer",
                                           help="learn from the other groups (never the tuned one)")] = False,
) -> None:
    """Judge a sampler on a table of measured configurations, beside random search (docs/replay.md)."""
    from experiments.replay import ReplayError, load_table, render_text, write_trace
    from experiments.replay import replay as run

    try:
        if budget < 1:
            raise ReplayError(f"--budget {budget}: must be at least 1")
        if seeds < 1:
            raise ReplayError(f"--seeds {seeds}: must be at least 1")
        tbl = load_table(table_file, group=group, knobs=knobs, objectives=objective, feasible=feasible)
        with Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[last]}"), console=err, transient=True) as bar:
            task = bar.add_task("replay", total=len(tbl.groups) * seeds, last="")
            result = run(tbl, budget=budget, seeds=seeds, sampler=sampler, transfer=transfer,
                         progress=lambda g, s: bar.update(task, advance=1, last=f"{g} seed {s}"))
        if trace is not None:
            write_trace(result, tbl, trace)
    except (ReplayError, OSError) as e:
        raise UserError(str(e)) from None
    if as_json:
        _print_json(result.summary)
        return
    table = Table(title=f"replay: {sampler}{' + transfer' if transfer else ''}, budget {budget}, {seeds} seeds")
    for col in ("group", "objective", "p_within_10pct", "random", "mean_regret", "random"):
        table.add_column(col)
    for row in render_text(result.summary):
        table.add_row(*(escape(c) for c in row))
    out.print(table)

