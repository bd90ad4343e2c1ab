"""``novatune replay``: judge a sampler on a table of measured configurations (docs/replay.md).

The search itself is :mod:`optimizer.replay`'s; this module reads the CSV, writes the trace and renders
the summary. ``ReplayError`` (a ``ValueError`` of the optimizer) and unreadable files become a
:class:`UserError` here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from experiments.cli._common import JsonOpt, UserError, err, out
from experiments.cli._common import print_json as _print_json

if TYPE_CHECKING:  # the replay (pandas, Optuna) is imported when the command runs, not at CLI start
    from optimizer.replay import ReplayResult, ReplayTable

__all__ = ["instance_catalog", "load_table", "render_text", "replay_cmd", "write_trace"]


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
    from optimizer.replay import ReplayError, run_replay

    try:
        if budget < 1:
            raise ReplayError(f"--budget {budget}: must be at least 1")
        if seeds < 1:
            raise ReplayError(f"--seeds {seeds}: must be at least 1")
        tbl = load_table(table_file, group=group, knobs=knobs, objectives=objective, feasible=feasible)
        with Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[last]}"), console=err, transient=True) as bar:
            task = bar.add_task("replay", total=len(tbl.groups) * seeds, last="")
            result = run_replay(tbl, budget=budget, seeds=seeds, sampler=sampler, transfer=transfer,
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


def load_table(path: Path, *, group: str, knobs: str, objectives: list[str], feasible: str | None) -> ReplayTable:
    """The table at ``path`` (CSV, every cell as text; a blank cell is "not applicable").

    ``knobs`` is comma-separated; ``objectives`` are ``COLUMN:min|max``. Knobs that name instance types,
    sizes or families get their figures from the packaged catalog (:func:`instance_catalog`).

    Raises:
        ReplayError: no such file, an unreadable CSV, or a table ``ReplayTable.from_frame`` refuses.
    """
    import pandas as pd

    from optimizer.replay import ReplayError, ReplayTable, parse_objective

    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path}: no such file; give a CSV table of measured configurations")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise ReplayError(f"{path}: not a readable CSV ({e})") from None
    knob_list = [k.strip() for k in knobs.split(",") if k.strip()]
    objs = [parse_objective(o) for o in objectives]
    return ReplayTable.from_frame(df, group=group, knobs=knob_list, objectives=objs, feasible=feasible,
                                  catalog=instance_catalog())


def instance_catalog() -> dict[str, Any] | None:
    """The packaged AWS instance catalog (vCPU, GiB, $/h by type) for the replay's features; None when it
    cannot be read (the features then estimate every figure from the names)."""
    from collectors.errors import CollectorError
    from collectors.pricing import load_instance_types

    try:
        return dict(load_instance_types())
    except CollectorError:
        return None


def write_trace(result: ReplayResult, table: ReplayTable, path: Path) -> None:
    """One CSV row per evaluation: run (sampler|random), group, seed, step, knobs, objectives, feasible.

    Written by :func:`experiments.safefs.write_file` (a private temporary file beside ``path``, then a
    rename; a symbolic link at ``path`` is refused, never followed).

    Raises:
        UnsafeLocation: ``path`` is a symbolic link.
        OSError: ``path`` cannot be written.
    """
    from experiments.safefs import write_file

    cols = ["run", "group", "seed", "step", *table.knobs, *(o.name for o in table.objectives), "feasible"]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in result.trace:
        w.writerow({k: (repr(r[k]) if isinstance(r[k], float) else r[k]) for k in cols})
    write_file(path, buf.getvalue().encode("utf-8"))


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
