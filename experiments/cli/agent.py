"""``novatune agent`` (one per host) and ``novatune fleet submit`` (a study for the agents whose labels match).

Both need the fleet's shared storage: ``--storage URL`` or ``NOVATUNE_STORAGE`` (:mod:`experiments.storage`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from experiments.cli._common import UserError, err, out, valid_name
from experiments.cli._common import paths as _paths
from experiments.settings import Paths

__all__ = ["agent_cmd", "shared_paths", "submit_cmd"]

_NEEDS_STORAGE = ("needs the fleet's shared storage: novatune --storage postgresql://USER:PASSWORD@HOST:PORT/DB "
                  "{cmd} ... (or set NOVATUNE_STORAGE)")


def shared_paths(cmd: str) -> Paths:
    """The data directory's paths, when a shared storage is set (``novatune CMD`` needs it).

    Raises:
        UserError: no ``--storage`` / ``NOVATUNE_STORAGE`` (the message says how to give one).
    """
    paths = _paths()
    if paths.storage is None:
        raise UserError(f"novatune {cmd} " + _NEEDS_STORAGE.format(cmd=cmd))
    return paths


def _labels(text: str, what: str) -> dict[str, str]:
    from experiments.fleet.hosts import parse_labels

    try:
        return parse_labels(text)
    except ValueError as e:
        raise UserError(f"{what}: {e}") from None


def agent_cmd(
    labels: Annotated[str, typer.Option(help="this host's labels, KEY=VALUE,... (e.g. role=db,zone=a)")] = "",
    host_id: Annotated[str | None, typer.Option("--host-id", help="this host's id (default: its hostname)")] = None,
    heartbeat_s: Annotated[float, typer.Option(min=0.5, help="seconds between a running trial's heartbeats")] = 10.0,
    grace_s: Annotated[float, typer.Option(min=2.0, help="a trial without a heartbeat this long is failed")] = 30.0,
    poll_s: Annotated[float, typer.Option(min=0.1, help="seconds between looks for work when idle")] = 5.0,
    exit_when_idle: Annotated[bool, typer.Option("--exit-when-idle",
                                                 help="exit once no fleet study for these labels runs")] = False,
    publish_s: Annotated[float, typer.Option(min=1.0, help="seconds between publications of this host's state "
                                                           "(studies, applications, recommendations, ...)")] = 30.0,
) -> None:
    """Run this host's agent: take the trials of the fleet studies that target its labels, run the apply and
    rollback commands routed to this host, publish its state."""
    from experiments.fleet.agent import Agent
    from experiments.fleet.hosts import default_host_id

    paths = shared_paths("agent")
    parsed = _labels(labels, "--labels")
    host = host_id or default_host_id()

    def on_event(kind: str, **data: object) -> None:
        if kind == "registered":
            err.print(f"agent {escape(host)} registered (labels {escape(labels or 'none')}); "
                      f"{data['recovered']} knob(s) restored from the journal", highlight=False)
        elif kind == "study":
            err.print(f"taking trials of fleet study {escape(str(data['name']))}", highlight=False)
        elif kind == "trial_end":
            tr = data["report"]
            what = "complete" if tr.state == "complete" else f"failed: {tr.reason[:80]}"  # type: ignore[attr-defined]
            err.print(f"  {escape(str(data['study']))} #{tr.number}: {escape(what)}", highlight=False)  # type: ignore[attr-defined]
        elif kind == "refused":
            err.print(f"[yellow]not taking[/] {escape(str(data['name']))}: {escape(str(data['reason']))}")
        elif kind == "command":
            why = f": {str(data['error'])[:200]}" if data.get("error") else ""
            err.print(f"command {data['id']} ({data['action']}): {data['state']}{escape(why)}", highlight=False)

    try:
        agent = Agent(paths, host_id=host, labels=parsed, heartbeat_s=heartbeat_s, grace_s=grace_s, poll_s=poll_s,
                      exit_when_idle=exit_when_idle, publish_s=publish_s, on_event=on_event)
    except ValueError as e:
        raise UserError(str(e)) from None
    report = agent.run()
    out.print(f"agent {escape(host)}: {len(report.trials)} trial(s) run, "
              f"{sum(s == 'complete' for _, _, s in report.trials)} complete", highlight=False)


def submit_cmd(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", help="study spec, .yaml or .json")],
    selector: Annotated[str, typer.Option(help="the hosts whose agents take its trials: KEY=VALUE,... "
                                               "(every label must match; empty: every agent)")] = "",
    name: Annotated[str | None, typer.Option(help="study name (default: the spec's name and an id)",
                                             callback=valid_name)] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="override budget.trials (the whole fleet's)")] = None,
    mode: Annotated[str, typer.Option(help="shared: each trial measured on one host; per-host: each host its "
                                           "own study NAME.HOST, warm-started from the others'; fleet-wide: each "
                                           "trial on --hosts-per-trial hosts, its objective their mean")] = "shared",
    hosts_per_trial: Annotated[int, typer.Option(help="fleet-wide: hosts that measure each configuration "
                                                      "(at most the matching hosts alive)")] = 0,
) -> None:
    """Submit a fleet study: the agents whose labels match take its trials (nothing runs on this host)."""
    import optuna

    from experiments.fleet.studies import submit
    from experiments.spec import load_spec
    from experiments.study.prepare import prepare

    paths = shared_paths("fleet submit")
    wanted = _labels(selector, "--selector")
    spec = load_spec(spec_file)
    plan = prepare(spec, paths=paths, trials=trials, source=str(spec_file))
    per_trial = hosts_per_trial or (2 if mode == "fleet-wide" else 1)
    created = submit(plan, optuna.storages.RDBStorage(paths.optuna_url), name=name, selector=wanted, mode=mode,
                     hosts_per_trial=per_trial)
    out.print(f"fleet study {escape(created)} submitted: {plan.n_trials} trials for the agents matching "
              f"{escape(selector or 'any labels')}; `novatune study show {escape(created)}` follows it",
              highlight=False)
