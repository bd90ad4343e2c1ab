"""``novatune bench gain SPEC``: novatune's choice against the defaults and every stock TuneD profile that
applies, measured in interleaved rounds of one run (:mod:`experiments.bench.gain`); ``bench gains`` lists the
stored reports. Exit 0 with a verdict (a null result is a result), 2 for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, err, fmt, out, paths, print_json, settings

__all__ = ["gain_cmd", "gains_cmd"]


def _progress(kind: str, fields: dict[str, Any]) -> None:
    if kind == "start":
        err.print(f"gain run {fields['id']}: arms {', '.join(fields['arms'])}; {fields['rounds']} rounds, then "
                  f"{fields['confirm']} confirmation rounds", highlight=False)
        for p, why in fields["not_applied"].items():
            err.print(f"  [yellow]not measured[/] {escape(p)}: {escape(why)}")
    elif kind == "confirm":
        err.print(f"  confirmation: defaults, {escape(str(fields['best_profile'] or 'no profile'))} (the best "
                  f"profile so far) and novatune, {fields['rounds']} rounds", highlight=False)
    elif kind == "window":
        figure = "failed: " + fields["error"] if "error" in fields else ", ".join(
            f"{k} {fmt(v)}" for k, v in (fields.get("metrics") or {}).items() if k in ("throughput", "throughput_rps",
                                                                                         "latency_p99_ms"))
        err.print(f"  {fields['step']}/{fields['steps']} round {fields['round'] + 1} {escape(fields['arm'])}: "
                  f"{escape(figure)}", highlight=False)


def show_gain(doc: dict[str, Any]) -> None:
    """The report as a table, then its verdict."""
    better = "higher" if doc["direction"] == "maximize" else "lower"
    t = Table(title=f"gain {doc['id']}: {doc['spec']} (study {doc['study']}), {doc['metric']} ({better} is "
                    f"better), {doc['rounds']} rounds + {doc.get('confirm', 0)} confirmation rounds")
    for col in ("arm", "median", "vs defaults (+ better)", "interval", "p", "knobs set"):
        t.add_column(col)
    for name, a in doc["arms"].items():
        c: dict[str, Any] = a.get("vs_defaults") or {}
        t.add_row(escape(name), fmt(a.get("median")), "-" if not c else f"{c['gain_pct']:+.1f} %",
                  "-" if not c else f"[{c['low_pct']:+.1f}, {c['high_pct']:+.1f}]",
                  "-" if not c else f"{c['p_value']:.3g}",
                  escape(", ".join(f"{k}={v}" for k, v in a["knobs"].items()))[:80] or "-")
    out.print(t)
    best, vs_best = doc.get("best_profile"), doc.get("novatune_vs_best_profile")
    if best and vs_best:
        out.print(f"best profile {escape(best)} (picked on {doc.get('best_profile_picked_on', 'all rounds')}); "
                  f"novatune against it on {escape(str(doc.get('compared_on', 'the same rounds')))}: "
                  f"{vs_best['gain_pct']:+.1f} % [{vs_best['low_pct']:+.1f}, {vs_best['high_pct']:+.1f}] "
                  f"p={vs_best['p_value']:.3g}", highlight=False)
    out.print(escape(doc["verdict"]), highlight=False)


def gain_cmd(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="a scenario spec (.yaml/.json)")],
    study: Annotated[str | None, typer.Option("--study", help="the study whose choice is measured (default: the "
                                                               "spec's name; run `novatune study run SPEC` first)")
                     ] = None,
    profiles: Annotated[str | None, typer.Option("--profiles", help="comma-separated stock TuneD profiles (default: "
                                                                    "throughput-performance, latency-performance, "
                                                                    "network-latency, network-throughput, "
                                                                    "virtual-guest, balanced)")] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="screening rounds; each measures every arm once "
                                                         "(2..50)")] = 5,
    confirm: Annotated[int | None, typer.Option("--confirm", help="confirmation rounds of the defaults, the best "
                                                                  "profile of the screening rounds and novatune "
                                                                  "(0 or 2..50; default: --rounds)")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="the primary metric (default: the spec's first "
                                                                "objective)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure the defaults, the stock TuneD profiles and the study's choice on the spec's workload."""
    from experiments.bench.gain import gain_run
    from experiments.deploy.tuned_stock import STOCK_PROFILES
    from experiments.spec import load_spec

    spec = load_spec(spec_file)
    chosen = tuple(p.strip() for p in profiles.split(",") if p.strip()) if profiles else STOCK_PROFILES
    doc = gain_run(spec, paths=paths(), source=str(spec_file), study=study, profiles=chosen,
                   dirs=settings().tuned_profile_dirs, rounds=rounds, confirm=confirm, metric=metric,
                   progress=_progress)
    if as_json:
        print_json({k: v for k, v in doc.items() if k != "windows"})
        return
    show_gain(doc)


def gains_cmd(as_json: JsonOpt = False) -> None:
    """The stored gain reports, oldest first."""
    from experiments.bench.gain import list_gains

    rows = list_gains(paths())
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no gain report stored yet: `novatune bench gain SPEC`")
    for r in rows:
        out.print(f"{r['id']}  {r['spec']}  {r['time']}  {escape(str(r['verdict']))}", highlight=False)
