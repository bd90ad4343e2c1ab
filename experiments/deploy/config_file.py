"""Configuration files to apply or check: an exported JSON/YAML (``format: novatune.config/v1``, see
:mod:`experiments.deploy.export`: ``knobs`` maps names to values), a deployed export read back (a sysctl.d
file or a TuneD profile, :mod:`experiments.deploy.deployed`), or a study spec (YAML/JSON,
:mod:`experiments.spec`: ``knobs`` maps names to ranges). Bad files are :class:`ConfigError` (a user
error: exit 2, no traceback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from actuators import Knob
from collectors.errors import NovatuneError
from experiments.spec import KnobSpec, SpecError, StudySpec, parse_spec

__all__ = ["APPLY_SCOPES", "CONFIG_FORMAT", "ConfigError", "ConfigFile", "allowed_text", "load_config"]

CONFIG_FORMAT = "novatune.config/v1"
#: top-level fields of an export (experiments.deploy.export._document)
_CONFIG_FIELDS = ("format", "study", "trial", "chosen_by", "knobs", "evidence", "left_as_found", "objectives",
                  "metrics", "exported_at")
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
    if knobs == {} and data.get("left_as_found"):
        problems.append("knobs: empty: no change of the study's choice showed a measured effect (see "
                        "left_as_found), so there is nothing to apply")
    elif not isinstance(knobs, dict) or not knobs:
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
    from experiments.deploy.deployed import read_deployed
    from experiments.deploy.export import ExportError

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



def allowed_text(knob: Knob) -> str:
    d = knob.domain
    if d.kind == "categorical":
        if not d.choices:
            return "choices: (none readable here)"
        if len(d.choices) > 20:
            return (f"choices: {', '.join(d.choices[:10])}, ... "
                    f"({len(d.choices)} in all: `novatune knobs get {knob.name}`)")
        return "choices: " + ", ".join(d.choices)
    return f"{'integers' if d.kind == 'int' else 'numbers'} in [{d.low}, {d.high}]"


