"""Configurations to apply or check: an exported JSON, or a study spec.

:func:`load_config` reads either an export (``format: novatune.config/v1``,
see :mod:`experiments.export`: ``knobs`` maps names to values) or a study
spec (YAML/JSON, :mod:`experiments.spec`: ``knobs`` maps names to ranges).
:func:`plan` says, per knob, what applying it would do (nothing is written);
:func:`verify` compares the live state with an export (like ``tuned-adm verify``).
Bad files are :class:`ConfigError` (a user error: exit 2, no traceback).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from actuators import ActuatorError, Catalog, Knob, OutOfBounds, UnknownKnob
from actuators.conflicts import ConflictFinder
from collectors.errors import NovatuneError
from experiments.space import _param
from experiments.spec import KnobSpec, SpecError, StudySpec, parse_spec

__all__ = ["APPLY_SCOPES", "CONFIG_FORMAT", "ConfigError", "ConfigFile", "Plan", "PlanRow", "Verification", "VerifyRow",
           "knob_info", "load_config", "plan", "verify"]

CONFIG_FORMAT = "novatune.config/v1"
#: top-level fields of an export (experiments.export._document)
_CONFIG_FIELDS = ("format", "study", "trial", "chosen_by", "knobs", "objectives", "metrics", "exported_at")
#: knob scopes a configuration may be applied to stay in; the others are bound to a run's workload
#: (cgroup, process) or to the VM's size: `apply` leaves them alone and `verify` does not check them
APPLY_SCOPES = ("host", "device", "netns")


class ConfigError(NovatuneError, ValueError):
    """A configuration file is invalid; the message says what is wrong and what is allowed (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True)
class ConfigFile:
    """A loaded configuration: ``values`` for an export, ``ranges`` (and ``spec``) for a study spec."""

    source: str
    kind: Literal["config", "spec"]
    values: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, KnobSpec] = field(default_factory=dict)
    spec: StudySpec | None = None
    study: str | None = None
    unchecked: list[str] = field(default_factory=list)  # what a deployed file sets that verify cannot check


def _decode(path: Path) -> Any:
    src = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"{src}: unsupported file type {path.suffix or '(none)'!r}; use .json, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{src}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{src}: is a directory, not a configuration file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{src}: cannot read: {err}") from None
    try:
        return json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{src}: not valid {'JSON' if suffix == '.json' else 'YAML'}: {err}") from None


def _config_values(data: dict[str, Any], src: str) -> dict[str, Any]:
    problems = []
    unknown = [k for k in data if k not in _CONFIG_FIELDS]
    if unknown:
        problems.append(f"unknown field(s) {unknown}; allowed: {', '.join(_CONFIG_FIELDS)}")
    knobs = data.get("knobs")
    if not isinstance(knobs, dict) or not knobs:
        problems.append("knobs: required, a non-empty mapping of knob name -> value")
        knobs = {}
    for name, value in knobs.items():
        if not isinstance(name, str):
            problems.append(f"knobs: {name!r} is not a knob name")
        elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
            problems.append(f"knobs.{name}: {value!r} is not a value; a number or a string is allowed")
    if problems:
        raise ConfigError(f"invalid configuration {src}:\n" + "\n".join(f"  - {p}" for p in problems))
    return dict(knobs)


def _deployed(p: Path) -> ConfigFile:
    """A sysctl.d file or a TuneD profile (directory or ``tuned.conf``), read back into knob values."""
    from actuators.registry import REGISTRY
    from experiments.export import ExportError
    from experiments.export_deployed import read_deployed

    if p.is_dir() and not (p / "tuned.conf").is_file():
        raise ConfigError(f"{p}: a directory without tuned.conf; a TuneD profile directory, a sysctl.d .conf file, "
                          "or a .json/.yaml export is allowed")
    if not p.exists():
        raise ConfigError(f"{p}: file not found")
    names = REGISTRY.sysctl_names()
    try:
        values, unchecked = read_deployed(p, names)
    except ExportError as err:
        raise ConfigError(str(err)) from None
    if not values:
        raise ConfigError(f"{p}: sets no knob novatune knows")
    return ConfigFile(source=str(p), kind="config", values=values, unchecked=unchecked)


def load_config(path: str | Path) -> ConfigFile:
    """Read an export (``format: novatune.config/v1``, JSON or YAML), a deployed export (a sysctl.d
    ``.conf`` file or a TuneD profile: its directory or ``tuned.conf``) or a study spec.

    A mapping with a ``format`` field is an export; any other mapping is
    validated as a study spec.

    Raises:
        ConfigError: missing/unreadable file, bad syntax, unknown format, bad
            fields (export), or an invalid spec (the spec's problems listed).
    """
    p = Path(path)
    src = str(p)
    if p.is_dir() or p.name == "tuned.conf" or p.suffix.lower() == ".conf":
        return _deployed(p)
    data = _decode(p)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{src}: expected a mapping (an exported configuration or a study spec), got {type(data).__name__}"
        )
    if "format" in data:
        if data["format"] != CONFIG_FORMAT:
            raise ConfigError(f"{src}: unknown format {data['format']!r}; allowed: {CONFIG_FORMAT}")
        study = data.get("study")
        return ConfigFile(source=src, kind="config", values=_config_values(data, src),
                          study=study if isinstance(study, str) else None)
    try:
        spec = parse_spec(data, source=src)
    except SpecError as err:
        raise ConfigError(
            f"{err}\n(a file without 'format: {CONFIG_FORMAT}' is read as a study spec)"
        ) from None
    return ConfigFile(source=src, kind="spec", ranges=dict(spec.knobs), spec=spec, study=spec.name)


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


def _allowed(knob: Knob) -> str:
    d = knob.domain
    if d.kind == "categorical":
        if not d.choices:
            return "choices: (none readable here)"
        if len(d.choices) > 20:
            return f"choices: {', '.join(d.choices[:10])}, ... ({len(d.choices)} in all: `novatune knobs get {knob.name}`)"
        return "choices: " + ", ".join(d.choices)
    return f"{'integers' if d.kind == 'int' else 'numbers'} in [{d.low}, {d.high}]"


def _range(ks: KnobSpec) -> dict[str, Any]:
    if ks.choices is not None:
        return {"choices": list(ks.choices)}
    return {"low": ks.low, "high": ks.high, **({"step": ks.step} if ks.step else {}), **({"log": True} if ks.log else {})}


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
        row.reboot = bool(getattr(knob, "reboot", False))
        row.allowed = _allowed(knob)
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
                        "deployed through the systemd export" if knob.scope != "vm" else "the VM size: see `novatune plan`")
            continue
        try:
            row.actual = knob.read()
        except (ActuatorError, OSError) as err:
            row.ok, row.note = False, f"cannot read: {err}"
            continue
        row.ok = bool(knob.same(row.actual, want))
    return Verification(source=cfg.source, rows=rows, unchecked=list(cfg.unchecked))


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
        "reboot": bool(getattr(k, "reboot", False)),
        "needs_root": k.needs_root,
        "description": k.description,
    }
