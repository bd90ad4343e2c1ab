"""``novatune rightsize replay TRACE``: judge the recommender on a usage trace.

For each VM, the first ``--train-frac`` of its samples (by time) are all the recommender reads; the rest
scores it and the fixed rules (p90 + 15 % as VPA, p95 + 20 %, p99 + 20 %, max + 10 %): the share of test
samples above each size (under-provisioning) and the capacity it left unused. ``TRACE`` is a CSV file of
the contract (``vm_id, timestamp, cpu_used_cores, mem_used_gib[, cpu_cores_capacity, mem_capacity_gib]``)
or a Bitbrains GWA-T-12 directory. The lead registers :func:`replay_cmd` under ``novatune rightsize``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, err, fmt, out, print_json, settings

__all__ = ["replay_cmd"]


def _tables(report: dict[str, Any]) -> None:
    recs = Table(title="recommendations (from the training part)")
    for col in ("vm_id", "cpu_cores", "mem_gib", "finding", "confidence", "instance_type", "usd/month",
                "savings usd/month"):
        recs.add_column(col)
    for r in report["recommendations"]:
        recs.add_row(escape(r["vm_id"]), fmt(r["cpu_cores"]), fmt(r["mem_gib"]), r["finding"], fmt(r["confidence"]),
                     r["instance_type"] or "-", fmt(r["usd_per_month"]), fmt(r["savings_usd_per_month"]))
    out.print(recs)
    s = report["summary"]
    table = Table(title=f"replay on the test part: {s['scored']} of {s['vms']} VMs scored, {s['test_samples']} "
                        f"test samples, profile {s['profile']}, train-frac {s['train_frac']:g}")
    for col in ("resource", "sizer", "under-provisioned %", "unused %", "dominates the recommender"):
        table.add_column(col)
    for res in ("cpu", "memory"):
        r = s[res]
        table.add_row(res, "recommender", fmt(r["recommender"]["under_provisioned_pct"]),
                      fmt(r["recommender"]["unused_pct"]), "")
        for name, v in r["rules"].items():
            dom = "yes" if name in r["dominated_by"] else "weakly" if name in r["weakly_dominated_by"] else "no"
            table.add_row("", name, fmt(v["under_provisioned_pct"]), fmt(v["unused_pct"]), dom)
    out.print(table)


def replay_cmd(
    trace: Annotated[Path, typer.Argument(metavar="TRACE", help="a CSV trace (vm_id, timestamp, cpu_used_cores, "
                                                                 "mem_used_gib, ...) or a Bitbrains directory")],
    train_frac: Annotated[float, typer.Option("--train-frac", help="share of each VM's samples (by time) the "
                                                                   "recommender reads, in (0, 1)")] = 0.5,
    profile: Annotated[str, typer.Option("--profile", help="savings | balanced | reliability")] = "balanced",
    as_json: JsonOpt = False,
) -> None:
    """Replay the right-sizing recommender on TRACE: recommend from the first --train-frac of each VM's
    samples, score on the rest against fixed rules, and price each recommendation (cheapest fitting
    instance type, savings against the type that fits the current capacity). E.g. `novatune rightsize
    replay trace.csv --train-frac 0.5 --profile balanced --json`."""
    from experiments.rightsizing.replay import load_series, replay_report

    series = load_series(trace, max_bytes=settings().trace_max_bytes)
    if not series:
        err.print(f"{escape(str(trace))}: no samples")
    report = replay_report(series, train_frac=train_frac, profile=profile)
    if as_json:
        print_json(report)
        return
    _tables(report)
