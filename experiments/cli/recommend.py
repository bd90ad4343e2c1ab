"""``novatune recommend [--root DIR] [--source S]... [--json]``, ``recommend show ID`` and
``recommend accept ID --validate SPEC``: the CLI twin of ``/recommendations``.

Thin faces over :class:`experiments.recommend.engine.Recommendations`. Listing asks the advisors (IO, network,
NUMA, CPU pinning: on this machine, or on a copy of a machine's ``/proc`` and ``/sys`` with ``--root``), the
right-sizing of observed targets and the finished studies, and ranks what they say by expected impact ×
confidence ÷ risk (with the money saved). ``accept`` runs the validated apply of one (exit 0 kept, 3 not kept).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from experiments.cli._common import JsonOpt, RootOpt, ctrl_c_ends, err, fmt, out, paths, print_json, settings

__all__ = ["recommend_app"]

recommend_app = typer.Typer(help="Ranked recommendations from the advisors, right-sizing and finished studies.",
                            invoke_without_command=True)

SourceOpt = Annotated[list[str] | None, typer.Option("--source", help="advisors | rightsizing | studies (repeat; "
                                                                      "default: all three)")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="a recommendation id from the last `novatune recommend`")]


def _engine() -> Any:
    from experiments.recommend.engine import Recommendations

    return Recommendations(paths().ensure(), settings())


def _block(i: int, a: Any) -> str:
    """One recommendation as a few lines: what, the changes, the expected gain and how sure, the evidence."""
    impact = f"{a.expected_impact:+.1%} {a.metric}" + (" (measured)" if a.measured else " (estimated)")
    if a.usd_per_month:
        impact += f", {a.usd_per_month:+.2f} USD/month"
    lines = [f"[bold]{i}. {escape(a.title)}[/]  [dim]{a.advisor}, id {a.id}[/]"]
    lines += [f"   change    {c.knob}: {escape(fmt(c.current))} -> {escape(fmt(c.value))}" for c in a.changes]
    if a.manual:
        lines.append(f"   by hand   {escape(a.manual)}")
    lines.append(f"   expect    {impact}; confidence {a.confidence:.2f}; risk {a.risk:g}/4")
    lines.append(f"   why       {escape(a.why)}")
    ev = "; ".join(f"{e.what} {fmt(e.value)}{(' ' + e.unit) if e.unit else ''}" for e in a.evidence[:5])
    lines.append(f"   evidence  {escape(ev)}" + (f" (+{len(a.evidence) - 5} more)" if len(a.evidence) > 5 else ""))
    return "\n".join(lines)


@recommend_app.callback()
def recommend_cmd(
    ctx: typer.Context,
    root: RootOpt = None,
    source: SourceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What to change, ranked: each with its expected impact, confidence, risk and the evidence behind it."""
    if ctx.invoked_subcommand is not None:
        return
    kwargs: dict[str, Any] = {"root": str(root) if root is not None else "/"}
    if source:
        kwargs["sources"] = tuple(source)
    rl = _engine().collect(**kwargs)
    if as_json:
        print_json(rl.as_dict())
        return
    if not rl.advice:
        out.print(f"nothing to recommend on {rl.root}")
    else:
        out.print(f"recommendations for {escape(rl.root)}, best first (expected impact x confidence / risk):\n")
        for i, a in enumerate(rl.advice, 1):
            out.print(_block(i, a), highlight=False)
        out.print("details: `novatune recommend show ID`; apply with validation: "
                  "`novatune recommend accept ID --validate SPEC`")
    for n in rl.notes:
        err.print(f"[yellow]{escape(n['source'])}:[/] {escape(n['note'])}", highlight=False)


@recommend_app.command("show")
def show_cmd(rec_id: IdArg, as_json: JsonOpt = False) -> None:
    """One recommendation of the last list, whole: why, changes, every piece of evidence."""
    a = _engine().get(rec_id)
    if as_json:
        print_json(a.as_dict())
        return
    out.print(f"[bold]{escape(a.title)}[/] ({a.advisor}, id {a.id})")
    out.print(f"why: {escape(a.why)}")
    for c in a.changes:
        out.print(f"  change {c.knob}: {escape(fmt(c.current))} -> {escape(fmt(c.value))}")
    if a.manual:
        out.print(f"  by hand: {escape(a.manual)}")
    out.print(f"expected: {a.expected_impact:+.1%} on {a.metric}; confidence {a.confidence:.2f}; risk {a.risk:g}/4")
    for e in a.evidence:
        out.print(f"  evidence: {escape(e.what)} = {escape(fmt(e.value))} {e.unit} [dim]({escape(e.source)})[/]")


@recommend_app.command("accept")
def accept_cmd(
    rec_id: IdArg,
    validate: Annotated[Path | None, typer.Option("--validate", metavar="SPEC",
                                                  help="the spec whose workload validates the change")] = None,
    window: Annotated[float | None, typer.Option("--window", min=1, max=86400,
                                                 help="validation window in seconds (default 600)")] = None,
    guard: Annotated[list[str] | None, typer.Option("--guard", help="METRIC:-N% (repeat)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply one recommendation with validation: kept when shown safe, else rolled back (exit 3)."""
    from optimizer.decision import parse_guard

    try:
        guards = tuple(parse_guard(g) for g in guard or ())
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--guard") from None
    stop = threading.Event()
    with ctrl_c_ends(stop):
        res = _engine().accept(rec_id, spec_path=str(validate) if validate is not None else None, window_s=window,
                               guards=guards, who="cli", stop=stop,
                               on_event=lambda ev, f: err.print(f"{ev}: {f}", highlight=False))
    if as_json:
        print_json(res)
    else:
        state = res.get("decision") or res.get("state")
        out.print(f"recommendation {rec_id}: {state}" + (f" - {escape(str(res.get('reason')))}"
                                                         if res.get("reason") else ""))
    if (res.get("decision") or res.get("state")) not in ("kept", "validated"):
        raise typer.Exit(3)
