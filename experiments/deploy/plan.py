"""What applying a configuration (or a spec's ranges) would do, per knob, and the knobs as listings show
them (``novatune plan``, ``novatune knobs``, ``GET /knobs``); nothing is written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from actuators import ActuatorError, Catalog, Knob, OutOfBounds, UnknownKnob
from actuators.conflicts import ConflictFinder
from experiments.deploy.config_file import ConfigFile, allowed_text
from experiments.spec import KnobSpec
from experiments.study.resolve import _param

__all__ = ["Plan", "PlanRow", "instance_price", "instance_types", "knob_info", "plan"]


# ---------------------------------------------------------------------- plan
@dataclass
class PlanRow:
    """What applying one knob of a configuration would do.

    ``new`` is the normalised value (export) and ``range`` the allowed range
    or choices (spec); ``changes`` is None when unknown (spec, unreadable).
    ``valid`` is False when the value/range is refused: ``error`` says why and
    ``allowed`` gives the knob's hard bounds.
    """

    knob: str
    current: Any = None
    new: Any = None
    range: dict[str, Any] | None = None
    changes: bool | None = None
    risk: str | None = None
    reboot: bool = False
    available: bool = False
    reason: str | None = None
    valid: bool = True
    error: str | None = None
    allowed: str | None = None
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    #: instance.type only: what the resize changes and costs (see :func:`instance_price`)
    price: dict[str, Any] | None = None


def instance_price(current: str | None, target: str) -> dict[str, Any]:
    """Size and price of ``target`` and, when ``current`` is known, the deltas of the move.

    Prices: the packaged AWS us-east-1 on-demand snapshot (collectors/data/README.md).
    """
    from collectors.pricing import load_instance_types
    from optimizer.instance import HOURS_PER_MONTH, plan_resize

    types = load_instance_types()
    t = types[target]
    out: dict[str, Any] = {"target": target, "vcpus": t.vcpus, "memory_gib": t.memory_gib,
                           "usd_per_hour": t.usd_per_hour, "usd_per_month": t.usd_per_hour * HOURS_PER_MONTH,
                           "source": "AWS us-east-1 on-demand, prices of 2026-07-20"}
    if current in types:
        out["delta"] = asdict(plan_resize(types[current], t))
    else:
        out["delta"] = None
        out["note"] = "the current instance type is unknown here (not an EC2 instance, or no DMI product name)"
    return out


def instance_types() -> tuple[str, ...]:
    """The instance types a plan may name (the priced catalogue)."""
    from collectors.pricing import load_instance_types

    return tuple(sorted(load_instance_types()))


@dataclass
class Plan:
    """The plan of a whole configuration; ``invalid`` lists the refused knobs."""

    source: str
    kind: str
    rows: list[PlanRow]

    @property
    def invalid(self) -> list[str]:
        return [r.knob for r in self.rows if not r.valid]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "invalid": self.invalid,
                "knobs": [asdict(r) for r in self.rows]}


def _range(ks: KnobSpec) -> dict[str, Any]:
    if ks.choices is not None:
        return {"choices": list(ks.choices)}
    return {"low": ks.low, "high": ks.high, **({"step": ks.step} if ks.step else {}),
            **({"log": True} if ks.log else {})}


def _differs(knob: Knob, value: str, new: Any) -> bool | None:
    try:
        return not knob.same(knob.normalise(value.split()[0] if value.split() else value), new)
    except (OutOfBounds, ActuatorError, ValueError, TypeError):
        return None


def plan(cfg: ConfigFile, catalog: Catalog, conflicts: ConflictFinder | None = None) -> Plan:
    """Per knob: current -> new (or the spec's range), change, risk, reboot, availability, conflicts.

    Never writes. Unknown knobs and refused values become rows with
    ``valid=False`` (the caller exits 2), never exceptions.
    """
    finder = conflicts if conflicts is not None else ConflictFinder()
    names = list(cfg.values) if cfg.kind == "config" else list(cfg.ranges)
    rows: list[PlanRow] = []
    for name in names:
        row = PlanRow(knob=name)
        rows.append(row)
        try:
            knob = catalog.get(name)
        except UnknownKnob as err:
            row.valid, row.error = False, str(err)
            continue
        row.risk = knob.risk
        row.reboot = knob.reboot
        row.allowed = allowed_text(knob)
        reason = knob.available()
        row.available, row.reason = reason is None, reason
        try:
            row.current = knob.read()
        except (ActuatorError, OSError) as err:
            row.current = None
            if row.reason is None:
                row.reason = f"cannot read: {err}"
        if cfg.kind == "config":
            try:
                row.new = knob.validate(cfg.values[name], assume=cfg.values)
            except OutOfBounds as err:
                row.valid, row.error, row.new = False, str(err), cfg.values[name]
            except ActuatorError as err:
                row.valid, row.error, row.new = False, f"{name}: {err}", cfg.values[name]
            if row.valid and row.current is not None:
                row.changes = not knob.same(row.current, row.new)
            if row.valid and name == "instance.type":
                row.price = instance_price(row.current, row.new)
                row.changes = row.current != row.new
        else:
            ks = cfg.ranges[name]
            row.range = _range(ks)
            problems: list[str] = []
            if _param(name, ks, knob, problems) is None:
                row.valid, row.error = False, "; ".join(p.removeprefix("knobs.") for p in problems)
        for c in finder.for_knob(knob):
            d = c.as_dict()
            d["describe"] = c.describe()
            d["differs"] = _differs(knob, c.value, row.new) if cfg.kind == "config" and row.valid else None
            row.conflicts.append(d)
    return Plan(source=cfg.source, kind=cfg.kind, rows=rows)


def knob_info(k: Knob) -> dict[str, Any]:
    """A knob as listings show it: availability (and why not), current value, domain, risk, scope."""
    reason = k.available()
    current: Any = None
    if reason is None:
        try:
            current = k.read()
        except Exception as e:  # noqa: BLE001 - a listing shows what it can
            current = f"unreadable: {e}"
    d = k.domain
    return {
        "name": k.name,
        "available": reason is None,
        "reason": reason,
        "current": current,
        "domain": {"kind": d.kind, "low": d.low, "high": d.high, "choices": list(d.choices) or None},
        "family": k.name.split(".", 1)[0],
        "risk": k.risk,
        "scope": k.scope,
        "reboot": k.reboot,
        "needs_root": k.needs_root,
        "description": k.description,
    }
