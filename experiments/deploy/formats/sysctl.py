"""``sysctl``: a sysctl.d file (``key = value``) for ``sysctl -p``; other knobs in a comment."""

from __future__ import annotations

from typing import Any

from experiments.deploy.formats.common import ExportFormat, header, knob_text, note, sysctl_key, value_text
from experiments.study.results import StudyView

__all__ = ["FORMAT"]

INSTALL = "install -m 0644 90-novatune.conf /etc/sysctl.d/ && sysctl -p /etc/sysctl.d/90-novatune.conf"


def render(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    lines = header("sysctl", INSTALL, doc)
    others = []
    for name, value in doc["knobs"].items():
        key, why = sysctl_key(view, name, value)
        if key:
            lines.append(f"{key} = {value_text(value)}")
        else:
            others.append(knob_text(name, value) + why)
    lines += note(others, "sysctl")
    return "\n".join(lines) + "\n"


FORMAT = ExportFormat("sysctl", "90-novatune.conf", INSTALL, render)
