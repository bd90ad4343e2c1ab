"""The ``novatune`` command line (typer + rich).

Every user error (bad spec, unknown knob, unknown study, bad export request)
ends with a one-paragraph message naming what was wrong and what is allowed,
and exit code 2; an interrupted study restores its knobs and exits 130. No
traceback reaches the user unless ``NOVATUNE_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from collectors.errors import NovatuneError
from experiments.cli_common import fmt as _fmt
from experiments.cli_common import paths as _paths
from experiments.cli_common import print_json as _print_json

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find, apply and prove better Linux settings.")
study_app = typer.Typer(no_args_is_help=True, help="Run, list, show and export studies.")
knobs_app = typer.Typer(no_args_is_help=True, help="The knob catalog: what can be tuned here.")
app.add_typer(study_app, name="study")
app.add_typer(knobs_app, name="knobs")

out = Console()
err = Console(stderr=True)


class UserError(NovatuneError):
    """A problem with the command line the user can fix; printed without a traceback, exit 2."""

    exit_code = 2
    http_status = 422



def _view(name: str):
    """Load a study for a read-only command; a missing store means no studies, not an error trace."""
    from experiments.store import StudyNotFound, load_view

    paths = _paths()
    if not paths.optuna_db.exists():
        raise StudyNotFound(f"no study named {name!r}; no studies yet in {paths.home}")
    return load_view(paths.optuna_url, name)



# ------------------------------------------------------------------ studies
def _run_spec(spec, *, source: str, name: str | None, trials: int | None, quick: bool) -> None:
    from experiments.runner import StudyRunner

    paths = _paths()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=err,
        transient=False,
    )
    task_id: Any = None

    def on_event(kind: str, **data: Any) -> None:
        nonlocal task_id
        if kind == "start":
            err.print(f"study [bold]{data['name']}[/]: {data['total']} trials; data in {paths.home}")
            if data.get("sampler"):
                err.print(f"sampler: {data['sampler']}")
            for knob, reason in data["skipped"].items():
                err.print(f"[yellow]skipped[/] {knob}: {reason}")
            progress.start()
            task_id = progress.add_task("trials", total=data["total"], last="baseline first")
        elif kind == "trial_end":
            tr = data["report"]
            if tr.state == "complete":
                shown = [*spec.objectives, *(c for c in spec.constraints if c not in spec.objectives)]
                figures = ", ".join(f"{k} {tr.metrics.get(k, float('nan')):.4g}" for k in shown)
                last = f"#{tr.number}: {figures}{'' if tr.feasible else ' (SLA violated)'}"
            else:
                last = f"#{tr.number}: failed: {tr.reason[:60]}"
            progress.update(task_id, advance=1, last=last)
        elif kind == "finish" and task_id is not None:
            progress.stop()

    runner = StudyRunner(spec, paths=paths, name=name, trials=trials, on_event=on_event, source=source,
                         tracking_uri=_settings().mlflow_tracking_uri)  # checks the spec before anything is claimed
    manager = _manager()
    # registered like a background study: a study started through the service never tunes the same knobs
    rec = manager.claim(spec, name=name, trials=trials, managed=False, pid=os.getpid(), source=source)
    runner.explicit_name = rec.name
    state, reason = "failed", None
    try:
        report = runner.run()
        state, reason = report.state, report.stop_reason or None
    except BaseException as e:
        from experiments.runner import Interrupted

        state = "stopped" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        reason = f"{type(e).__name__}: {e}" if state == "failed" else f"interrupted ({e or 'Ctrl-C'}); knobs restored"
        raise
    finally:
        progress.stop()
        manager.worker_finished(rec.name, state, reason)
    _print_study_result(report, paths, quick=quick)


def _pct_text(change: dict[str, float | None]) -> str:
    return ", ".join(f"{o} {'n/a' if c is None else f'{c:+.1f} %'}" for o, c in change.items())


def _print_versus(name: str, vs: dict[str, Any] | None, *, limit: int = 5) -> None:
    """The study against its baseline: what beats it on every objective, and what the chosen trial changes."""
    if vs is None:
        out.print("[yellow]no comparison with the baseline: the baseline trial did not complete[/]")
        return
    values = ", ".join(f"{o} {v:.4g}" for o, v in vs["values"].items())
    sla = "" if vs["feasible"] else " [yellow](it violates the study's constraints)[/]"
    out.print(f"\n[bold]Against the baseline[/] (trial {vs['trial']}, the values before the study): {values}{sla}",
              highlight=False)
    dom = vs["dominating"]
    if dom:
        shown = "; ".join(f"trial {d['trial']} ({_pct_text(d['change_pct'])})" for d in dom[:limit])
        more = f"; and {len(dom) - limit} more" if len(dom) > limit else ""
        out.print(f"  better on every objective: {shown}{more}", highlight=False)
    else:
        out.print("  no feasible trial is better than the baseline on every objective", highlight=False)
    ch = vs["chosen"]
    if ch is not None:
        out.print(f"  the chosen trial {ch['trial']}: {_pct_text(ch['change_pct'])}: {ch['verdict']}", highlight=False)
        if dom and ch["trial"] not in [d["trial"] for d in dom]:
            out.print(f"  to ship a configuration better on every objective: "
                      f"`novatune study export {name} --trial {dom[0]['trial']}`", highlight=False)


def _print_study_result(report, paths, *, quick: bool) -> None:
    from experiments.store import load_view

    view = load_view(paths.optuna_url, report.name)
    front = view.front_trials()
    table = Table(title=f"Pareto front of {report.name} (feasible trials)")
    table.add_column("trial", justify="right")
    for o, d in zip(view.objectives, view.directions):
        table.add_column(f"{o} ({'max' if d == 'maximize' else 'min'})", justify="right")
    constraints = [c for c in (view.attrs.get("constraints") or {}) if c not in view.objectives]
    for c in constraints:
        table.add_column(c, justify="right")
    table.add_column("knobs")
    for t in sorted(front, key=lambda t: t.values[0]):
        mark = " (knee)" if t.number == report.knee else ""
        table.add_row(
            f"{t.number}{mark}",
            *[f"{v:.6g}" for v in t.values],
            *[f"{t.user_attrs.get('metrics', {}).get(c, float('nan')):.4g}" for c in constraints],
            ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in view.knob_values(t).items()),
        )
    out.print(table)
    done = sum(t.state == "complete" for t in report.trials)
    out.print(
        f"{len(report.trials)} trials ({done} complete, {sum(t.feasible for t in report.trials)} feasible) "
        f"in {report.seconds:.0f} s; state: {report.state}"
    )
    if report.stop_reason:
        out.print(f"stopped: {escape(report.stop_reason)}", highlight=False)
    chosen = json.loads(report.export_json)["trial"] if report.export_json else None
    _print_versus(report.name, view.versus_baseline(chosen))
    if report.export_json:
        out.print(f"\n[bold]Chosen configuration[/] ({escape(report.choice_reason or 'knee of the front')}), exported as JSON:")
        out.print_json(report.export_json)
        out.print(f"also as yaml, sysctl, tuned, systemd or shell: novatune study export {report.name} --format FORMAT")
    else:
        out.print("[yellow]no feasible trial: nothing to export[/]")
    if report.restore_mismatches:
        err.print("[red]NOT restored:[/] " + "; ".join(report.restore_mismatches) + " — run `novatune recover`")
    else:
        out.print("every tuned knob reads as before the study")
    from experiments.settings import mlflow_ui_url
    from experiments.tracking import is_remote_uri

    server = _settings().mlflow_tracking_uri
    if server and is_remote_uri(server):
        where = f"open {mlflow_ui_url(report.mlflow_experiment_id, base=server)}"
    else:
        where = f"run `novatune ui`, then open {mlflow_ui_url(report.mlflow_experiment_id)}"
    out.print(f"\nReview it in the MLflow UI: {where}", highlight=False, soft_wrap=True)


@app.command()
def quickstart(
    trials: Annotated[Optional[int], typer.Option(min=1, help="number of trials (default: the spec's 18)")] = None,
    name: Annotated[Optional[str], typer.Option(help="study name (default quickstart, quickstart-2, ...)")] = None,
) -> None:
    """Tune the built-in loopback service on this machine (about 3 minutes)."""
    from experiments.spec import load_spec

    ref = resources.files("experiments") / "specs" / "quickstart.yaml"
    with resources.as_file(ref) as path:
        spec = load_spec(path)
    if os.geteuid() != 0:
        err.print("[yellow]not root:[/] only knobs that need no privilege are tuned (the others are listed as skipped)")
    _run_spec(spec, source=str(ref), name=name, trials=trials, quick=True)


@study_app.command("run")
def study_run(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec, .yaml or .json")],
    name: Annotated[Optional[str], typer.Option(help="study name (default: the spec's)")] = None,
    trials: Annotated[Optional[int], typer.Option(min=1, help="override budget.trials")] = None,
) -> None:
    """Run a study from a spec file."""
    from experiments.spec import load_spec

    spec = load_spec(spec_file)
    _run_spec(spec, source=str(spec_file), name=name, trials=trials, quick=False)


def _index():
    from experiments.manager import StudyManager
    from experiments.service.views import StudyIndex

    paths = _paths()
    return StudyIndex(paths, StudyManager(paths))


def _manager():
    from experiments.manager import StudyManager

    settings = _settings()
    return StudyManager(_paths(), max_running=settings.max_running_studies, stop_timeout_s=settings.stop_timeout_s,
                        max_resumes=settings.max_resumes, tracking_uri=settings.mlflow_tracking_uri)


def _settings():
    from experiments.settings import Settings

    return Settings.load()


def _summary(name: str) -> dict[str, Any]:
    from experiments.store import StudyNotFound

    body = _index().summary(name)
    if body is None:
        raise StudyNotFound(f"no study named {name!r}; `novatune study list` shows them")
    return json.loads(body)


def _leader_text(summary: dict[str, Any]) -> str:
    """``#7: throughput_rps 1450, cost_usd_per_hour 0.031 (front of 4)``: one trial's values, never a mix."""
    lead = summary.get("leader")
    if not lead:
        return ""
    values = ", ".join(f"{k} {v:.4g}" for k, v in lead["values"].items())
    front = f" (front of {lead['front_size']})" if len(lead["values"]) > 1 else ""
    return f"#{lead['trial']}: {values}{front}"


