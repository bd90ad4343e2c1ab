"""``novatune rightsize list|show|approve|apply|reject|rollback|history|plot|replay`` and ``novatune cost
recommendations|savings|predict``: the CLI twins of ``/rightsizing`` and ``/cost``.

Thin faces over :class:`experiments.rightsizing.engine.Rightsizing`. ``list`` analyses every observed target
(``novatune observe``) and records a proposal for each live one with enough history; a proposal is named by
its id or by its target (the newest open proposal of that target). ``apply`` writes the proposal's CPU quota
and memory limit to the target's cgroup (journaled: ``novatune rollback``/``recover`` put it back) and watches
it for the validation period, rolling back on degradation; Ctrl-C during the watch rolls back too.
"""

from __future__ import annotations

import getpass
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, UserError, ctrl_c_ends, err, fmt, out, paths, print_json, settings

if TYPE_CHECKING:
    from experiments.rightsizing.engine import Analysis, Rightsizing

__all__ = ["cost_app", "rightsize_app"]

rightsize_app = typer.Typer(no_args_is_help=True, help="Right-size running targets from their usage history.")
cost_app = typer.Typer(no_args_is_help=True, help="What targets cost, what they could cost, and what they will.")

ProfileOpt = Annotated[str | None, typer.Option("--profile", help="savings | balanced | reliability (default: the "
                                                                  "rightsizing_profile setting)")]
RefArg = Annotated[str, typer.Argument(metavar="ID|TARGET", help="a proposal id, or a target (its newest open "
                                                                 "proposal)")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="why (kept in the history)")]


def engine() -> Rightsizing:
    from experiments.rightsizing.engine import Rightsizing

    return Rightsizing(paths().ensure(), settings())


def who() -> str:
    """The person at the terminal: ``cli:<user>`` (the one who ran sudo, when novatune runs under sudo)."""
    return f"cli:{os.environ.get('SUDO_USER') or getpass.getuser()}"


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A table with these columns, long cells folded (targets and notes are long)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def _row(a: Analysis) -> list[str]:
    d = a.to_dict()
    cur = f"{fmt(d['current_cpu_cores'])} / {fmt(d['current_mem_gib'])}"
    return [escape(d["target"]), d["proposal"] or "-", d["state"] or d["kind"], d["finding"], cur,
            f"{d['cpu_cores']:g} / {d['mem_gib']:g}", f"{d['confidence']:.2f}", d["risk_label"],
            fmt(d["cost"].get("savings_usd_per_month"))]


