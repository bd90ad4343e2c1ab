"""``novatune bench run|list|show|compare``: the benchmark suite and its regression check (the CLI twin of
``/bench``).

``run`` measures the suite (progress on stderr, one line per window) and stores the run; ``--json`` prints
the stored document with its ``id``. ``compare BASE_ID`` compares the newest run (or ``--run ID``) with
``BASE_ID``. Exit codes: 0, or for ``compare`` :data:`~experiments.bench.compare.EXIT_REGRESSION` (3) when a
benchmark regressed; 2 for bad input (an unknown id, suite or group: the message says what is allowed).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, err, fmt, out, paths, print_json

__all__ = ["bench_app"]

bench_app = typer.Typer(help="The benchmark suite (CPU, memory, IO, network, OLTP) and regression checks.",
                        no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="a benchmark run id (see `novatune bench list`)")]


def _progress(name: str, i: int, value: float) -> None:
    err.print(f"  {name} window {i + 1}: {value:.6g}", highlight=False)


@bench_app.command("run")
def run_cmd(
    suite: Annotated[str, typer.Option("--suite", help="quick (about 60-90 s) | full (longer, more windows)")
                     ] = "quick",
    only: Annotated[str | None, typer.Option("--only", help="comma-separated groups: cpu,memory,io,net,oltp "
                                                            "(default: all)")] = None,
    cpu_quota: Annotated[float | None, typer.Option(
        "--cpu-quota", hidden=True, help="cap the benchmarks' cgroup at this many CPUs (tests)")] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log the run to MLflow")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the suite, store the run (machine, kernel, knobs, per-window values) and print it."""
    from experiments.bench.run import run_suite

    doc = run_suite(paths(), suite_name=suite, only=only, cpu_quota=cpu_quota, progress=_progress, track=not no_track)
    if as_json:
        print_json(doc)
        return
    _show(doc)


def _show(doc: dict[str, Any]) -> None:
    t = Table(title=f"benchmark run {doc['id']} ({doc['suite']['name']}, {doc['time']})")
    for c in ("benchmark", "median", "unit", "direction", "windows"):
        t.add_column(c)
    for name, b in doc["benchmarks"].items():
        vals = ", ".join(fmt(v) for v in b.get("values") or [])
        t.add_row(name, fmt(b.get("median")), b.get("unit", ""), "higher is better" if b.get("direction") == "maximize"
                  else "lower is better", escape(vals))
    out.print(t)
    m, k = doc.get("machine") or {}, doc.get("kernel") or {}
    out.print(f"machine {m.get('hostname')} ({m.get('cpu_model')}, {m.get('cpu_count')} CPUs), kernel "
              f"{k.get('release')}; {len(doc.get('knobs') or {})} knobs recorded", highlight=False)


@bench_app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """The stored runs, oldest first."""
    from experiments.bench.store import list_runs

    runs = list_runs(paths())
    rows = [{"id": r["id"], "time": r.get("time"), "suite": (r.get("suite") or {}).get("name"),
             "hostname": (r.get("machine") or {}).get("hostname"), "kernel": (r.get("kernel") or {}).get("release"),
             "cpu_quota": r.get("cpu_quota"),
             "medians": {n: b.get("median") for n, b in r["benchmarks"].items()}} for r in runs]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no benchmark run stored yet: `novatune bench run`")
        return
    t = Table(title="benchmark runs")
    for c in ("id", "time", "suite", "host", "kernel", "benchmarks"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["id"], str(r["time"]), str(r["suite"]), str(r["hostname"]), str(r["kernel"]),
                  ", ".join(r["medians"]))
    out.print(t)


@bench_app.command("show")
def show_cmd(run_id: IdArg, as_json: JsonOpt = False) -> None:
    """One stored run."""
    from experiments.bench.store import load_run

    doc = load_run(paths(), run_id)
    if as_json:
        print_json(doc)
        return
    _show(doc)


@bench_app.command("compare")
def compare_cmd(
    base_id: Annotated[str, typer.Argument(metavar="BASE_ID", help="the run to compare against")],
    run: Annotated[str | None, typer.Option("--run", help="the run to check (default: the newest other run)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the newest run (or --run ID) with BASE_ID; exit 3 when a benchmark regressed."""
    from experiments.bench.compare import EXIT_REGRESSION, compare_runs

    rep = compare_runs(paths(), base_id, run)
    if as_json:
        print_json(rep)
    else:
        _show_compare(rep)
    if rep["regressions"]:
        raise typer.Exit(EXIT_REGRESSION)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _cpus(share: dict[str, Any] | None) -> str:
    """The CPU share column: base -> run CPUs and the change, or '-' for a benchmark without one."""
    if not share:
        return "-"
    return f"{fmt(share['base_median'])} -> {fmt(share['run_median'])} ({_pct(share['change'])})"


def _show_compare(rep: dict[str, Any]) -> None:
    if not rep["comparable"]:
        err.print("[yellow]note:[/] the runs differ in machine or kernel; compared anyway:", highlight=False)
    elif rep["differences"]:
        err.print("[yellow]note:[/] the runs differ:", highlight=False)
    for d in rep["differences"]:
        err.print(f"  {escape(d)}", highlight=False)
    t = Table(title=f"{rep['run']} against {rep['base']}")
    for c in ("benchmark", "base median", "run median", "medians", "change (+ better)", "interval", "bar",
              "CPUs it got", "verdict", "why"):
        t.add_column(c)
    colour = {"regression": "red", "improvement": "green"}
    for name, v in rep["benchmarks"].items():
        lo, hi = v["change_ci"]
        tint = colour.get(v["verdict"])
        verdict = f"[{tint}]{v['verdict']}[/]" if tint else v["verdict"]
        t.add_row(name, f"{fmt(v['base_median'])} {v['unit']}", fmt(v["run_median"]), _pct(v["median_change"]),
                  _pct(v["change"]),
                  f"{_pct(lo)} .. {_pct(hi)}", f"±{v['threshold']:.1%}", _cpus(v.get("cpu_share")), verdict,
                  escape(v["reason"]))
    if rep["benchmarks"]:
        out.print(t)
    else:
        out.print("no benchmark was measured in both runs: nothing to compare", highlight=False)
    out.print(f"verdict: {rep['verdict']}" + (f" ({', '.join(rep['regressions'])})" if rep["regressions"] else ""),
              highlight=False)


from experiments.cli.gain import gain_cmd, gains_cmd  # noqa: E402 - registered on bench_app, defined apart

bench_app.command("gain")(gain_cmd)
bench_app.command("gains")(gains_cmd)
