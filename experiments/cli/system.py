"""``novatune recover``, ``metrics`` and ``topology``: this machine as novatune sees it, and putting it
back after a killed run.

``metrics`` and ``topology`` only read ``/proc`` and ``/sys``; ``recover`` restores every knob an
open journal entry says a dead run changed (as the service does at start-up).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, RootOpt, UserError, err, out
from experiments.cli._common import fmt as _fmt
from experiments.cli._common import paths as _paths
from experiments.cli._common import print_json as _print_json

__all__ = ["metrics_cmd", "recover", "topology_cmd"]


def recover(
    force: Annotated[bool, typer.Option(help="also restore runs whose process still looks alive")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore every knob a killed run left changed; remove its cgroups and processes.

    Journal records that name something novatune would not write, kill or remove are refused
    (printed on stderr, never acted on): exit 2 then, 1 when a restore failed.
    """
    from actuators import Journal
    from actuators import recover as do_recover

    paths = _paths().ensure()
    rep = do_recover(Journal(paths.journal), force=force)
    data = rep.as_dict()
    code = 1 if not rep.ok else 2 if rep.refused else 0
    if as_json:
        _print_json(data)
        if code:
            raise typer.Exit(code)
        return
    if rep.knobs:
        table = Table(title="recovered knobs (newest change first)")
        for col in ("run", "knob", "target", "outcome", "detail"):
            table.add_column(col, overflow="fold")
        for k in rep.knobs:
            style = {"failed": "red", "skipped": "yellow", "refused": "red"}.get(k["outcome"], "")
            outcome = f"[{style}]{k['outcome']}[/]" if style else k["outcome"]
            table.add_row(escape(str(k["run"])), str(k["knob"]), str(k["target"]), outcome, escape(k["detail"] or ""))
        out.print(table)
    for key in ("runs", "skipped_live", "killed", "cgroups_removed", "scratch_removed", "loops_removed", "kept"):
        if data.get(key):
            out.print(f"{key.replace('_', ' ')}: {', '.join(map(str, data[key]))}")
    cg_failed = [f for f in rep.failed if ": cgroup " in f or ": scratch " in f or ": loop " in f]
    for f in cg_failed:
        err.print(f"[red]failed:[/] {f}", highlight=False)
    for why in rep.refused:
        err.print(f"[red]refused (not acted on):[/] {escape(why)}", highlight=False)
    if not (rep.knobs or rep.runs or rep.skipped_live):
        out.print("nothing to recover: no open journal entries")
    if code:
        raise typer.Exit(code)


def metrics_cmd(
    as_json: JsonOpt = False,
    once: Annotated[bool, typer.Option("--once", help="one reading (two samples --interval apart, for rates)")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.05, max=3600, help="seconds between samples")] = 1.0,
    count: Annotated[int, typer.Option("--count", min=1, max=100000, help="samples to print (without --once)")] = 5,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="a PID (the process and its descendants) or a cgroup directory; repeatable"),
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


def topology_cmd(
    as_json: JsonOpt = False,
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
    for nic in topo.nics:
        table.add_row(nic.name, "unknown" if nic.speed_mbps is None else str(nic.speed_mbps), _fmt(nic.driver),
                      f"{_fmt(nic.rx_queues)}/{_fmt(nic.tx_queues)}", _fmt(nic.mtu), _fmt(nic.operstate))
    out.print(table)
    for g in topo.gaps:
        err.print(f"[yellow]missing[/] {escape(g)}", highlight=False)

