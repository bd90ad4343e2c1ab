"""``novatune apply CONFIG --validate SPEC`` (the validated apply) and ``novatune validations``.

Progress goes to stderr, one line per measured window; the result is a table or, with ``--json``, the report
(:meth:`experiments.validate.model.ValidationReport.as_dict`). Exit codes: 0 when the change was kept, 3 when
it was rolled back or the validation was inconclusive (the old values are back either way), 2 for bad input
(nothing measured or written).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, ctrl_c_ends
from experiments.cli._common import err as _err
from experiments.cli._common import fmt as _fmt
from experiments.cli._common import out as _out
from experiments.cli._common import paths as _paths
from experiments.cli._common import print_json as _print_json

__all__ = ["EXIT_NOT_KEPT", "check_options", "run_validated", "validations_cmd"]

#: the exit code of a validated apply that did not keep the change (rolled back or inconclusive)
EXIT_NOT_KEPT = 3


def check_options(*, validate: Path | None, window: float | None, max_window: float | None, guards: list[str],
                  no_interleave: bool, dry_run: bool, study: str | None) -> list[tuple[str, float]]:
    """The validation options, checked before anything happens; the guards parsed.

    Raises:
        ValidationRefused: an option without --validate, --validate with --dry-run or --study, a bad guard,
            a window <= 0 or a longest window shorter than the window, a spec file that does not exist.
    """
    from experiments.validate.checks import ValidationRefused
    from optimizer.decision import parse_guard

    if validate is None:
        given = [o for o, v in (("--window", window), ("--max-window", max_window), ("--guard", guards or None),
                                ("--no-interleave", no_interleave or None)) if v is not None]
        if given:
            raise ValidationRefused(f"{', '.join(given)} only go with --validate SPEC")
        return []
    if dry_run:
        raise ValidationRefused("--validate measures and writes; it cannot go with --dry-run (use --dry-run alone "
                                "to see what would change)")
    if study is not None:
        raise ValidationRefused("--validate takes CONFIG (a file); export the trial first: "
                                "`novatune study export STUDY -o config.json`")
    if window is not None and not window > 0:
        raise ValidationRefused(f"--window must be > 0 seconds, got {window:g}")
    if max_window is not None and not max_window >= (window if window is not None else 600.0):
        raise ValidationRefused(f"--max-window ({max_window:g} s) must be >= --window")
    if not validate.is_file():
        raise ValidationRefused(f"--validate {validate}: no such spec file")
    parsed = []
    for g in guards:
        try:
            parsed.append(parse_guard(g))
        except ValueError as e:
            raise ValidationRefused(str(e)) from None
    return parsed


def _progress(kind: str, fields: dict[str, Any]) -> None:
    if kind == "start":
        _err.print(f"validating {fields['id']}: {fields['pairs']} A/B pairs (up to {fields['max_pairs']}) of "
                   f"~{fields['window_len_s']:g} s windows; guards: {', '.join(fields['guards'])}", highlight=False)
    elif kind == "window":
        vals = ", ".join(f"{k}={_fmt(v)}" for k, v in fields["values"].items())
        _err.print(f"  window {fields['index'] + 1} (pair {fields['pair'] + 1}, {fields['phase']}): {vals}",
                   highlight=False)
    elif kind == "decided":
        _err.print(f"  decision after {fields['pairs']} pairs: {fields['decision']}", highlight=False)


def _table(d: dict[str, Any]) -> Table:
    table = Table(title=f"{d['id']}: {d['decision']}")
    for col in ("guard", "limit", "before (95% CI)", "after (95% CI)", "change (95% CI)", "verdict"):
        table.add_column(col, overflow="fold")
    for m in d["metrics"]:
        table.add_row(m["metric"], f"{m['limit']:.0%}",
                      f"{_fmt(m['before'])} ({_fmt(m['before_ci'][0])} .. {_fmt(m['before_ci'][1])})",
                      f"{_fmt(m['after'])} ({_fmt(m['after_ci'][0])} .. {_fmt(m['after_ci'][1])})",
                      f"{m['change']:+.1%} ({m['change_ci'][0]:+.1%} .. {m['change_ci'][1]:+.1%})", m["verdict"])
    return table


def run_validated(config: Path, *, spec: Path, window: float | None, max_window: float | None,
                  guards: list[tuple[str, float]], interleave: bool, as_json: bool) -> None:
    """Run the validated apply of ``config`` against ``spec``; print the report; exit 3 unless kept.

    Raises:
        typer.Exit: 3 when not kept. ConfigError, SpecError, ValidationRefused, ApplyError, ApplyConflict.
    """
    from experiments.deploy.config_file import load_config
    from experiments.validate.checks import ValidationRefused
    from experiments.validate.engine import validated_apply
    from experiments.validate.model import ValidationRequest

    cfg = load_config(config)
    if cfg.kind != "config":
        raise ValidationRefused(f"{cfg.source}: --validate applies an exported configuration, not a study spec")
    req = ValidationRequest(values=dict(cfg.values), source=cfg.source, spec_path=str(spec),
                            window_s=600.0 if window is None else float(window), max_window_s=max_window,
                            guards=tuple(guards), interleave=interleave)
    stop = threading.Event()
    with ctrl_c_ends(stop):
        report = validated_apply(req, paths=_paths(), on_event=_progress, stop=stop)
    d = report.as_dict()
    if as_json:
        _print_json(d)
    else:
        _out.print(_table(d))
        _out.print(f"{d['decision']}: {escape(d['reason'])}", highlight=False)
        if d["application"]:
            _out.print(f"kept as application {d['application']}: `novatune rollback {d['application']}` undoes it")
        elif d["restored"] is not None:
            back = ", ".join(f"{k}={_fmt(v)}" for k, v in d["restored"].items())
            _out.print(f"old values back: {escape(back)}", highlight=False)
    if report.decision != "kept":
        raise typer.Exit(EXIT_NOT_KEPT)


def validations_cmd(as_json: JsonOpt = False) -> None:
    """Validated applies (`novatune apply CONFIG --validate SPEC`), newest first."""
    from experiments.validate.store import list_reports

    reports = [r.as_dict() for r in list_reports(_paths())]
    if as_json:
        _print_json(reports)
        return
    if not reports:
        _out.print("no validated applies yet")
        return
    table = Table(title="validated applies (newest first)")
    for col in ("id", "decision", "source", "values", "windows", "application", "reason"):
        table.add_column(col, overflow="fold")
    for d in reports:
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in d["values"].items())
        table.add_row(d["id"], d["decision"], escape(d["source"]), escape(values), str(len(d["windows"])),
                      d["application"] or "-", escape(d["reason"]))
    _out.print(table)
