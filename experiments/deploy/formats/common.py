"""What every export format shares: the format's description, the header comment, knob values as text,
the family's export mapping of a knob, and the note listing what a format cannot carry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actuators.family import KnobExport, Match, one_line
from actuators.registry import REGISTRY
from experiments.study.results import StudyView

__all__ = ["ExportFormat", "export_of", "header", "knob_text", "note", "sysctl_key", "value_text"]

#: ``render(view, document, include)`` -> the text of the export
Renderer = Callable[[StudyView, dict[str, Any], "str | None"], str]


@dataclass(frozen=True)
class ExportFormat:
    """One deployable format: its name, default file name (``tuned``: the file inside the profile
    directory, ``directory`` True), the install line its header shows, the file mode, and its renderer."""

    name: str
    filename: str
    install: str | None
    render: Renderer
    mode: int = 0o644
    directory: bool = False


def _objective_text(doc: dict[str, Any]) -> str:
    parts = []
    for k, v in doc["objectives"].items():
        parts.append(f"{k}={v:.6g}" if isinstance(v, (int, float)) else f"{k}={v}")
    return one_line(", ".join(parts)) or "(none)"  # a comment line: a newline in a stored name stays inside


def header(fmt: str, install: str | None, doc: dict[str, Any]) -> list[str]:
    """The comment every text format starts with: study, trial, how it was chosen, objectives, install."""
    lines = [
        f"# novatune export ({fmt}) of study {doc['study']!r}, trial {doc['trial']}",
        f"# chosen by: {one_line(doc['chosen_by'])}",
        f"# objectives: {_objective_text(doc)}",
    ]
    for k, why in (doc.get("evidence") or {}).items():  # a justified choice: what earns each change its place
        lines.append(f"# measured effect of {one_line(k)}: {one_line(why)}")
    left = doc.get("left_as_found") or {}
    if left:
        lines.append(f"# left as found (no measured effect): {one_line(', '.join(left))}")
    return [*lines, f"# exported at {doc['exported_at']}", f"# install: {install}"]


def value_text(value: Any) -> str:
    """A knob value as sysctl/sysfs text: sequences (tcp_rmem triplets) space-separated."""
    return one_line(value)


def knob_text(name: str, value: Any) -> str:
    return f"{name}={value_text(value)}"


def export_of(name: str) -> tuple[Match, KnobExport] | None:
    """The family's match of ``name`` and its export mapping; None when no family maps it."""
    m = REGISTRY.match(name)
    return (m, m.export) if m is not None and m.export is not None else None


def sysctl_key(view: StudyView, name: str, value: Any) -> tuple[str | None, str]:
    """(sysctl key, why not) for ``name``: None when the knob is not a sysctl or not writable as one line.

    Which knobs are sysctls is what the study recorded (``sysctl_keys``); a family may say a value of
    the wrong shape cannot be written (a triplet given one number).
    """
    key = view.attrs.get("sysctl_keys", {}).get(name)
    if not key:
        return None, ""
    found = export_of(key)
    why = found[1].whole_value if found is not None else None
    if why and not isinstance(value, (list, tuple)):
        return None, why
    return key, ""


def note(items: list[str], fmt: str) -> list[str]:
    """The comment listing the knobs this format cannot carry, with where to find each kind."""
    if not items:
        return []
    see = "the JSON export"
    if fmt != "systemd" and any(REGISTRY.workload_bound(i.split("=", 1)[0]) for i in items):
        see += " (workload-bound knobs: the systemd export)"
    if fmt == "systemd":
        see += " (host-wide knobs: the sysctl, tuned or shell export)"
    elif fmt == "sysctl":
        see += " (other host settings: the tuned or shell export)"
    return [f"# not expressible here: {', '.join(items)}; see {see}"]
