"""``novatune fleet show|apply|rollback|rightsize|commands|publish``: one host's published state, and apply / rollback
routed to that host's agent (CLI twins of ``GET /hosts/{id}/state``, ``POST /hosts/{id}/apply``,
``POST /hosts/{id}/rollback/{app}``, ``GET /hosts/{id}/commands``); ``publish`` carries this data directory's
state into the fleet's storage once, as an agent does every ``--publish-s``.

They work on the fleet's storage directly (``--storage URL`` / ``NOVATUNE_STORAGE``); nothing is written on
this host by apply or rollback: the host's agent does it, through its own journal, and answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from experiments.cli._common import JsonOpt, UserError, err, out, print_json, settings
from experiments.cli.agent import shared_paths

__all__ = ["apply_cmd", "commands_cmd", "publish_cmd", "rightsize_cmd", "rollback_cmd", "show_cmd"]

HostOpt = Annotated[str, typer.Option("--host", help="the host's id (`novatune fleet hosts` lists them)")]
WaitOpt = Annotated[float, typer.Option(min=0, max=3600, help="seconds to wait for the agent's answer (0: do not "
                                                              "wait; `fleet commands --host H` shows it later)")]
TtlOpt = Annotated[float, typer.Option("--ttl-s", min=1, max=86400, help="seconds the agent has to take it; "
                                                                           "after that it is never run")]


def _fleet(cmd: str) -> tuple[Any, Any]:
    from experiments.fleet.hosts import HostRegistry
    from experiments.fleet.state import FleetState

    registry = HostRegistry(shared_paths(cmd).optuna_url, migrate=False)
    return registry, FleetState(registry)


def _routed(host: str, action: str, args: dict[str, Any], wait_s: float, ttl_s: float, as_json: bool) -> None:
    import getpass
    import socket

    from experiments.fleet.commands import route, wait

    registry, state = _fleet(f"fleet {action}")
    with registry:
        cmd = route(registry, state, host, action, args, by=f"cli:{getpass.getuser()}@{socket.gethostname()}",
                    ttl_s=ttl_s, dead_after_s=settings().fleet_dead_after_s)
        if wait_s > 0:
            cmd = wait(state, cmd.id, wait_s)
    if as_json:
        print_json(cmd.as_dict())
    elif cmd.state == "done":
        out.print(f"command {cmd.id} ({action} on {escape(host)}): done", highlight=False)
        out.print_json(json.dumps(cmd.result))
    elif cmd.state in ("pending", "running"):
        out.print(f"command {cmd.id} ({action} on {escape(host)}): {cmd.state}; `novatune fleet commands --host "
                  f"{escape(host)}` shows its answer", highlight=False)
    else:
        err.print(f"command {cmd.id} ({action} on {escape(host)}): {cmd.state}: {escape(cmd.error or '')}",
                  highlight=False)
    if cmd.state in ("failed", "expired", "interrupted"):
        raise typer.Exit(1)


def apply_cmd(
    config: Annotated[Path | None, typer.Argument(metavar="CONFIG", help="an export (novatune.config/v1 JSON/YAML), "
                                                                         "a sysctl.d .conf file or a TuneD profile")
                      ] = None,
    host: HostOpt = "",
    study: Annotated[str | None, typer.Option(help="apply this study's trial (a study of the fleet's storage)")] = None,
    trial: Annotated[int | None, typer.Option(min=0, help="with --study: this trial (default: the chosen one)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what would change on that host")] = False,
    wait_s: WaitOpt = 60.0,
    ttl_s: TtlOpt = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Apply a configuration to stay on HOST: its agent applies it through its own journal (exit 1 when it
    refused or failed: the reason is printed; nothing changed there)."""
    from experiments.deploy.apply import config_values
    from experiments.deploy.config_file import load_config

    if not host:
        raise UserError("--host is required: the host whose agent applies it (`novatune fleet hosts` lists them)")
    if (config is None) == (study is None):
        raise UserError("give either CONFIG (an exported configuration) or --study (and optionally --trial)")
    args: dict[str, Any] = {"dry_run": dry_run}
    if config is not None:
        args["config"] = config_values(load_config(config))
    else:
        args |= {"study": study, "trial": trial}
    _routed(host, "apply", args, wait_s, ttl_s, as_json)


