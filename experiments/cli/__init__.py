"""The ``novatune`` command line (typer + rich): one module per resource, mirroring the API's routers.

- :mod:`.study`: ``quickstart``, ``study run|start|watch|stop|delete|list|show|trials|pareto|export``,
  ``convergence`` (API: ``/studies``, ``GET /tuning/convergence``)
- :mod:`.tuning`: ``apply``, ``rollback``, ``history``, ``status`` (``/tuning``)
- :mod:`.autotune`: ``autotune run|status|history`` (``/tuning/continuous``)
- :mod:`.knobs`: ``knobs list|get``, ``plan``, ``verify`` (``/knobs``)
- :mod:`.service`: ``serve``, ``health``, ``settings show|set``, ``ui`` (``/healthz``, ``/settings``)
- :mod:`.system`: ``recover``, ``metrics``, ``topology`` (this machine)
- :mod:`.replay`: ``replay``
- :mod:`.profile`: ``profile record|watch|list|show|hotspots``, ``flamegraph diff`` (``/profiling``)
- :mod:`.bench`: ``bench run|list|show|compare`` (``/bench``)
- :mod:`.fleet`: ``fleet hosts`` (``/hosts``); :mod:`.fleet_ops`: ``fleet
  show|apply|rollback|rightsize|commands|publish`` (``/hosts/{id}/...``); :mod:`.agent`: ``agent``, ``fleet submit``
- :mod:`.observe`: ``observe`` (a running target's usage history; imports)
- :mod:`.rightsize`: ``rightsize list|show|approve|apply|reject|rollback|history|plot``, ``cost
  recommendations|savings|predict`` (``/rightsizing``, ``/cost``); :mod:`.rightsize_replay`: ``rightsize replay``
- :mod:`._common`: consoles, data directory, settings, JSON output, :class:`UserError`

This module builds the app, registers every command (in the order ``novatune --help`` lists them)
and runs it: :func:`main`. Every error novatune raises on purpose
(:class:`~collectors.errors.NovatuneError`: bad spec, unknown knob, unknown study, bad export
request, ...) ends with a one-paragraph message naming what was wrong and what is allowed, and the
error's exit code (2); an interrupted study restores its knobs and exits 130. No traceback reaches
the user unless ``NOVATUNE_DEBUG=1``. Every command runs with umask 077: what novatune creates (the
journal, the databases, the runs, the artifacts, the token) is its user's alone.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from collectors.errors import NovatuneError
from experiments.cli import (
    agent,
    autotune,
    bench,
    fleet,
    fleet_ops,
    knobs,
    observe,
    profile,
    recommend,
    replay,
    rightsize,
    rightsize_replay,
    service,
    study,
    system,
    tuning,
    validate,
)
from experiments.cli._common import UserError, err
from experiments.safefs import private_umask

__all__ = ["UserError", "app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find, apply and prove better Linux settings.")


@app.callback()
def _options(storage: Annotated[str | None, typer.Option(
        "--storage", metavar="URL", show_default=False,
        help="where studies live: postgresql://USER:PASSWORD@HOST:PORT/DB (a fleet's shared storage) or "
             "sqlite:////PATH.db (default: optuna.db in the data directory; env NOVATUNE_STORAGE)")] = None) -> None:
    """Find, apply and prove better Linux settings."""
    if storage is not None:  # checked now (exit 2 on a bad URL), then seen by every process the command starts
        from experiments.storage import ENV, check_storage

        os.environ[ENV] = check_storage(storage)


app.command()(study.quickstart)
app.command("convergence")(study.convergence_cmd)
app.command("plan")(knobs.plan_cmd)
app.command("verify")(knobs.verify_cmd)
app.command()(system.recover)
app.command()(service.ui)
app.command("metrics")(system.metrics_cmd)
app.command("topology")(system.topology_cmd)
app.command("replay")(replay.replay_cmd)
app.command("observe")(observe.observe_cmd)
app.command()(service.serve)
app.command("agent")(agent.agent_cmd)
app.command("health")(service.health_cmd)
app.command("apply")(tuning.apply_cmd)
app.command("rollback")(tuning.rollback_cmd)
app.command("history")(tuning.history_cmd)
app.command("status")(tuning.status_cmd)
app.command("validations")(validate.validations_cmd)
app.add_typer(study.study_app, name="study")
app.add_typer(autotune.autotune_app, name="autotune")
app.add_typer(knobs.knobs_app, name="knobs")
app.add_typer(service.settings_app, name="settings")
app.add_typer(profile.profile_app, name="profile")
app.add_typer(profile.flamegraph_app, name="flamegraph")
rightsize.rightsize_app.command("replay")(rightsize_replay.replay_cmd)
app.add_typer(rightsize.rightsize_app, name="rightsize")
app.add_typer(rightsize.cost_app, name="cost")
app.add_typer(recommend.recommend_app, name="recommend")
app.add_typer(bench.bench_app, name="bench")
fleet.fleet_app.command("submit")(agent.submit_cmd)
for _name, _cmd in (("show", fleet_ops.show_cmd), ("apply", fleet_ops.apply_cmd),
                    ("rollback", fleet_ops.rollback_cmd), ("rightsize", fleet_ops.rightsize_cmd),
                    ("commands", fleet_ops.commands_cmd), ("publish", fleet_ops.publish_cmd)):
    fleet.fleet_app.command(_name)(_cmd)
app.add_typer(fleet.fleet_app, name="fleet")


def main(argv: list[str] | None = None) -> int:
    """Run ``novatune`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    0 on success; a :class:`~collectors.errors.NovatuneError`'s ``exit_code`` (2), printed on one
    line; 2 for a usage error (click's message); 130 when interrupted (the trial's knobs restored);
    1 for anything else (an internal error: the traceback with ``NOVATUNE_DEBUG=1``). A command's
    ``typer.Exit(code)`` is returned as is. The command runs with umask 077 (the previous one is put back).
    """
    with private_umask():
        return _main(argv)


#: what an interrupted command says: true of every command (a study restores its trial's knobs, an apply
#: its writes, bench and the profiler change nothing they do not remove), unlike "the trial's knobs"
PUT_BACK = "whatever this command changed was put back"


def _main(argv: list[str] | None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False)
        # click returns a command's ``typer.Exit(code)`` instead of raising it
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as e:  # usage errors: missing argument, bad option value, ...
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            err.print(f"[red]error:[/] {e}")
        return int(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: {PUT_BACK}")
        return 130
    except SystemExit:
        raise
    except BaseException as e:
        from experiments.study.outcomes import Interrupted

        if isinstance(e, Interrupted):
            err.print(f"[yellow]interrupted by {e}[/]: {PUT_BACK}")
            return 130
        if isinstance(e, NovatuneError):
            # one line, whatever the terminal's width
            err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            return e.exit_code
        if os.environ.get("NOVATUNE_DEBUG") == "1":
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e}\n(run with NOVATUNE_DEBUG=1 for the traceback)")
        return 1

