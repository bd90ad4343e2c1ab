"""``novatune knobs list|get``, ``plan`` and ``verify``: the CLI twin of ``/knobs``.

The knob catalog on this machine (or on a copy of a machine's ``/proc``, ``/sys`` and ``/etc`` with
``--root``), what applying a configuration would change there, and whether the live settings still
match an exported configuration. Nothing here writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, RootOpt, UserError, err, out, settings
from experiments.cli._common import fmt as _fmt
from experiments.cli._common import print_json as _print_json

if TYPE_CHECKING:
    from actuators import Catalog
    from actuators.conflicts import ConflictFinder

__all__ = ["knobs_app", "plan_cmd", "verify_cmd"]

knobs_app = typer.Typer(no_args_is_help=True, help="The knob catalog: what can be tuned here.")


def _bound(root: Path | None) -> tuple[Catalog, ConflictFinder]:
    """The catalog and the conflict finder over ``root`` (default ``/``).

    Raises:
        UserError: ``root`` is not a directory.
    """
    from actuators import Catalog, KnobContext, SysRoot
    from actuators.conflicts import ConflictFinder
    from experiments.deploy.plan import instance_types

    base = "/" if root is None else str(root)
    if root is not None and not root.is_dir():
        raise UserError(f"--root {root}: not a directory")
    context = KnobContext(instance_types=instance_types(), protected_interfaces=tuple(settings().protected_interfaces))
    return Catalog(SysRoot(base), context), ConflictFinder(base)


@knobs_app.command("list")
def knobs_list(as_json: JsonOpt = False) -> None:
    """Every knob on this machine: available or not (and why), current value, bounds, risk."""
    from experiments.deploy.plan import knob_info

    rows = [knob_info(k) for k in _bound(None)[0].knobs()]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="knobs")
    for col in ("name", "available", "current", "bounds", "risk", "scope"):
        table.add_column(col)
    for r in rows:
        d = r["domain"]
        choices = d["choices"] or []
        shown = choices if len(choices) <= 8 else [*choices[:5], f"... ({len(choices)} in all)"]
        bounds = ", ".join(shown) if choices else f"[{d['low']}, {d['high']}]"
        table.add_row(r["name"], "yes" if r["available"] else f"no: {r['reason']}", str(r["current"]), bounds,
                      r["risk"], r["scope"])
    out.print(table)
    out.print("patterns: sizing.* and affinity.* bind to the workload a study starts")


@knobs_app.command("get")
def knobs_get(
    name: Annotated[str, typer.Argument(help="knob name, e.g. vm.swappiness")],
    as_json: JsonOpt = False,
) -> None:
    """One knob: current value, domain, bounds, risk."""
    from experiments.deploy.plan import knob_info

    row = knob_info(_bound(None)[0].get(name))
    if as_json:
        _print_json(row)
    else:
        for k, v in row.items():
            out.print(f"[bold]{k}[/]: {v}")


def plan_cmd(
    config: Annotated[Path, typer.Argument(metavar="CONFIG|SPEC", help="exported configuration (JSON) or study spec")],
    as_json: JsonOpt = False,
    root: RootOpt = None,
) -> None:
    """What applying a configuration would change, per knob; nothing is written.

    Exit 2 when a knob is unknown or a value/range is outside its hard bounds.
    """
    from experiments.deploy.config_file import load_config
    from experiments.deploy.plan import plan

    cfg = load_config(config)
    catalog, finder = _bound(root)
    result = plan(cfg, catalog, finder)
    if as_json:
        _print_json(result.as_dict())
    else:
        kind = "study spec: ranges" if cfg.kind == "spec" else "configuration"
        table = Table(title=f"plan for {cfg.source} ({kind})")
        for col in ("knob", "current", "new" if cfg.kind == "config" else "range", "change", "risk", "reboot",
                    "available", "conflicts"):
            table.add_column(col, overflow="fold")
        for r in result.rows:
            if cfg.kind == "config":
                target = _fmt(r.new)
            elif r.range is None:
                target = "-"
            elif "choices" in r.range:
                target = "{" + ", ".join(r.range["choices"]) + "}"
            else:
                target = f"[{_fmt(r.range['low'])}, {_fmt(r.range['high'])}]"
            change = "INVALID" if not r.valid else ("-" if r.changes is None else ("yes" if r.changes else "no"))
            conflicts = "\n".join(escape(c["describe"]) for c in r.conflicts) or "-"
            table.add_row(r.knob, escape(_fmt(r.current)), escape(target), change, r.risk or "-",
                          "yes" if r.reboot else "no",
                          "yes" if r.available else escape(f"no: {r.reason}"), conflicts)
        out.print(table)
        for r in result.rows:
            if r.price is not None:
                p, d = r.price, r.price["delta"]
                line = (f"instance.type -> {p['target']}: {p['vcpus']} vCPU, {p['memory_gib']:g} GiB, "
                        f"${p['usd_per_hour']:.4f}/h")
                if d is not None:
                    line += (f"; from {d['current']}: {d['vcpus_delta']:+d} vCPU, {d['memory_gib_delta']:+g} GiB, "
                             f"{d['usd_per_hour_delta']:+.4f} $/h ({d['usd_per_month_delta']:+.2f} $/month)")
                else:
                    line += f"; {p['note']}"
                out.print(escape(line + f" [{p['source']}]"))
        if any(r.conflicts for r in result.rows):
            out.print("[yellow]conflicts:[/] another configuration sets these settings; it wins at boot "
                      "(or when TuneD re-applies its profile)")
    bad = [r for r in result.rows if not r.valid]
    if bad:
        for r in bad:
            extra = f" (allowed: {r.allowed})" if r.allowed and r.allowed not in (r.error or "") else ""
            err.print(f"[red]invalid:[/] {escape(str(r.error))}{escape(extra)}", highlight=False)
        raise typer.Exit(2)


def verify_cmd(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="an export: JSON/YAML (novatune.config/v1), a "
                                                                  "sysctl.d .conf file or a TuneD profile")],
    as_json: JsonOpt = False,
    root: RootOpt = None,
) -> None:
    """Compare the live settings with an exported configuration (JSON/YAML, sysctl.d file or TuneD profile).

    Exit 0 when nothing drifted, 1 when some knob differs, 2 on bad input.
    """
    from experiments.deploy.config_file import load_config
    from experiments.deploy.verify import verify

    cfg = load_config(config)
    catalog, _ = _bound(root)
    result = verify(cfg, catalog)
    if as_json:
        _print_json(result.as_dict())
    else:
        table = Table(title=f"verify {cfg.source}")
        for col in ("knob", "expected", "actual", "ok", "note"):
            table.add_column(col, overflow="fold")
        for r in result.rows:
            ok = "skipped" if r.ok is None else ("ok" if r.ok else "DRIFT")
            table.add_row(r.knob, escape(_fmt(r.expected)), escape(_fmt(r.actual)), ok, escape(r.note or ""))
        out.print(table)
        out.print("no drift" if not result.drift else f"[red]drift:[/] {', '.join(result.drift)}")
        if result.unchecked:
            out.print(f"[yellow]not checked:[/] {escape(', '.join(result.unchecked))}", highlight=False)
    if result.drift:
        raise typer.Exit(1)

