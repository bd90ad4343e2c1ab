"""``novatune fleet hosts``: the fleet's registered agents (the CLI twin of ``GET /hosts``).

Reads the host registry in the study database (``--storage URL`` / ``NOVATUNE_STORAGE``, default the data
directory's ``optuna.db``) without creating anything: a database no agent has registered in lists no host.
"""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, out, paths, print_json, settings

__all__ = ["ago", "fleet_app"]

fleet_app = typer.Typer(no_args_is_help=True, help="The fleet: agents on many hosts sharing one study storage.")


def ago(seconds: float) -> str:
    """``seconds`` as a short age: ``4s``, ``2m05s``, ``3h07m``, ``2d04h`` (``0s`` for a clock ahead of ours)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


@fleet_app.command("hosts")
def hosts_cmd(as_json: JsonOpt = False) -> None:
    """Every registered agent's host: labels, alive, state, the trial it runs, last heartbeat, kernel, CPUs.

    A host is alive while its last heartbeat is at most ``fleet_dead_after_s`` old (default 60) and it has not
    stopped. Exit 2 when the study database cannot be read.
    """
    from experiments.fleet.hosts import HostRegistry

    dead_after = settings().fleet_dead_after_s
    with HostRegistry(paths().optuna_url, migrate=False) as registry:
        found = registry.list()
    now = time.time()
    if as_json:
        print_json([h.to_dict(now, dead_after) for h in found])
        return
    table = Table(title=f"hosts ({len(found)}; dead after {dead_after:g} s without a heartbeat)")
    for col in ("id", "labels", "alive", "state", "study/trial", "last seen", "kernel", "cpus"):
        table.add_column(col, overflow="fold")
    for h in found:
        alive = "[green]yes[/]" if h.alive(now, dead_after) else "[red]no[/]"
        run = f"{h.study}/{h.trial}" if h.study is not None else "-"
        table.add_row(escape(h.id), escape(",".join(f"{k}={v}" for k, v in h.labels.items()) or "-"), alive, h.state,
                      escape(run), f"{ago(now - h.last_seen)} ago", escape(str(h.facts.get("kernel") or "-")),
                      str(h.facts.get("cpus") or "-"))
    out.print(table)
    if not found:
        out.print("no agent has registered in this storage (`novatune agent` registers its host)")