@rightsize_app.command("list")
def list_cmd(profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Recommendations for every observed target (a proposal recorded for each live one)."""
    found = engine().recommendations(profile=profile, who=who())
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    if not found:
        err.print("no observed targets: `novatune observe --cgroup PATH` (or --pid, --systemd, --import-csv) first")
        return
    table = _table("right-sizing", ("target", "proposal", "state", "finding", "now cores / GiB", "recommended",
                                     "confidence", "risk", "saves $/month"))
    for a in found:
        table.add_row(*_row(a))
    out.print(table)
    for a in found:
        if a.recommendation.needs_hours > 0:
            err.print(f"{escape(a.target)}: needs {a.recommendation.needs_hours:.1f} more hours of history")


@rightsize_app.command("show")
def show_cmd(ref: RefArg, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """One proposal (by id or target), or a target's recommendation when it has no proposal."""
    from collectors.usage.errors import UnknownTarget
    from experiments.rightsizing.proposals import UnknownProposal

    eng = engine()
    try:
        data: dict[str, Any] = eng.proposal(ref).to_dict()
    except UnknownProposal:
        try:
            data = eng.analyse(ref, profile=profile).to_dict()
        except UnknownTarget:
            raise UnknownProposal(f"no proposal and no observed target named {ref!r}; `novatune rightsize list` "
                                  "shows both") from None
    if as_json:
        print_json(data)
        return
    rec = data["recommendation"]
    out.print(f"[bold]{escape(data['target'])}[/]  {escape(str(data.get('id') or data.get('kind')))}  "
              f"state {data.get('state') or '-'}  finding {rec['finding']}")
    for line in rec.get("reasons", []):
        out.print(f"  {escape(line)}")
    if data.get("values"):
        out.print("values: " + ", ".join(f"{k}={v}" for k, v in data["values"].items()))
    for step in data.get("history", []):
        out.print(f"  {step['at']}  {step['state']:<12} {escape(step['who'])}  {escape(step.get('note') or '')}")


def _move(ref: str, to: str, note: str | None, as_json: bool) -> None:
    from experiments.rightsizing import workflow

    eng = engine()
    p = eng.proposal(ref)
    moved = (workflow.approve if to == "approved" else workflow.reject)(eng.proposals, p.id, who=who(), note=note)
    if as_json:
        print_json(moved.to_dict())
    else:
        out.print(f"{moved.id} ({escape(moved.target)}): {moved.state}")


@rightsize_app.command("approve")
def approve_cmd(ref: RefArg, note: NoteOpt = None, as_json: JsonOpt = False) -> None:
    """proposed -> approved (who and when recorded)."""
    _move(ref, "approved", note, as_json)


@rightsize_app.command("reject")
def reject_cmd(ref: RefArg, note: NoteOpt = None, as_json: JsonOpt = False) -> None:
    """proposed | approved -> rejected (nothing written)."""
    _move(ref, "rejected", note, as_json)


@rightsize_app.command("apply")
def apply_cmd(
    ref: RefArg,
    validate_for: Annotated[float | None, typer.Option("--validate-for", min=1, max=7 * 86400,
                                                       help="seconds to watch (default rightsizing_validation_s)")
                            ] = None,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="apply and return; the change stays 'applied' "
                                                                     "until `rightsize rollback`")] = False,
    note: NoteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """approved -> applied (journaled), then watched: validated, or rolled back on degradation (or Ctrl-C)."""
    from experiments.rightsizing import workflow

    eng = engine()
    p = eng.proposal(ref)
    watch = None if no_validate else eng.before_change(p)
    p = workflow.apply(eng.proposals, p.id, paths=eng.paths, settings=eng.settings, who=who(), note=note)
    if not as_json:
        read_back = escape(p.history[-1].note or "")
        out.print(f"{p.id} ({escape(p.target)}): applied, read back from the kernel: {read_back}")
    if not no_validate:
        stop = threading.Event()
        if not as_json:
            secs = validate_for if validate_for is not None else eng.settings.rightsizing_validation_s
            err.print(f"watching {escape(p.target)} for {secs:g} s (Ctrl-C rolls back)")
        with ctrl_c_ends(stop):
            assert watch is not None
            p = eng.validate_after_apply(p, watch, duration_s=validate_for, stop=stop.is_set, who=who())
    if as_json:
        print_json(p.to_dict())
        return
    last = p.history[-1]
    out.print(f"{p.id} ({escape(p.target)}): {p.state}" + (f" - {escape(last.note)}" if last.note else ""))


@rightsize_app.command("rollback")
def rollback_cmd(ref: RefArg, note: NoteOpt = None, as_json: JsonOpt = False) -> None:
    """applied | validated -> rolled_back: the exact old values written back. Given a target, its open proposal;
    when it has none (its change was already rolled back), nothing to do: it says so and exits 0."""
    from experiments.rightsizing import workflow
    from experiments.rightsizing.engine import LIVE_KINDS
    from experiments.rightsizing.proposals import UnknownProposal

    eng = engine()
    try:
        p = eng.proposal(ref)
    except UnknownProposal:
        if not ref.startswith(LIVE_KINDS):
            raise
        last = next(iter(eng.proposals.list(target=ref)), None)
        state = f"its newest proposal {last.id} is {last.state}" if last else "it has no proposal"
        if as_json:
            print_json({"target": ref, "rolled_back": None, "reason": state})
        else:
            out.print(f"nothing to roll back on {escape(ref)}: {state}")
        return
    p = workflow.rollback(eng.proposals, p.id, paths=eng.paths, who=who(), note=note)
    if as_json:
        print_json(p.to_dict())
    else:
        out.print(f"{p.id} ({escape(p.target)}): {p.state}")


@rightsize_app.command("history")
def history_cmd(target: Annotated[str | None, typer.Argument(help="one target (default: all)")] = None,
                as_json: JsonOpt = False) -> None:
    """Every step of every proposal: who moved it where, and when."""
    rows = engine().history(target=target)
    if as_json:
        print_json(rows)
        return
    table = _table("right-sizing history", ("at", "proposal", "target", "state", "who", "note"))
    for r in rows:
        table.add_row(str(r["at"]), r["proposal"], escape(r["target"]), r["state"], escape(r["who"]),
                      escape(r.get("note") or ""))
    out.print(table)


