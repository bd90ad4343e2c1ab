"""``novatune autotune run SPEC | status | history [ID]``: the continuous tuner (the CLI twin of
``/tuning/continuous``; see docs/autotune.md).

``run`` keeps the spec's knobs tuned until ``--duration`` / ``--cycles`` or Ctrl-C / SIGTERM: a study or a
validation in progress ends with its knobs restored; kept steps stay (applications), listed at exit with
the command that undoes each. Bad options end with a one-line error, exit 2.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, ctrl_c_ends
from experiments.cli._common import err as _err
from experiments.cli._common import fmt as _fmt
from experiments.cli._common import out as _out
from experiments.cli._common import paths as _paths
from experiments.cli._common import print_json as _print_json

__all__ = ["autotune_app", "history_cmd", "run_cmd", "status_cmd"]

autotune_app = typer.Typer(no_args_is_help=True, help="Keep a spec's knobs tuned (continuous mode).")


def _progress(kind: str, f: dict[str, Any]) -> None:
    if kind == "state" and f.get("state") in ("measuring", "searching", "validating", "drifted") and len(f) <= 3:
        _err.print(f"[dim]cycle {f.get('cycle')}: {f['state']}[/]")
    elif kind == "cycle":
        perf = ", ".join(f"{m} {s['median']:.4g} [{s['ci_low']:.4g}, {s['ci_high']:.4g}]"
                         for m, s in f.get("summary", {}).items() if m in ("throughput_rps", "latency_p95_ms"))
        _err.print(f"cycle {f['cycle']}: {escape(perf)}; drift: {escape(str(f['drift'].get('reason', '-')))}; "
                   f"{escape(f['decision'] or '-')}: {escape(f['reason'] or '')}")
    elif kind == "step":
        _err.print(f"step {f['id']} ({f['kind']}): {f['decision']} {escape(str(f['values']))}"
                   + (f" -> application {f['application']}" if f.get("application") else ""))


def _percent(option: str, text: str) -> float:
    """``-10%`` (or ``-10``) -> -0.10; the range is checked with the other options."""
    from experiments.autotune.model import AutotuneError

    try:
        return float(text.strip().removesuffix("%")) / 100.0
    except ValueError:
        raise AutotuneError(f"invalid autotune options: {option} must be a percentage such as -10% or 0%, "
                            f"got {text!r}") from None


def _kept_table(steps: list[dict[str, Any]]) -> Table:
    t = Table(title="kept steps (each an application)")
    for col in ("step", "values", "application", "undo with"):
        t.add_column(col, overflow="fold")
    for s in steps:
        t.add_row(s["id"], escape(str(s["values"])), s["application"], f"novatune rollback {s['application']}")
    return t


def run_cmd(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="the spec (.yaml/.json) to keep tuned")],
    duration: Annotated[float | None, typer.Option("--duration", help="stop after this many seconds")] = None,
    cycles: Annotated[int | None, typer.Option("--cycles", help="stop after this many cycles")] = None,
    interval: Annotated[float, typer.Option("--interval", help="seconds from one cycle's start to the next")] = 300.0,
    study_trials: Annotated[int, typer.Option("--study-trials", help="trials of each small study")] = 8,
    window: Annotated[float | None, typer.Option("--window", help="seconds of one measurement window "
                                                                  "(default: the spec's trial.measure_s)")] = None,
    windows: Annotated[int, typer.Option("--windows", help="windows per check of the current configuration")] = 5,
    validation: Annotated[float, typer.Option("--validation", help="seconds of each validated apply")] = 600.0,
    converge_after: Annotated[int, typer.Option("--converge-after", help="quiet cycles before converged")] = 3,
    keep_limit: Annotated[str, typer.Option("--keep-limit", help="keep a step only when the primary objective's "
                                            "change is shown above this (0%: a shown gain; -5%: at most 5 % worse)")
                          ] = "0%",
    drop_limit: Annotated[str, typer.Option("--drop-limit", help="a fall of performance since the last kept step "
                                            "beyond this rolls it back")] = "-10%",
    restore_at_exit: Annotated[bool, typer.Option("--restore-at-exit", help="roll every kept step back when the "
                                                                            "tuner stops (leave the host as found)")
                               ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the continuous tuner on SPEC (measure, drift check, trust-region study, validated apply)."""
    from experiments.autotune.loop import Autotuner
    from experiments.autotune.model import AutotuneOptions
    from experiments.spec import load_spec

    opts = AutotuneOptions(duration_s=duration, cycles=cycles, interval_s=interval, study_trials=study_trials,
                           window_s=window, windows=windows, validation_s=validation,
                           converge_after=converge_after, keep_limit=_percent("--keep-limit", keep_limit),
                           drop_limit=_percent("--drop-limit", drop_limit)).check()
    loaded = load_spec(spec)
    tuner = Autotuner(loaded, paths=_paths(), options=opts, source=str(spec), on_event=None if as_json else _progress)
    _err.print(f"autotune {tuner.id}: {len(loaded.knobs)} knobs of {spec}; Ctrl-C or SIGTERM stop it "
               "(a validation in progress is restored)")
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: tuner.stop())
    try:
        with ctrl_c_ends(tuner.stop_event):
            meta = tuner.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    kept = tuner.steps.kept()
    if restore_at_exit:
        from experiments.autotune.service import rollback_step

        for step in reversed(kept):  # newest first: each restores what the one before it found
            rollback_step(_paths(), str(step["id"]))
        kept = tuner.steps.kept()
    if as_json:
        _print_json({"tuner": meta, "kept_steps": kept})
        return
    _out.print(f"autotune {tuner.id}: {meta['state']} after {meta.get('cycle')} cycles"
               f"{' (converged)' if meta.get('converged') else ''}")
    if kept:
        _out.print(_kept_table(kept))
    else:
        _out.print("no step kept: the configuration is as it was")
    if meta["state"] == "failed":
        raise typer.Exit(1)


