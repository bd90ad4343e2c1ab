"""``systemd``: a ``[Service]`` drop-in for the workload's unit, from the knobs bound to the workload
(cgroup sizing, CPU affinity, scheduling and IO priority); each option is its family's
``KnobExport.systemd``."""

from __future__ import annotations

from typing import Any

from experiments.deploy.formats.common import ExportFormat, export_of, header, knob_text, note
from experiments.study.results import StudyView

__all__ = ["FORMAT", "systemd_options"]

INSTALL = ("install -D -m 0644 90-novatune.conf /etc/systemd/system/UNIT.service.d/90-novatune.conf"
           " && systemctl daemon-reload && systemctl restart UNIT")


def systemd_options(knobs: dict[str, Any]) -> tuple[dict[str, str], list[str], list[str]]:
    """The ``[Service]`` option each workload-bound knob of ``knobs`` becomes (knob -> ``Option=value``),
    the notes explaining unit conversions, and the knobs a drop-in cannot express (``name=value (why)``).

    The options are the families' declarations (``KnobExport.systemd``)."""
    opts: dict[str, str] = {}
    notes: list[str] = []
    others: list[str] = []
    for name, value in knobs.items():
        found = export_of(name)
        sd = found[1].systemd if found is not None else None
        if sd is None:
            others.append(knob_text(name, value))
            continue
        if sd.when is not None and knobs.get(sd.when[0], sd.when[1]) != sd.when[1]:
            others.append(knob_text(name, value) + (f" ({sd.why_not})" if sd.why_not else ""))
            continue
        if sd.option is None:  # carried by another knob's option, when that one is set
            if sd.carried_by not in knobs:
                others.append(knob_text(name, value))
            continue
        opts[name] = f"{sd.option}={sd.render(value)}"
        if sd.note is not None:
            notes.append(sd.note(value))
    return opts, notes, others


def render(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    opts, notes, others = systemd_options(doc["knobs"])
    lines = header("systemd", INSTALL, doc)
    lines += [f"# {n}" for n in notes]
    lines += note(others, "systemd")
    lines += ["", "[Service]", *opts.values()]
    if not opts:
        lines.append("# (no knob of this trial is bound to the workload's unit)")
    return "\n".join(lines) + "\n"


FORMAT = ExportFormat("systemd", "90-novatune.conf", INSTALL, render)
