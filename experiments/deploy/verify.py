"""Drift between the live state and an export, per knob, like ``tuned-adm verify`` (``novatune verify``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from actuators import ActuatorError, Catalog, Knob, OutOfBounds, UnknownKnob
from experiments.deploy.config_file import APPLY_SCOPES, CONFIG_FORMAT, ConfigError, ConfigFile

__all__ = ["Verification", "VerifyRow", "verify"]


# -------------------------------------------------------------------- verify
@dataclass
class VerifyRow:
    """One knob: ``ok`` True (as expected), False (drift) or None (not checkable here: ``note``)."""

    knob: str
    expected: Any
    actual: Any = None
    ok: bool | None = None
    note: str | None = None


@dataclass
class Verification:
    source: str
    rows: list[VerifyRow]
    unchecked: list[str] = field(default_factory=list)

    @property
    def drift(self) -> list[str]:
        return [r.knob for r in self.rows if r.ok is False]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "drift": self.drift, "knobs": [asdict(r) for r in self.rows],
                "unchecked": self.unchecked}


def verify(cfg: ConfigFile, catalog: Catalog) -> Verification:
    """Compare the live value of every knob of an export with its expected value.

    A knob that cannot be read counts as drift; knobs bound to a run's
    workload (cgroup/process scope) or the VM size are not checked (``ok`` None):
    ``novatune apply`` does not apply them either.

    Raises:
        ConfigError: ``cfg`` is a spec, names unknown knobs or holds refused values.
    """
    if cfg.kind != "config":
        raise ConfigError(
            f"{cfg.source}: verify needs an exported configuration (format: {CONFIG_FORMAT}), not a study spec "
            "(a spec gives ranges, not values; use `novatune plan` for it)"
        )
    problems: list[str] = []
    pairs: list[tuple[Knob, Any]] = []
    for name, value in cfg.values.items():
        try:
            knob = catalog.get(name)
            pairs.append((knob, knob.normalise(value)))
        except (UnknownKnob, OutOfBounds) as err:
            problems.append(str(err))
    if problems:
        raise ConfigError(f"invalid configuration {cfg.source}:\n" + "\n".join(f"  - {p}" for p in problems))
    rows: list[VerifyRow] = []
    for knob, want in pairs:
        row = VerifyRow(knob=knob.name, expected=want)
        rows.append(row)
        if knob.scope not in APPLY_SCOPES:
            row.note = (f"not a host setting (scope {knob.scope}): `novatune apply` leaves it alone; "
                        "deployed through the systemd export" if knob.scope != "vm"
                        else "the VM size: see `novatune plan`")
            continue
        try:
            row.actual = knob.read()
        except (ActuatorError, OSError) as err:
            row.ok, row.note = False, f"cannot read: {err}"
            continue
        row.ok = bool(knob.same(row.actual, want))
    return Verification(source=cfg.source, rows=rows, unchecked=list(cfg.unchecked))