def rollback_cmd(
    application: Annotated[str, typer.Argument(metavar="ID", help="the application's id (`fleet show HOST`)")],
    host: HostOpt = "",
    force: Annotated[bool, typer.Option("--force", help="restore even knobs changed since")] = False,
    wait_s: WaitOpt = 60.0,
    ttl_s: TtlOpt = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Roll back an application of HOST: its agent restores the journaled old values."""
    if not host:
        raise UserError("--host is required: the host whose agent rolls it back (`novatune fleet hosts` lists them)")
    _routed(host, "rollback", {"application": application, "force": force}, wait_s, ttl_s, as_json)


def rightsize_cmd(
    move: Annotated[str, typer.Argument(metavar="MOVE", help="approve | reject | apply | rollback")],
    proposal: Annotated[str, typer.Argument(metavar="ID", help="the proposal's id (`fleet show HOST`)")],
    host: HostOpt = "",
    note: Annotated[str | None, typer.Option(help="why (kept in the proposal's history)")] = None,
    validate_s: Annotated[float | None, typer.Option(min=1, max=7 * 86400, help="apply: the validation period "
                                                                                 "(default: the host's setting)")
                          ] = None,
    wait_s: WaitOpt = 60.0,
    ttl_s: TtlOpt = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """A step of a right-sizing proposal of HOST, taken by its agent (an apply is validated there in the
    background and rolled back on degradation)."""
    if not host:
        raise UserError("--host is required: the host whose proposal it is (`novatune fleet hosts` lists them)")
    _routed(host, "rightsize", {"proposal": proposal, "move": move, "note": note, "validate_s": validate_s}, wait_s,
            ttl_s, as_json)


def commands_cmd(host: HostOpt = "", as_json: JsonOpt = False) -> None:
    """The commands routed to HOST, newest first, with their answers."""
    if not host:
        raise UserError("--host is required (`novatune fleet hosts` lists them)")
    registry, state = _fleet("fleet commands")
    with registry:
        found = state.commands(host)
    if as_json:
        print_json([c.as_dict() for c in found])
        return
    for c in found:
        what = c.error if c.error else ""
        out.print(f"{c.id}  {c.action:8} {c.state:11} {escape(c.requested_by)}  {escape(what[:160])}",
                  highlight=False)
    if not found:
        out.print(f"no command was routed to {escape(host)}")


def show_cmd(host: Annotated[str, typer.Argument(metavar="HOST", help="the host's id")], as_json: JsonOpt = False
             ) -> None:
    """What HOST's agent last published: its studies, applications, recommendations, right-sizing proposals,
    profiles and continuous tuners."""
    from experiments.fleet.hosts import UnknownHost, check_host_id
    from experiments.fleet.state import KINDS

    registry, state = _fleet("fleet show")
    with registry:
        if registry.get(check_host_id(host)) is None:
            raise UnknownHost(f"no host {host!r} is registered; `novatune fleet hosts` lists them")
        got = state.state(host)
    if as_json:
        print_json({"host": host} | got)
        return
    for kind in KINDS:
        items = got[kind]
        when = got["updated"].get(kind)
        out.print(f"[bold]{kind}[/] ({len(items)}{'' if when else ', never published'})")
        for item in items[:50]:
            label = item.get("id") or item.get("name") or item.get("key") or "-"
            extra = item.get("state") or item.get("status") or ""
            out.print(f"  {escape(str(label))}  {escape(str(extra))}", highlight=False)


def publish_cmd(
    host_id: Annotated[str | None, typer.Option("--host-id", help="this host's id (default: its hostname)")] = None,
    labels: Annotated[str, typer.Option(help="its labels when it is not registered yet, KEY=VALUE,...")] = "",
) -> None:
    """Carry this data directory's state (service registry, applications, recommendations, right-sizing
    proposals, profiles, tuners) into the fleet's storage once, upgrading its schema first; the agent does this
    every --publish-s. Nothing in the data directory is changed. A host no agent registered yet is registered
    (with --labels and its facts) as stopped: listed, not alive."""
    from experiments.fleet.hosts import HostRegistry, check_host_id, default_host_id, host_facts, parse_labels
    from experiments.fleet.snapshot import publish
    from experiments.fleet.state import FleetState

    p = shared_paths("fleet publish")
    host = check_host_id(host_id or default_host_id())
    wanted = parse_labels(labels)
    with HostRegistry(p.optuna_url) as registry:
        if registry.get(host) is None:
            registry.register(host, labels=wanted, facts=host_facts())
            registry.heartbeat(host, state="stopped")
        snap = publish(FleetState(registry), host, p)
    for kind, items in snap.kinds.items():
        out.print(f"{kind}: {len(items)} published", highlight=False)
    for kind, reason in snap.skipped.items():
        err.print(f"[yellow]{kind} not published[/]: {escape(reason)}")
