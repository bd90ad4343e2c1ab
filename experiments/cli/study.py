"""``novatune study ...``, ``quickstart`` and ``convergence``: the CLI twin of ``/studies`` (and of
``GET /tuning/convergence``).

A study runs in the foreground (``study run``, ``quickstart``: registered like a background study,
so the CLI and the service never tune the same knobs) or in the background (``study start``, as
``POST /studies``; ``study watch`` follows it). The read commands answer what the API answers, from
the same :class:`~experiments.service.views.StudyIndex` and Optuna store.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from experiments.cli._common import JsonOpt, NameArg, UserError, err, out, valid_name
from experiments.cli._common import index as _index
from experiments.cli._common import manager as _manager
from experiments.cli._common import paths as _paths
from experiments.cli._common import print_json as _print_json
from experiments.cli._common import settings as _settings

if TYPE_CHECKING:
    from experiments.study.results import StudyView

__all__ = ["convergence_cmd", "quickstart", "study_app"]

study_app = typer.Typer(no_args_is_help=True, help="Run, list, show and export studies.")


def _view(name: str) -> StudyView:
    """Load a study for a read-only command; a missing store means no studies, not an error trace.

    Raises:
        StudyNotFound: no study of that name (or no store yet).
    """
    from experiments.study.results import StudyNotFound, load_view

    paths = _paths()
    if not paths.has_studies:
        raise StudyNotFound(f"no study named {name!r}; no studies yet in {paths.home}")
    return load_view(paths.optuna_url, name)


# ------------------------------------------------------------- foreground run
def _run_spec(spec, *, source: str, name: str | None, trials: int | None, quick: bool) -> None:
    from experiments.study.manager import host_wide
    from experiments.study.outcomes import Interrupted
    from experiments.study.prepare import prepare
    from experiments.study.runner import StudyRunner

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
            stock = data.get("stock_profiles")
            if stock:
                err.print(f"stock TuneD profiles tried first: {', '.join(stock['tried']) or 'none'}", highlight=False)
                for name, why in stock["not_tried"].items():
                    err.print(f"  not tried {escape(name)}: {escape(why)}", highlight=False)
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
        elif kind == "justify_step" and task_id is not None:
            progress.update(task_id, last=f"justifying the choice {data['step']}/{data['steps']}: {data['label']}")
        elif kind == "justified":
            _print_justified(err, data["record"])
        elif kind == "finish" and task_id is not None:
            progress.stop()

    plan = prepare(spec, paths=paths, trials=trials, source=source)  # checks the spec before anything is claimed
    manager = _manager()
    # named and registered like a background study: a study started through the service never tunes the
    # same knobs
    rec = manager.claim(spec, name=name, trials=trials, managed=False, pid=os.getpid(), source=source,
                        shared=host_wide(plan.resolved.knobs.values()))
    runner = StudyRunner(plan, paths=paths, name=rec.name, on_event=on_event,
                         tracking_uri=_settings().mlflow_tracking_uri)
    state, reason = "failed", None
    try:
        report = runner.run()
        state, reason = report.state, report.stop_reason or None
    except BaseException as e:
        state = "stopped" if isinstance(e, (KeyboardInterrupt, Interrupted)) else "failed"
        reason = f"{type(e).__name__}: {e}" if state == "failed" else f"interrupted ({e or 'Ctrl-C'}); knobs restored"
        raise
    finally:
        progress.stop()
        manager.worker_finished(rec.name, state, reason)
    _print_study_result(report, paths, quick=quick)


def _pct_text(change: dict[str, float | None]) -> str:
    """``throughput_rps +12.0 %, cost_usd_per_hour n/a``."""
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


def _print_justified(console: Any, record: dict[str, Any]) -> None:
    """Per changed knob of the choice: kept with its measured effect, or put back and why."""
    knobs = record.get("knobs") or {}
    if not knobs:
        console.print(f"justified: {escape(str(record.get('note', '')))}")
        return
    kept = sum(bool(k.get("kept")) for k in knobs.values())
    console.print(f"justified by {record.get('measurements', 0)} re-measurements in {record.get('rounds')} rounds: "
                  f"{kept} of {len(knobs)} changes kept ({escape(str(record.get('note', '')))})")
    for name, k in knobs.items():
        mark = "[green]kept[/]" if k.get("kept") else "[yellow]put back[/]"
        console.print(f"  {mark} {escape(name)}={escape(str(k.get('value')))} (was {escape(str(k.get('baseline')))}):"
                      f" {escape(str(k.get('reason', '')).split(': ', 1)[-1])}")


def _print_profile_changes(changes: dict[str, Any]) -> None:
    """The hotspots whose share of the samples changed most between the baseline and the chosen trial."""
    out.print(f"\n[bold]Profile[/]: what changed most from the baseline (trial {changes['baseline_trial']}) to the "
              f"chosen trial {changes['chosen_trial']} (share of samples; changes under {changes['noise_pct']:g} "
              "points left out):")
    for c in changes["changed"] or []:
        out.print(f"  {escape(c['function'])}: {c['base_pct']:.1f} % -> {c['target_pct']:.1f} % "
                  f"({c['delta_pct']:+.1f} points)", highlight=False)
    if not changes["changed"]:
        out.print("  no function's share changed beyond the noise threshold")


def _print_study_result(report, paths, *, quick: bool) -> None:
    from experiments.study.results import load_view

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
        out.print(f"\n[bold]Chosen configuration[/] ({escape(report.choice_reason or 'knee of the front')}), exported as JSON:")  # noqa: E501 - moved verbatim (the study loop's rebuild changes it next)
        out.print_json(report.export_json)
        out.print(f"also as yaml, sysctl, tuned, systemd or shell: novatune study export {report.name} --format FORMAT")
    else:
        out.print("[yellow]no feasible trial: nothing to export[/]")
    if report.profile_changes:
        _print_profile_changes(report.profile_changes)
    if report.restore_mismatches:
        err.print("[red]NOT restored:[/] " + "; ".join(report.restore_mismatches) + " — run `novatune recover`")
    else:
        out.print("every tuned knob reads as before the study")
    from experiments.settings import mlflow_ui_url
    from experiments.study.tracking import is_remote_uri

    server = _settings().mlflow_tracking_uri
    if server and is_remote_uri(server):
        where = f"open {mlflow_ui_url(report.mlflow_experiment_id, base=server)}"
    else:
        where = f"run `novatune ui`, then open {mlflow_ui_url(report.mlflow_experiment_id)}"
    out.print(f"\nReview it in the MLflow UI: {where}", highlight=False, soft_wrap=True)


def quickstart(
    trials: Annotated[int | None, typer.Option(min=1, help="number of trials (default: the spec's 18)")] = None,
    name: Annotated[str | None, typer.Option(help="study name (default quickstart, quickstart-2, ...)",
                                             callback=valid_name)] = None,
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
    name: Annotated[str | None, typer.Option(help="study name (default: the spec's)", callback=valid_name)] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="override budget.trials")] = None,
) -> None:
    """Run a study from a spec file."""
    from experiments.spec import load_spec

    spec = load_spec(spec_file)
    _run_spec(spec, source=str(spec_file), name=name, trials=trials, quick=False)


# ------------------------------------------------------------ the study index
def _summary(name: str) -> dict[str, Any]:
    """The study's summary, as ``GET /studies/{id}`` answers it. Raises: StudyNotFound: no such study."""
    from experiments.study.results import StudyNotFound

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
def study_list(as_json: JsonOpt = False) -> None:
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
    name: Annotated[str | None, typer.Option(help="study name (default: the spec's)", callback=valid_name)] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="override budget.trials")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="show progress until the study ends")] = False,
    as_json: JsonOpt = False,
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
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="print the final summary as JSON")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="give up after this many seconds")] = 24 * 3600,
) -> None:
    """Follow a background study with a progress bar until it ends."""
    import time

    from experiments.study.manager import FINAL

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
        why = f" ({escape(summary['stop_reason'] or summary['reason'] or '')})" if summary["state"] != "running" else ""
        out.print(f"{name}: {summary['state']} after {summary['trials_done']} trials" + why)
    if summary["state"] not in FINAL and summary["state"] != "interrupted":
        raise UserError(f"study {name!r} is still {summary['state']} after {timeout:g} s")