@study_app.command("list")
def study_list(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """List the studies in the data directory: state, progress, the leading trial (knee of the front)."""
    paths = _paths()
    rows = json.loads(_index().listing())
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"studies in {paths.home}")
    for col in ("name", "state", "trials", "feasible", "objectives", "leading trial (knee of the front)"):
        table.add_column(col)
    for r in rows:
        total = r["trials_total"] if r["trials_total"] is not None else "?"
        table.add_row(r["name"], r["state"], f"{r['trials_done']}/{total}", str(r["trials_feasible"]),
                      ", ".join(f"{k} ({d[:3]})" for k, d in r["objectives"].items()), _leader_text(r) or "-")
    out.print(table)


@study_app.command("start")
def study_start(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec, .yaml or .json")],
    name: Annotated[Optional[str], typer.Option(help="study name (default: the spec's)")] = None,
    trials: Annotated[Optional[int], typer.Option(min=1, help="override budget.trials")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="show progress until the study ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Start a study in the background (as POST /studies does); `study watch` follows it."""
    from experiments.spec import load_spec

    spec = load_spec(spec_file)
    rec = _manager().submit(spec, name=name, trials=trials, source=str(spec_file))
    if as_json and not wait:
        _print_json(_summary(rec.name))
        return
    err.print(f"study [bold]{rec.name}[/] started in the background (pid {rec.pid}); "
              f"follow it with: novatune study watch {rec.name}")
    if wait:
        study_watch(rec.name, as_json=as_json)


@study_app.command("watch")
def study_watch(
    name: Annotated[str, typer.Argument(help="study name")],
    as_json: Annotated[bool, typer.Option("--json", help="print the final summary as JSON")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="give up after this many seconds")] = 24 * 3600,
) -> None:
    """Follow a background study with a progress bar until it ends."""
    import time

    from experiments.manager import FINAL

    index = _index()
    summary = _summary(name)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[last]}"), console=err)
    deadline = time.monotonic() + timeout
    with progress:
        task = progress.add_task(name, total=summary["trials_total"], last=summary["state"])
        while True:
            summary = json.loads(index.summary(name) or b"{}") or summary
            lead = _leader_text(summary)
            progress.update(task, completed=summary["trials_done"], total=summary["trials_total"],
                            last=f"{summary['state']}" + (f"; leading {lead}" if lead else ""))
            if summary["state"] in FINAL or summary["state"] == "interrupted" or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    if as_json:
        _print_json(summary)
    else:
        out.print(f"{name}: {summary['state']} after {summary['trials_done']} trials"
                  + (f" ({escape(summary['stop_reason'] or summary['reason'] or '')})" if summary["state"] != "running" else ""))
    if summary["state"] not in FINAL and summary["state"] != "interrupted":
        raise UserError(f"study {name!r} is still {summary['state']} after {timeout:g} s")