def status_cmd(as_json: JsonOpt = False) -> None:
    """Every continuous tuner of this data directory: state, cycle, convergence, current configuration."""
    from experiments.autotune.service import summaries

    rows = summaries(_paths())
    if as_json:
        _print_json(rows)
        return
    t = Table(title="continuous tuners")
    for col in ("id", "state", "cycle", "converged", "trust", "current", "kept steps"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["id"], r["state"], str(r["cycle"]), "yes" if r["converged"] else "no", _fmt(r["trust_scale"]),
                  escape(str(r["current"])), ", ".join(r["kept_steps"]) or "-")
    _out.print(t)


def history_cmd(
    tuner_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="a tuner id (default: the newest)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A tuner's cycles and steps: measurements with intervals, drift, decisions, snapshots, applications."""
    from experiments.autotune.service import history

    h = history(_paths(), tuner_id)
    if as_json:
        _print_json(h)
        return
    t = Table(title=f"autotune {h['id']} ({h['state']})")
    for col in ("cycle", "state", "measured", "drift", "decision", "reason", "step"):
        t.add_column(col, overflow="fold")
    for c in h["cycles"]:
        perf = "; ".join(f"{m} {s['median']:.4g}" for m, s in c.get("summary", {}).items()
                         if m in h.get("objectives", {}))
        t.add_row(str(c["cycle"]), c["state"], escape(perf), escape(str(c["drift"].get("reason", "-"))),
                  c["decision"] or "-", escape(c["reason"] or c.get("error") or ""), c.get("step") or "-")
    _out.print(t)
    for s in h["steps"]:
        _out.print(f"{s['id']} cycle {s['cycle']} {s['kind']}: {s['decision']} {escape(str(s['values']))} "
                   f"before {escape(str(s['before']))} after {escape(str(s['after']))}"
                   + (f" application {s['application']}" if s.get("application") else ""))


autotune_app.command("run")(run_cmd)
autotune_app.command("status")(status_cmd)
autotune_app.command("history")(history_cmd)
