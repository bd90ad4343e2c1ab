"""Export a chosen trial as a configuration operators deploy (JSON, sysctl.d)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal

from optuna.trial import TrialState

from experiments.store import StudyView

__all__ = ["FORMATS", "ExportError", "choose_trial", "render"]

FORMATS = ("json", "sysctl")
Format = Literal["json", "sysctl"]


class ExportError(ValueError):
    """The requested export cannot be made (no feasible trial, bad trial number, ...)."""


def choose_trial(view: StudyView, trial: int | None = None) -> tuple[Any, str]:
    """The trial to export and how it was chosen: ``--trial N``, else the study's ``choose`` rule
    (the knee of the front by default) on pooled medians (:meth:`StudyView.decide`)."""
    if trial is not None:
        try:
            t = view.trial(trial)
        except LookupError as err:
            raise ExportError(str(err)) from None
        if t.state != TrialState.COMPLETE:
            raise ExportError(f"trial {trial} of {view.name!r} is {t.state.name.lower()}, not complete: nothing to export")
        if not view.is_feasible(t):
            raise ExportError(f"trial {trial} of {view.name!r} violates the study's constraints; choose a feasible trial")
        return t, f"trial {trial} (chosen by the user)"
    try:
        decision = view.decide()
    except ValueError as err:
        raise ExportError(f"study {view.name!r}: nothing to export: {err}") from None
    t = decision.trial
    how = decision.reason
    if decision.equivalent:
        how += f"; not significantly different from trial(s) {', '.join(map(str, decision.equivalent))}"
    return t, how


def _document(view: StudyView, t: Any, chosen_by: str) -> dict[str, Any]:
    return {
        "format": "novatune.config/v1",
        "study": view.name,
        "trial": t.number,
        "chosen_by": chosen_by,
        "knobs": view.knob_values(t),
        "objectives": dict(zip(view.objectives, t.values)),
        "metrics": t.user_attrs.get("metrics", {}),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def render(view: StudyView, fmt: str, *, trial: int | None = None) -> str:
    """The export text. Raises :class:`ExportError` on an unknown format or trial."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    t, chosen_by = choose_trial(view, trial)
    doc = _document(view, t, chosen_by)
    if fmt == "json":
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"
    keys: dict[str, str] = view.attrs.get("sysctl_keys", {})
    lines = [
        f"# novatune export of study {view.name!r}, {chosen_by}",
        "# " + ", ".join(f"{k}={v:.6g}" for k, v in doc["objectives"].items()),
        "# Install: copy to /etc/sysctl.d/90-novatune.conf, then `sysctl -p /etc/sysctl.d/90-novatune.conf`",
    ]
    others = []
    for name, value in doc["knobs"].items():
        key = keys.get(name)
        if key:
            lines.append(f"{key} = {value}")
        else:
            others.append(f"{name}={value}")
    if others:
        lines.append("# not sysctl settings (see the JSON export): " + ", ".join(others))
    return "\n".join(lines) + "\n"