@rightsize_app.command("plot")
def plot_cmd(target: Annotated[str, typer.Argument(help="an observed or imported target")],
             output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write")],
             profile: ProfileOpt = None,
             train_frac: Annotated[float | None, typer.Option(
                 "--train-frac", min=0.05, max=0.95,
                 help="recommend from this first share of the history only, and mark where it ends (a replay)")
             ] = None) -> None:
    """A PNG of the target's CPU and memory use against its current and recommended size."""
    from experiments.rightsizing.plot import plot_usage
    from optimizer.rightsizing.recommend import recommend
    from optimizer.rightsizing.replay import split

    if str(output.parent) and not output.parent.is_dir():
        raise UserError(f"cannot write {output}: the directory {output.parent} does not exist")
    eng = engine()
    a = eng.analyse(target, profile=profile)
    rec, until = a.recommendation, None
    if train_frac is not None:
        n = split(a.usage, train_frac)
        rec = recommend(a.usage.head(n), profile=rec.profile, min_hours=eng.settings.rightsizing_min_history_h)
        until = float(a.usage.t[n - 1])
    plot_usage(a.usage, rec, output, train_until=until)
    err.print(f"wrote {escape(str(output))}")


# ---------------------------------------------------------------------- cost
@cost_app.command("recommendations")
def cost_recommendations_cmd(profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Per target: the cheapest fitting offers, the Pareto front of cost against risk, a purchase plan."""
    rows = engine().cost_recommendations(profile=profile)
    if as_json:
        print_json(rows)
        return
    table = _table("cost: cost against performance risk (Pareto front), per target",
                   ("target", "instance type", "option", "$/month", "risk", "spot"))
    for r in rows:
        for o in r.get("front", [])[:6]:
            table.add_row(escape(r["target"]), o["instance_type"], o["purchase_option"], f"{o['usd_per_month']:.2f}",
                          f"{o['risk']:.2f}", "yes" if o["spot_suitable"] else "no")
    out.print(table)
    for r in rows:
        plan = r.get("purchase_plan")
        if plan:
            out.print(f"{escape(r['target'])}: {plan['baseline_instances']} x {plan['unit_type']} on "
                      f"{plan['baseline_option']} + {plan['peak_instance_hours']:.0f} h/month on "
                      f"{plan['peak_option']} = ${plan['total_usd_per_month']:.2f}/month "
                      f"(all on demand ${plan['all_on_demand_usd_per_month']:.2f})")


@cost_app.command("savings")
def cost_savings_cmd(profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """What moving every target to its recommendation saves per month."""
    data = engine().savings(profile=profile)
    if as_json:
        print_json(data)
        return
    table = _table("savings (allocation cost: cores x vCPU-hour + GiB x GiB-hour)",
                   ("target", "finding", "now $/month", "recommended $/month", "saves $/month", "instance plan"))
    for r in data["targets"]:
        plan = r["instance_plan"]
        move = f"{plan['current_type']} -> {plan['recommended_type']} ({fmt(plan['usd_per_month_delta'])} $/month)"
        table.add_row(escape(r["target"]), r["finding"], fmt(r["current_usd_per_month"]),
                      fmt(r["recommended_usd_per_month"]), fmt(r["savings_usd_per_month"]), move)
    out.print(table)
    out.print(f"total: ${data['current_usd_per_month']:.2f} -> ${data['recommended_usd_per_month']:.2f} per month, "
              f"saves ${data['savings_usd_per_month']:.2f} ({data['savings_pct']:.1f} %)")


@cost_app.command("predict")
def cost_predict_cmd(target: Annotated[str, typer.Argument(help="an observed or imported target")],
                     days: Annotated[float, typer.Option("--days", min=1, max=365, help="horizon")] = 30.0,
                     as_json: JsonOpt = False) -> None:
    """The target's cost over the next days, with the backtested error of the forecast."""
    data = engine().predict(target, horizon_days=days)
    if as_json:
        print_json(data)
        return
    bt = data["backtest_error_pct"]
    out.print(f"{escape(target)}: ${data['usd']:.2f} over {days:g} days (${data['low']:.2f}..${data['high']:.2f}); "
              f"backtested error {'-' if bt is None else f'{bt:.1f} %'} ({escape(data['method'])})")
