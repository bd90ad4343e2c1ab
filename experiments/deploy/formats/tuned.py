"""``tuned``: a TuneD profile directory holding ``tuned.conf`` (``[sysctl]``, ``[vm]``, ``[disk]``,
``[sysfs]``, ``[cpu]``, ``[net]``), optionally including a stock profile. Option names are TuneD 2.20's
(``tuned/plugins/plugin_*.py``); where a knob goes is its family's ``KnobExport.tuned``."""

from __future__ import annotations

from typing import Any

from actuators.family import fill, one_line
from experiments.deploy.formats.common import (
    ExportFormat,
    export_of,
    header,
    knob_text,
    note,
    sysctl_key,
    value_text,
)
from experiments.study.results import StudyView

__all__ = ["FORMAT"]

INSTALL = "cp -r PROFILE_DIR /etc/tuned/novatune && tuned-adm profile novatune && tuned-adm verify"


def _section(lines: list[str], name: str, options: list[tuple[str, str]], **extra: str) -> None:
    if not options:
        return
    lines += ["", f"[{name}]", *(f"{k}={v}" for k, v in extra.items()), *(f"{k}={v}" for k, v in options)]


def _disk_sections(lines: list[str], disks: dict[str, dict[str, str]]) -> None:
    """One ``[disk]`` section per set of equal options (``devices=`` lists the devices sharing it)."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for dev, opts in disks.items():
        groups.setdefault(tuple(sorted(opts.items())), []).append(dev)
    for shared, devs in groups.items():
        if len(groups) == 1:
            _section(lines, "disk", [("devices", ",".join(devs)), *shared])
        else:
            _section(lines, f"disk_{devs[0]}", [("devices", ",".join(devs)), *shared], type="disk")


def _net_sections(lines: list[str], nics: dict[str, dict[str, list[str]]]) -> None:
    for iface, options in nics.items():
        net_opts = [("devices", iface), *((k, " ".join(ws)) for k, ws in options.items())]
        if len(nics) == 1:
            _section(lines, "net", net_opts)
        else:
            _section(lines, f"net_{iface}", net_opts, type="net")


def render(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    plain: dict[str, list[tuple[str, str]]] = {"sysctl": [], "vm": [], "cpu": [], "sysfs": []}
    disks: dict[str, dict[str, str]] = {}
    nics: dict[str, dict[str, list[str]]] = {}
    others: list[str] = []
    for name, value in doc["knobs"].items():
        key, why = sysctl_key(view, name, value)
        v = value_text(value)
        found = export_of(name)
        tuned = found[1].tuned if found is not None else None
        if key:
            plain["sysctl"].append((key, v))
        elif found is None or tuned is None:
            # irq.*: TuneD 2.20's scheduler plugin applies default_irq_smp_affinity only together
            # with isolated_cores, and has no per-IRQ option; /proc/irq is outside [sysfs]
            others.append(knob_text(name, value) + why)
        elif tuned.section == "disk":
            disks.setdefault(found[0].fields["dev"], {})[tuned.option] = v
        elif tuned.section == "net":
            nics.setdefault(found[0].fields["iface"], {}).setdefault(tuned.option, []).append(f"{tuned.word} {v}")
        elif tuned.section == "sysfs":
            plain["sysfs"].append((fill(found[1].file or "", found[0].fields), v))
        else:
            plain[tuned.section].append((tuned.option, v))
    lines = header("tuned", INSTALL, doc)
    lines += note(others, "tuned")
    main = [("summary", one_line(f"novatune: study {doc['study']} trial {doc['trial']}"))]
    if include:
        main.append(("include", include))
    _section(lines, "main", main)
    _section(lines, "sysctl", plain["sysctl"])
    _section(lines, "vm", plain["vm"])
    _disk_sections(lines, disks)
    _section(lines, "sysfs", plain["sysfs"])
    _section(lines, "cpu", plain["cpu"])
    _net_sections(lines, nics)
    return "\n".join(lines) + "\n"


FORMAT = ExportFormat("tuned", "tuned.conf", INSTALL, render, directory=True)