@study_app.command("stop")
def study_stop(
    name: NameArg,
    as_json: JsonOpt = False,
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
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    as_json: JsonOpt = False,
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
    name: NameArg,
    as_json: JsonOpt = False,
) -> None:
    """Every trial of a study (as GET /studies/{id}/trials); `study show` adds the summary."""
    if as_json:
        _print_json(_view(name).trial_rows())
    else:
        study_show(name, as_json=False)


@study_app.command("pareto")
def study_pareto(
    name: NameArg,
    as_json: JsonOpt = False,
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


def convergence_cmd(
    name: Annotated[str | None, typer.Argument(help="only this study", callback=valid_name)] = None,
    as_json: JsonOpt = False,
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
    name: NameArg,
    as_json: JsonOpt = False,
) -> None:
    """Show a study's trials, Pareto front and knee."""
    view = _view(name)
    rows = view.trial_rows()
    summary = view.summary()
    if as_json:
        _print_json({"study": name, "objectives": view.objectives, "directions": view.directions,
                     "state": view.attrs.get("state"), "skipped": view.attrs.get("skipped", {}), **summary,
                     "versus_baseline": view.versus_baseline(), "host_baselines": view.host_baselines(),
                     "trials": rows})
        return
    fleet = any(r["host"] for r in rows)
    table = Table(title=f"{name} ({view.attrs.get('state', '?')})")
    for col in ("trial", "state", *(("host",) if fleet else ()), *view.objectives, "flags", "knobs"):
        table.add_column(col)
    for r in rows:
        flags = (("knee " if r["knee"] else "") + ("pareto " if r["pareto"] else "")
                 + ("" if r["feasible"] else "infeasible"))
        vals = [f"{r['values'][o]:.6g}" if r["values"] else "-" for o in view.objectives]
        table.add_row(str(r["trial"]), r["state"], *((r["host"] or "-",) if fleet else ()), *vals, flags.strip(),
                      ", ".join(f"{k}={v}" for k, v in r["knobs"].items()))
    out.print(table)
    for host, b in view.host_baselines().items():
        shown = ", ".join(f"{o} {v:.4g}" for o, v in b["values"].items() if isinstance(v, (int, float)))
        out.print(f"[bold]host {escape(host)} as found:[/] {escape(shown or str(b['state']))}", highlight=False)
    conv = summary["convergence"] or {}
    for label, text in (("knobs act on", summary["knobs_act_on"]), ("sampler", summary["sampler"]),
                        ("stopped", summary["stop_reason"]),
                        ("convergence", conv.get("reason")), ("chosen", (summary["choice"] or {}).get("reason"))):
        if text:
            out.print(f"[bold]{label}:[/] {escape(str(text))}", highlight=False)
    if (summary["choice"] or {}).get("equivalent"):
        out.print(f"[bold]within the noise of the chosen trial:[/] {summary['choice']['equivalent']}")
    if view.complete and not view.host_baselines():  # a fleet study compares per host, above
        _print_versus(name, view.versus_baseline())


@study_app.command("export")
def study_export(
    name: NameArg,
    fmt: Annotated[str, typer.Option("--format", help="json, yaml, sysctl, tuned, systemd or shell")] = "json",
    trial: Annotated[int | None, typer.Option(min=0,
                                              help="trial number (default: the knee of the Pareto front)")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="PATH",
                                                  help="write here instead of stdout: a file, or a directory (an "
                                                       "existing one, a path ending in /, a systemd UNIT.service.d; "
                                                       "tuned: the profile directory)")] = None,
    include: Annotated[str | None, typer.Option(help="tuned: a stock profile to include, e.g. "
                                                        "throughput-performance")] = None,
) -> None:
    """Export the chosen configuration (the knee by default) for sysctl.d, TuneD, systemd, a shell script,
    or as JSON/YAML for `novatune apply` and `novatune verify`."""
    from experiments.deploy import export

    view = _view(name)
    if output is None:
        sys.stdout.write(export.render(view, fmt, trial=trial, include=include))
        return
    for path in export.write_export(view, fmt, output, trial=trial, include=include):
        err.print(f"wrote {path}")

