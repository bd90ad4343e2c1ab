"""``novatune apply|rollback|history|status``: apply a configuration to stay, and undo it; the CLI
twin of ``/tuning``.

Thin faces over :mod:`experiments.deploy.apply`. User errors are raised as
:class:`~experiments.deploy.applications.ApplyError`, :class:`~experiments.deploy.applications.ApplicationNotFound`
or :class:`~experiments.deploy.config_file.ConfigError` (``experiments.cli.main`` prints them on one
line, exit 2). ``status`` exits 1 when an applied knob drifted.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, valid_name
from experiments.cli._common import err as _err
from experiments.cli._common import fmt as _fmt
from experiments.cli._common import out as _out
from experiments.cli._common import paths as _paths
from experiments.cli._common import print_json as _print_json

__all__ = ["apply_cmd", "history_cmd", "rollback_cmd", "status_cmd"]


def _knob_table(title: str, knobs: list[Any], *, live: bool = False) -> Table:
    """One row per knob (old, new, change; with ``live``: the live value and drift)."""
    table = Table(title=title)
    cols = ["knob", "old", "new", "change"] + (["live", "drift"] if live else [])
    for col in cols:
        table.add_column(col, overflow="fold")
    for k in knobs:
        d = k if isinstance(k, dict) else asdict(k)
        row = [d["knob"], escape(_fmt(d["old"])), escape(_fmt(d["new"])), "yes" if d["changes"] else "no"]
        if live:
            drift = d["drift"]
            row += [escape(_fmt(d["live"])), "-" if drift is None else ("[red]DRIFT[/]" if drift else "ok")]
        table.add_row(*row)
    return table


def apply_cmd(
    config: Annotated[Path | None, typer.Argument(metavar="CONFIG", help="an export: JSON/YAML (novatune.config/v1), "
                                                                         "a sysctl.d .conf file or a TuneD profile")
                      ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change; write nothing")] = False,
    study: Annotated[str | None, typer.Option("--study", help="apply a trial of this study instead of a file",
                                              callback=valid_name)] = None,
    trial: Annotated[int | None, typer.Option("--trial", min=0,
                                              help="with --study: the trial (default: the study's choice)")] = None,
    validate: Annotated[Path | None, typer.Option("--validate", metavar="SPEC",
                                                  help="validate the change with this spec's workload first: "
                                                       "measure before/after (A/B windows), keep it only when no "
                                                       "guard is worse than its limit; exit 0 kept, 3 rolled back "
                                                       "or inconclusive")] = None,
    window: Annotated[float | None, typer.Option("--window", metavar="S",
                                                 help="with --validate: the validation window in seconds "
                                                      "(default 600)")] = None,
    max_window: Annotated[float | None, typer.Option("--max-window", metavar="S",
                                                     help="with --validate: how far an inconclusive result extends "
                                                          "the window (default 3 x --window)")] = None,
    guard: Annotated[list[str] | None, typer.Option("--guard", metavar="METRIC:-N%",
                                                    help="with --validate: a guarded metric and how much worse it "
                                                         "may get (repeatable; default: the spec's first objective "
                                                         "and latency_p95_ms, each -10%)")] = None,
    no_interleave: Annotated[bool, typer.Option("--no-interleave",
                                                help="with --validate: all windows before, then all after "
                                                     "(default: interleaved A B B A ...)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply a configuration to stay (journaled; `novatune rollback` undoes it, `recover` does not).

    With --validate SPEC the change is first measured against SPEC's workload (old and new values in
    alternating windows) and kept only when shown safe; otherwise the old values are put back through the
    journal. Exit codes with --validate: 0 kept, 3 rolled back or inconclusive, 2 bad input (nothing written).
    """
    from experiments.cli.validate import check_options, run_validated
    from experiments.deploy.applications import ApplyError
    from experiments.deploy.apply import apply_config, apply_trial
    from experiments.deploy.config_file import load_config

    guards = check_options(validate=validate, window=window, max_window=max_window, guards=guard or [],
                           no_interleave=no_interleave, dry_run=dry_run, study=study)
    paths = _paths()
    if (config is None) == (study is None):
        raise ApplyError("give either CONFIG or --study NAME [--trial N]")
    if trial is not None and study is None:
        raise ApplyError("--trial needs --study NAME")
    if validate is not None:
        assert config is not None  # check_options refuses --study with --validate
        run_validated(config, spec=validate, window=window, max_window=max_window, guards=guards,
                      interleave=not no_interleave, as_json=as_json)
        return
    if study is not None:
        app = apply_trial(study, trial, paths=paths, dry_run=dry_run)
    else:
        assert config is not None  # checked above: exactly one of CONFIG and --study
        cfg = load_config(config)
        app = apply_config(cfg, paths=paths, dry_run=dry_run, source=cfg.source)
    if as_json:
        _print_json(app.as_dict())
        return
    title = {"dry_run": f"dry run: {app.source} (nothing written)",
             "unchanged": f"{app.source}: every knob already has its value (nothing written)"}.get(
        app.state, f"applied {app.id} from {app.source}")
    _out.print(_knob_table(title, app.knobs))
    for k in app.knobs:
        if k.held_by:
            _out.print(f"[yellow]{k.knob}:[/] {escape(k.held_by)}")
    for n in app.not_applied:
        _out.print(f"[yellow]not applied[/] {n.knob}={escape(_fmt(n.value))}: {escape(n.deploy)}", highlight=False)
    if app.state == "applied":
        _out.print(f"kept: `novatune rollback {app.id}` puts back the old values "
                   "(note: a reboot resets them; persist with `novatune study export --format sysctl`)")