@study_app.command("stop")
def study_stop(
    name: Annotated[str, typer.Argument(help="study name")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Stop a background study: its knobs are restored first, then its state becomes `stopped`."""
    _manager().stop(name)
    summary = _summary(name)
    if as_json:
        _print_json(summary)
    else:
        out.print(f"{name}: {summary['state']} ({escape(summary['reason'] or '')})")


@study_app.command("delete")
def study_delete(
    name: Annotated[str, typer.Argument(help="study name")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Delete a study (stopped first if it runs); its MLflow experiment is kept."""
    if not yes and not typer.confirm(f"delete study {name!r} and its trials?", default=False):
        raise typer.Exit(1)
    result = _manager().delete(name)
    if as_json:
        _print_json(result)
    else:
        out.print(f"deleted {name}; MLflow experiment {result['mlflow_experiment']}")


@study_app.command("trials")
def study_trials(
    name: Annotated[str, typer.Argument(help="study name")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Every trial of a study (as GET /studies/{id}/trials); `study show` adds the summary."""
    if as_json:
        _print_json(_view(name).trial_rows())
    else:
        study_show(name, as_json=False)


@study_app.command("pareto")
def study_pareto(
    name: Annotated[str, typer.Argument(help="study name")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """The Pareto front of feasible trials and the chosen configuration."""
    view = _view(name)
    report = view.pareto_report()
    front, choice = report["front"], report["choice"]
    if as_json:
        _print_json(report)
        return
    table = Table(title=f"Pareto front of {name}")
    for col in ("trial", *view.objectives, "knobs"):
        table.add_column(col)
    for r in front:
        mark = " (chosen)" if r["trial"] == choice["trial"] else ""
        table.add_row(f"{r['trial']}{mark}", *[f"{r['values'][o]:.6g}" for o in view.objectives],
                      ", ".join(f"{k}={v}" for k, v in r["knobs"].items()))
    out.print(table)
    out.print(f"chosen: {escape(str(choice['reason']))}", highlight=False)
    _print_versus(name, report["versus_baseline"])


@app.command("convergence")
def convergence_cmd(
    name: Annotated[Optional[str], typer.Argument(help="only this study")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Each study's convergence state and why it stopped (as GET /tuning/convergence)."""
    rows = _index().convergence(name)
    if as_json:
        _print_json(rows)
        return
    table = Table("study", "state", "trials", "convergence", "stopped because", title="convergence")
    for r in rows:
        table.add_row(r["name"], r["state"], f"{r['trials_done']}/{r['trials_total']}",
                      escape((r["convergence"] or {}).get("reason") or "-"), escape(r["stop_reason"] or "-"))
    out.print(table)


@study_app.command("show")
def study_show(
    name: Annotated[str, typer.Argument(help="study name")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Show a study's trials, Pareto front and knee."""
    view = _view(name)
    rows = view.trial_rows()
    summary = view.summary()
    if as_json:
        _print_json({"study": name, "objectives": view.objectives, "directions": view.directions,
                     "state": view.attrs.get("state"), "skipped": view.attrs.get("skipped", {}), **summary,
                     "versus_baseline": view.versus_baseline(), "trials": rows})
        return
    table = Table(title=f"{name} ({view.attrs.get('state', '?')})")
    for col in ("trial", "state", *view.objectives, "flags", "knobs"):
        table.add_column(col)
    for r in rows:
        flags = ("knee " if r["knee"] else "") + ("pareto " if r["pareto"] else "") + ("" if r["feasible"] else "infeasible")
        vals = [f"{r['values'][o]:.6g}" if r["values"] else "-" for o in view.objectives]
        table.add_row(str(r["trial"]), r["state"], *vals, flags.strip(), ", ".join(f"{k}={v}" for k, v in r["knobs"].items()))
    out.print(table)
    conv = summary["convergence"] or {}
    for label, text in (("sampler", summary["sampler"]), ("stopped", summary["stop_reason"]),
                        ("convergence", conv.get("reason")), ("chosen", (summary["choice"] or {}).get("reason"))):
        if text:
            out.print(f"[bold]{label}:[/] {escape(str(text))}", highlight=False)
    if (summary["choice"] or {}).get("equivalent"):
        out.print(f"[bold]within the noise of the chosen trial:[/] {summary['choice']['equivalent']}")
    if view.complete:
        _print_versus(name, view.versus_baseline())


@study_app.command("export")
def study_export(
    name: Annotated[str, typer.Argument(help="study name")],
    fmt: Annotated[str, typer.Option("--format", help="json, yaml, sysctl, tuned, systemd or shell")] = "json",
    trial: Annotated[Optional[int], typer.Option(min=0, help="trial number (default: the knee of the Pareto front)")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH",
                                                  help="write here instead of stdout: a file, or a directory (an "
                                                       "existing one, a path ending in /, a systemd UNIT.service.d; "
                                                       "tuned: the profile directory)")] = None,
    include: Annotated[Optional[str], typer.Option(help="tuned: a stock profile to include, e.g. "
                                                        "throughput-performance")] = None,
) -> None:
    """Export the chosen configuration (the knee by default) for sysctl.d, TuneD, systemd, a shell script,
    or as JSON/YAML for `novatune apply` and `novatune verify`."""
    from experiments import export

    view = _view(name)
    if output is None:
        sys.stdout.write(export.render(view, fmt, trial=trial, include=include))
        return
    for path in export.write_export(view, fmt, output, trial=trial, include=include):
        err.print(f"wrote {path}")


# -------------------------------------------------------------------- knobs
@knobs_app.command("list")
def knobs_list(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Every knob on this machine: available or not (and why), current value, bounds, risk."""
    from experiments.config import knob_info

    rows = [knob_info(k) for k in _bound(None)[0].knobs()]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="knobs")
    for col in ("name", "available", "current", "bounds", "risk", "scope"):
        table.add_column(col)
    for r in rows:
        d = r["domain"]
        choices = d["choices"] or []
        shown = choices if len(choices) <= 8 else [*choices[:5], f"... ({len(choices)} in all)"]
        bounds = ", ".join(shown) if choices else f"[{d['low']}, {d['high']}]"
        table.add_row(r["name"], "yes" if r["available"] else f"no: {r['reason']}", str(r["current"]), bounds, r["risk"], r["scope"])
    out.print(table)
    out.print("patterns: sizing.* and affinity.* bind to the workload a study starts")


@knobs_app.command("get")
def knobs_get(
    name: Annotated[str, typer.Argument(help="knob name, e.g. vm.swappiness")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """One knob: current value, domain, bounds, risk."""
    from experiments.config import knob_info

    row = knob_info(_bound(None)[0].get(name))
    if as_json:
        _print_json(row)
    else:
        for k, v in row.items():
            out.print(f"[bold]{k}[/]: {v}")


# ------------------------------------------------------------ plan / verify
RootOpt = Annotated[
    Optional[Path],
    typer.Option("--root", help="where proc/, sys/ and etc/ live (default /; a copy of a machine's tree for offline checks)"),
]


def _bound(root: Optional[Path]):
    from actuators import Catalog, KnobContext, SysRoot
    from actuators.conflicts import ConflictFinder
    from experiments.config import instance_types

    base = "/" if root is None else str(root)
    if root is not None and not root.is_dir():
        raise UserError(f"--root {root}: not a directory")
    return Catalog(SysRoot(base), KnobContext(instance_types=instance_types())), ConflictFinder(base)



@app.command("plan")
def plan_cmd(
    config: Annotated[Path, typer.Argument(metavar="CONFIG|SPEC", help="exported configuration (JSON) or study spec")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    root: RootOpt = None,
) -> None:
    """What applying a configuration would change, per knob; nothing is written.

    Exit 2 when a knob is unknown or a value/range is outside its hard bounds.
    """
    from experiments.config import load_config, plan

    cfg = load_config(config)
    catalog, finder = _bound(root)
    result = plan(cfg, catalog, finder)
    if as_json:
        _print_json(result.as_dict())
    else:
        table = Table(title=f"plan for {cfg.source} ({'study spec: ranges' if cfg.kind == 'spec' else 'configuration'})")
        for col in ("knob", "current", "new" if cfg.kind == "config" else "range", "change", "risk", "reboot",
                    "available", "conflicts"):
            table.add_column(col, overflow="fold")
        for r in result.rows:
            if cfg.kind == "config":
                target = _fmt(r.new)
            elif r.range is None:
                target = "-"
            elif "choices" in r.range:
                target = "{" + ", ".join(r.range["choices"]) + "}"
            else:
                target = f"[{_fmt(r.range['low'])}, {_fmt(r.range['high'])}]"
            change = "INVALID" if not r.valid else ("-" if r.changes is None else ("yes" if r.changes else "no"))
            conflicts = "\n".join(escape(c["describe"]) for c in r.conflicts) or "-"
            table.add_row(r.knob, escape(_fmt(r.current)), escape(target), change, r.risk or "-", "yes" if r.reboot else "no",
                          "yes" if r.available else escape(f"no: {r.reason}"), conflicts)
        out.print(table)
        for r in result.rows:
            if r.price is not None:
                p, d = r.price, r.price["delta"]
                line = f"instance.type -> {p['target']}: {p['vcpus']} vCPU, {p['memory_gib']:g} GiB, ${p['usd_per_hour']:.4f}/h"
                if d is not None:
                    line += (f"; from {d['current']}: {d['vcpus_delta']:+d} vCPU, {d['memory_gib_delta']:+g} GiB, "
                             f"{d['usd_per_hour_delta']:+.4f} $/h ({d['usd_per_month_delta']:+.2f} $/month)")
                else:
                    line += f"; {p['note']}"
                out.print(escape(line + f" [{p['source']}]"))
        if any(r.conflicts for r in result.rows):
            out.print("[yellow]conflicts:[/] another configuration sets these settings; it wins at boot "
                      "(or when TuneD re-applies its profile)")
    bad = [r for r in result.rows if not r.valid]
    if bad:
        for r in bad:
            extra = f" (allowed: {r.allowed})" if r.allowed and r.allowed not in (r.error or "") else ""
            err.print(f"[red]invalid:[/] {escape(str(r.error))}{escape(extra)}", highlight=False)
        raise typer.Exit(2)


@app.command("verify")
def verify_cmd(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="an export: JSON/YAML (novatune.config/v1), a "
                                                                  "sysctl.d .conf file or a TuneD profile")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    root: RootOpt = None,
) -> None:
    """Compare the live settings with an exported configuration (JSON/YAML, sysctl.d file or TuneD profile).

    Exit 0 when nothing drifted, 1 when some knob differs, 2 on bad input.
    """
    from experiments.config import load_config, verify

    cfg = load_config(config)
    catalog, _ = _bound(root)
    result = verify(cfg, catalog)
    if as_json:
        _print_json(result.as_dict())
    else:
        table = Table(title=f"verify {cfg.source}")
        for col in ("knob", "expected", "actual", "ok", "note"):
            table.add_column(col, overflow="fold")
        for r in result.rows:
            ok = "skipped" if r.ok is None else ("ok" if r.ok else "DRIFT")
            table.add_row(r.knob, escape(_fmt(r.expected)), escape(_fmt(r.actual)), ok, escape(r.note or ""))
        out.print(table)
        out.print("no drift" if not result.drift else f"[red]drift:[/] {', '.join(result.drift)}")
        if result.unchecked:
            out.print(f"[yellow]not checked:[/] {escape(', '.join(result.unchecked))}", highlight=False)
    if result.drift:
        raise typer.Exit(1)


# ----------------------------------------------------------------- recovery
@app.command()
def recover(
    force: Annotated[bool, typer.Option(help="also restore runs whose process still looks alive")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Restore every knob a killed run left changed; remove its cgroups and processes."""
    from actuators import Journal
    from actuators import recover as do_recover

    paths = _paths().ensure()
    rep = do_recover(Journal(paths.journal), force=force)
    data = rep.as_dict() if hasattr(rep, "as_dict") else rep.__dict__
    if as_json:
        _print_json(data)
        if not rep.ok:
            raise typer.Exit(1)
        return
    if rep.knobs:
        table = Table(title="recovered knobs (newest change first)")
        for col in ("run", "knob", "target", "outcome", "detail"):
            table.add_column(col, overflow="fold")
        for k in rep.knobs:
            style = {"failed": "red", "skipped": "yellow"}.get(k["outcome"], "")
            outcome = f"[{style}]{k['outcome']}[/]" if style else k["outcome"]
            table.add_row(escape(str(k["run"])), str(k["knob"]), str(k["target"]), outcome, escape(k["detail"] or ""))
        out.print(table)
    for key in ("runs", "skipped_live", "killed", "cgroups_removed", "scratch_removed", "kept"):
        if data.get(key):
            out.print(f"{key.replace('_', ' ')}: {', '.join(map(str, data[key]))}")
    cg_failed = [f for f in rep.failed if ": cgroup " in f or ": scratch " in f]
    for f in cg_failed:
        err.print(f"[red]failed:[/] {f}", highlight=False)
    if not (rep.knobs or rep.runs or rep.skipped_live):
        out.print("nothing to recover: no open journal entries")
    if not rep.ok:
        raise typer.Exit(1)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the live (non-zombie) members of process group ``pgid`` (0: only look);
    False when none is left."""
    import psutil

    alive = False
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) != pgid or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            alive = True
            if sig:
                os.kill(p.pid, sig)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def _run_process_group(cmd: list[str], *, grace_s: float = 10.0) -> int:
    """Run ``cmd`` as the leader of its own process group and stay its only way in and out: SIGINT,
    SIGTERM and SIGHUP sent to us go to the whole group, the group dies with us (a ``kill -9`` of this
    process sends it SIGTERM), and whatever of the group outlives its leader (MLflow's job consumers,
    uvicorn workers) is ended before we return. Returns the leader's exit code."""
    import signal
    import subprocess
    import time

    from collectors.workloads._proc import set_parent_death_signal

    me = os.getpid()
    proc = subprocess.Popen(cmd, start_new_session=True,
                            preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM, expected_parent=me))

    def forward(signum: int, _frame: Any) -> None:
        _signal_group(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in (signal.SIGTERM, signal.SIGKILL):  # what outlived the leader
            if not _signal_group(proc.pid, sig):
                break
            deadline = time.monotonic() + grace_s
            while _signal_group(proc.pid, 0) and time.monotonic() < deadline:
                time.sleep(0.1)
    return rc


@app.command()
def ui(port: Annotated[int, typer.Option(min=1, max=65535)] = 5000) -> None:
    """Open the MLflow UI on the local store (127.0.0.1). Stopping novatune (Ctrl-C, SIGTERM) stops it all."""
    import shutil

    paths = _paths()
    exe = shutil.which("mlflow") or sys.executable
    cmd = [exe] if exe.endswith("mlflow") else [exe, "-m", "mlflow"]
    cmd += ["ui", "--backend-store-uri", paths.mlflow_uri, "--default-artifact-root", paths.artifacts.as_uri(),
            "--host", "127.0.0.1", "--port", str(port)]
    from experiments.settings import mlflow_ui_url

    err.print("running: " + " ".join(cmd), highlight=False, soft_wrap=True)
    err.print(f"open {mlflow_ui_url(base=f'http://127.0.0.1:{port}')} (novatune's studies are in MLflow's "
              "'Model training' view); Ctrl-C stops it", highlight=False, soft_wrap=True)
    raise typer.Exit(_run_process_group(cmd))


# ------------------------------------------------------------------ metrics
@app.command("metrics")
def metrics_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    once: Annotated[bool, typer.Option("--once", help="one reading (two samples --interval apart, for rates)")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.05, max=3600, help="seconds between samples")] = 1.0,
    count: Annotated[int, typer.Option("--count", min=1, max=100000, help="samples to print (without --once)")] = 5,
    target: Annotated[
        Optional[list[str]], typer.Option("--target", help="a PID (the process and its descendants) or a cgroup directory; repeatable")
    ] = None,
) -> None:
    """Host and per-target metrics from /proc and /sys (units, kind, source); rates need two samples."""
    import time

    from collectors.errors import CollectorError
    from collectors.metrics import MetricsSampler

    try:
        sampler = MetricsSampler(targets=target or [])
    except CollectorError as e:
        raise UserError(str(e)) from None

    def reading(values: dict[str, float]) -> dict[str, Any]:
        rows = [
            {"name": m.name, "value": values[m.name], "unit": m.unit, "kind": m.kind, "source": m.source}
            for m in sampler.metrics()
            if m.name in values
        ]
        return {"time": time.time(), "interval_s": interval, "metrics": rows, "gaps": dict(sampler.gaps)}

    def show(r: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.write(json.dumps(r, indent=2 if once else None) + "\n")
            sys.stdout.flush()
            return
        table = Table("metric", "value", "unit", "kind", "source")
        for m in r["metrics"]:
            table.add_row(m["name"], _fmt(m["value"]), m["unit"], m["kind"], m["source"])
        out.print(table)
        for name, why in r["gaps"].items():
            err.print(f"[yellow]missing[/] {name}: {escape(why)}", highlight=False)

    sampler.sample()  # primes the counters
    for _ in range(1 if once else count):
        time.sleep(interval)
        show(reading(sampler.sample()))


# ----------------------------------------------------------------- topology
@app.command("topology")
def topology_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    root: RootOpt = None,
) -> None:
    """CPUs, SMT siblings, caches, NUMA nodes, disks and NICs as /sys shows them (read-only)."""
    from collectors.errors import CollectorError
    from collectors.topology import read_topology

    if root is not None and not root.is_dir():
        raise UserError(f"--root {root}: not a directory")
    try:
        topo = read_topology(root=root or "/")
    except CollectorError as e:
        raise UserError(str(e)) from None
    if as_json:
        _print_json(topo.as_dict())
        return
    mib = 1 << 20
    out.print(f"[bold]CPUs[/] {len(topo.cpus)} online in {len(topo.packages())} package(s), "
              f"{len(topo.cores())} cores, {sum(len(c.siblings or ()) > 1 for c in topo.cpus)} with an SMT sibling")
    caches = {(k.level, k.type, k.size_bytes, k.shared_cpus) for c in topo.cpus for k in c.caches}
    for level, typ in sorted({(k[0] or 0, k[1] or "?") for k in caches}):
        group = [k for k in caches if (k[0] or 0, k[1] or "?") == (level, typ)]
        sizes = sorted({k[2] for k in group if k[2] is not None})
        width = max((len(k[3] or ()) for k in group), default=0)
        out.print(f"  L{level} {typ}: {len(group)} x {', '.join(f'{s // 1024} KiB' for s in sizes) or '?'}"
                  f", each shared by {width} CPU(s)")
    for n in topo.nodes:
        mem = "?" if n.mem_total_bytes is None else f"{n.mem_total_bytes / mib / 1024:.1f} GiB"
        out.print(f"[bold]node{n.node}[/] cpus {_fmt(n.cpus and ','.join(map(str, n.cpus)))}, {mem}, "
                  f"distances {_fmt(n.distances and ' '.join(map(str, n.distances)))}")
    table = Table("disk", "type", "size", "scheduler", "choices", "read-ahead KiB", "model", title="block devices")
    empty = [d.name for d in topo.disks if d.size_bytes == 0]
    for d in topo.disks:
        if d.size_bytes == 0:
            continue
        kind = "nvme" if d.nvme else {True: "rotational", False: "ssd/virtual", None: "?"}[d.rotational]
        size = "-" if d.size_bytes is None else f"{d.size_bytes / mib / 1024:.1f} GiB"
        table.add_row(d.name, kind, size, _fmt(d.scheduler), " ".join(d.schedulers or ()) or "-",
                      _fmt(d.read_ahead_kb), escape(_fmt(d.model)))
    out.print(table)
    if empty:
        out.print(f"empty devices not shown (in --json): {', '.join(empty)}")
    table = Table("nic", "speed Mb/s", "driver", "rx/tx queues", "mtu", "state", title="network interfaces")
    for n in topo.nics:
        table.add_row(n.name, "unknown" if n.speed_mbps is None else str(n.speed_mbps), _fmt(n.driver),
                      f"{_fmt(n.rx_queues)}/{_fmt(n.tx_queues)}", _fmt(n.mtu), _fmt(n.operstate))
    out.print(table)
    for g in topo.gaps:
        err.print(f"[yellow]missing[/] {escape(g)}", highlight=False)


# ------------------------------------------------------------------- replay
@app.command("replay")
def replay_cmd(
    table_file: Annotated[Path, typer.Argument(metavar="TABLE.csv", help="CSV of measured configurations")],
    group: Annotated[str, typer.Option("--group", help="column naming the group (e.g. workload)")],
    knobs: Annotated[str, typer.Option("--knobs", help="knob columns, comma-separated (blank cell = not applicable)")],
    objective: Annotated[list[str], typer.Option("--objective", help="COLUMN:min|max; once, or twice for a front")],
    budget: Annotated[int, typer.Option("--budget", help="evaluations per search (>= 1)")],
    seeds: Annotated[int, typer.Option("--seeds", help="searches per group (>= 1)")],
    feasible: Annotated[str | None, typer.Option("--feasible", help="true/false, 1/0, yes/no or ok/error-text column")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="auto, random, tpe, gp, nsga2, cmaes, grid")] = "auto",
    trace: Annotated[Path | None, typer.Option("--trace", help="write one CSV row per evaluation here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    transfer: Annotated[bool, typer.Option("--transfer", help="learn from the other groups (never the tuned one)")] = False,
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


# -------------------------------------------------------------------- serve
class _Stopped(Exception):
    """SIGTERM after uvicorn's graceful shutdown: a normal stop (exit 0)."""


def _listen_socket(host: str, port: int):
    """A bound socket for ``host:port`` (uvicorn listens on it); UserError when that is impossible."""
    import errno
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise UserError(f"--host {host!r}: not an address this machine can bind ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn; a live listener still refuses
        sock.bind(addr)
    except OSError as e:
        sock.close()
        hint = "; choose another --port or stop the process using it" if e.errno == errno.EADDRINUSE else ""
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    return sock


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="address to bind (default 127.0.0.1; keep it unless a proxy with "
                                                     "auth is in front)")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="TCP port (default 8080)")] = None,
) -> None:
    """Run the HTTP API: studies in the background, exports, apply/rollback, /metrics; OpenAPI at /docs."""
    import signal

    import uvicorn

    from experiments.service import create_app
    from experiments.settings import token_file

    paths = _paths().ensure()
    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    sock = _listen_socket(host, port)  # before building the app: a taken port fails fast and clearly
    try:
        app_ = create_app(paths, settings)
        # the access log costs ~5 % of a busy service's CPU: on with log_level debug
        server = uvicorn.Server(uvicorn.Config(app_, log_level=settings.log_level,
                                               access_log=settings.log_level == "debug"))
        shown = f"[{host}]" if ":" in host else host
        if app_.state.token_source == "generated":
            err.print(f"API token (generated now, kept in {token_file(paths)}, mode 0600):\n  {app_.state.token}")
        else:
            err.print(f"API token: from {'NOVATUNE_API_TOKEN / the settings file' if app_.state.token_source == 'setting' else app_.state.token_source}")
        err.print(f"novatune serving on http://{shown}:{port} (API docs /docs, metrics /metrics); data in {paths.home}")

        def stopped(_signum: int, _frame: Any) -> None:
            raise _Stopped

        # uvicorn handles SIGTERM itself (graceful shutdown), then re-raises it: land here, exit 0
        try:
            old = signal.signal(signal.SIGTERM, stopped)
        except ValueError:  # not the main thread: uvicorn does not handle signals either
            old = None
        try:
            server.run(sockets=[sock])
        except _Stopped:
            pass
        except KeyboardInterrupt:
            err.print("stopped")
            raise typer.Exit(130) from None
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)
    finally:
        sock.close()


# ----------------------------------------------------------------- settings
settings_app = typer.Typer(no_args_is_help=True, help="Show settings; change safe ones in the running service.")
app.add_typer(settings_app, name="settings")


def _api(method: str, path: str, body: Any = None) -> Any:
    """One request to the running service (host/port from the settings), with the API token."""
    import urllib.error
    import urllib.request

    from experiments.settings import api_token

    settings = _settings()
    token, _ = api_token(settings, _paths())
    url = f"http://{settings.host}:{settings.port}{path}"
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - http on the configured host
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail")
        except ValueError:
            detail = e.reason
        raise UserError(f"{method} {path}: {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot reach the service at {url}: {e}; is `novatune serve` running?") from None


@settings_app.command("show")
def settings_show(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    live: Annotated[bool, typer.Option("--live", help="ask the running service (GET /settings)")] = False,
) -> None:
    """The settings: NOVATUNE_* variables, then the config file, then defaults (the token is never shown)."""
    from experiments.settings import RUNTIME_SETTINGS, config_file

    if live:
        data = _api("GET", "/settings")
    else:
        s = _settings()
        data = {**s.model_dump(mode="json", exclude={"api_token"}),
                "api_token": "set" if s.api_token else "not set (generated by `novatune serve`)",
                "config_file": str(config_file()), "runtime_changeable": list(RUNTIME_SETTINGS)}
    if as_json:
        _print_json(data)
        return
    for k, v in data.items():
        out.print(f"[bold]{k}[/]: {escape(str(v))}", highlight=False)


@settings_app.command("set")
def settings_set(
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="e.g. max_running_studies=1")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Change safe settings in the running service (PATCH /settings); not persisted across restarts."""
    from experiments.settings import RUNTIME_SETTINGS

    body: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in RUNTIME_SETTINGS:
            raise UserError(f"{pair!r}: expected KEY=VALUE with KEY one of {', '.join(RUNTIME_SETTINGS)}")
        body[key] = value
    data = _api("PATCH", "/settings", body)
    if as_json:
        _print_json(data)
    else:
        out.print("; ".join(f"{k}={data[k]}" for k in body))


@app.command("health")
def health_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, max=3600, metavar="SECONDS",
                                        help="keep asking until the service answers (e.g. right after "
                                             "`novatune serve &`); exit 2 if it does not within SECONDS")] = 0,
) -> None:
    """Ask the running service whether it answers (GET /healthz)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            data = _api("GET", "/healthz")
            break
        except UserError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.25)
    if as_json:
        _print_json(data)
    else:
        out.print(f"{data['status']}: novatune {data['version']}, data in {data['data_dir']}")


from experiments.cli_tuning import register as _register_tuning

_register_tuning(app)


# --------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for user errors, 130 when interrupted)."""
    try:
        rv = app(args=argv, standalone_mode=False)
        # click returns a command's ``typer.Exit(code)`` instead of raising it
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as e:  # usage errors: missing argument, bad option value, ...
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            err.print(f"[red]error:[/] {e}")
        return int(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: the trial's knobs were restored")
        return 130
    except SystemExit:
        raise
    except BaseException as e:
        from experiments.runner import Interrupted

        if isinstance(e, Interrupted):
            err.print(f"[yellow]interrupted by {e}[/]: the trial's knobs were restored")
            return 130
        if isinstance(e, NovatuneError):
            err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
            return e.exit_code
        if os.environ.get("NOVATUNE_DEBUG") == "1":
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e}\n(run with NOVATUNE_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