def rollback_cmd(
    app_id: Annotated[str | None, typer.Argument(metavar="[ID]",
                                                 help="application id, or a continuous tuner's step id "
                                                      "(default: the latest active application)")] = None,
    force: Annotated[bool, typer.Option("--force", help="restore even knobs changed since the application")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put back the values an application (or a continuous tuner's step) replaced; close its journal entries."""
    from experiments.autotune.service import rollback_step
    from experiments.deploy.rollback import Rollback, rollback

    step = rollback_step(_paths(), app_id, force=force) if app_id else None
    if step is not None and as_json:
        _print_json({"step": step["step"], "rollback": step["rollback"].as_dict()})
        return
    rb: Rollback = step["rollback"] if step is not None else rollback(app_id, paths=_paths(), force=force)
    if as_json:
        _print_json(rb.as_dict())
        return
    table = Table(title=f"rolled back {rb.id} ({rb.source})" + (" [forced over drift]" if rb.forced else ""))
    for col in ("knob", "was (applied)", "found", "restored to"):
        table.add_column(col, overflow="fold")
    for k in rb.knobs:
        found = _fmt(k.live) + (" (drift)" if k.drift else "")
        table.add_row(k.knob, escape(_fmt(k.new)), escape(found), escape(_fmt(k.old)))
    _out.print(table)
    for why in rb.refused:  # --force: skipped, never written
        _err.print(f"[yellow]refused (not written):[/] {escape(why)}", highlight=False)


def history_cmd(as_json: JsonOpt = False) -> None:
    """Every application, newest first."""
    from experiments.deploy.applications import history

    apps = history(_paths())
    if as_json:
        _print_json([a.as_dict() for a in apps])
        return
    if not apps:
        _out.print("no applications yet")
        return
    table = Table(title="applications (newest first)")
    for col in ("id", "time", "source", "state", "knobs (old -> new)", "rolled back at"):
        table.add_column(col, overflow="fold")
    for a in apps:
        knobs = "\n".join(f"{k.knob}: {_fmt(k.old)} -> {_fmt(k.new)}" for k in a.knobs if k.changes) or "-"
        state = {"applied": "[green]applied[/]", "failed": "[red]failed[/]"}.get(a.state, a.state)
        table.add_row(a.id, a.time, escape(a.source), state, escape(knobs), a.rolled_back_at or "-")
    _out.print(table)


def status_cmd(as_json: JsonOpt = False) -> None:
    """The active applications and whether their knobs still hold the applied values (exit 1 on drift)."""
    from experiments.deploy.applications import status

    st = status(_paths())
    if as_json:
        _print_json(st)
    elif not st["active"]:
        _out.print("no active application")
    else:
        for a in st["active"]:
            _out.print(_knob_table(f"{a['id']} ({a['source']}, applied {a['time']})", a["knobs"], live=True))
        _out.print("no drift" if not st["drift"] else f"[red]drift:[/] {', '.join(st['drift'])}")
    if st["drift"]:
        raise typer.Exit(1)
