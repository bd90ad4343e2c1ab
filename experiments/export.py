"""Export a chosen trial as a configuration operators deploy.

Formats (:data:`FORMATS`), each with its default file name (:data:`FILENAMES`):

``json`` / ``yaml``
    The whole decision, ``format: novatune.config/v1`` (what ``novatune plan``,
    ``verify`` and ``apply`` read). The only formats that carry every knob.
``sysctl``
    A sysctl.d file (``key = value``), for ``sysctl -p``.
``tuned``
    A TuneD profile directory holding ``tuned.conf`` (``[sysctl]``, ``[vm]``,
    ``[disk]``, ``[sysfs]``, ``[cpu]``, ``[net]``), optionally including a stock profile.
``systemd``
    A ``[Service]`` drop-in for the workload's unit, from the knobs bound to the
    workload (cgroup sizing, CPU affinity, scheduling and IO priority).
``shell``
    ``novatune-apply.sh apply|rollback|check|status``: writes the host settings
    after saving their current values to a synced state file; ``rollback`` restores them.

Every text format starts with a comment naming the study, the trial, how it was
chosen and its objectives; knobs a format cannot express are listed in a comment,
never dropped silently. Option names of the TuneD plugins are those of TuneD 2.20
(``tuned/plugins/plugin_*.py``).

Where each knob goes is the knob family's declaration (:mod:`actuators.family`,
``KnobExport``: the kernel file, the TuneD section and option, the systemd
option, what a format cannot express); this module only lays the formats out
(the shell script's body is :mod:`experiments.export_shell`'s), and
:func:`experiments.export_deployed.read_deployed` inverts the same declarations.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from optuna.trial import TrialState

from actuators.family import KnobExport, Match, fill, one_line
from actuators.registry import REGISTRY
from actuators.sysctl import sysctl_file
from collectors.errors import NovatuneError
from experiments.export_shell import SHELL_BODY
from experiments.store import StudyView

__all__ = ["FILENAMES", "FORMATS", "ExportError", "ExportRequestError", "choose_trial", "render", "systemd_options",
           "write_export"]

FORMATS = ("json", "yaml", "sysctl", "tuned", "systemd", "shell")
Format = Literal["json", "yaml", "sysctl", "tuned", "systemd", "shell"]

#: default file name per format; ``tuned`` names the file inside the profile directory
FILENAMES: dict[str, str] = {
    "json": "novatune.json",
    "yaml": "novatune.yaml",
    "sysctl": "90-novatune.conf",
    "tuned": "tuned.conf",
    "systemd": "90-novatune.conf",
    "shell": "novatune-apply.sh",
}

#: a stock TuneD profile name for ``include=`` (TuneD's own ``safe_name``, minus leading dots)
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_INSTALL = {
    "yaml": "novatune plan novatune.yaml; novatune verify novatune.yaml",
    "sysctl": "install -m 0644 90-novatune.conf /etc/sysctl.d/ && sysctl -p /etc/sysctl.d/90-novatune.conf",
    "tuned": "cp -r PROFILE_DIR /etc/tuned/novatune && tuned-adm profile novatune && tuned-adm verify",
    "systemd": ("install -D -m 0644 90-novatune.conf /etc/systemd/system/UNIT.service.d/90-novatune.conf"
                " && systemctl daemon-reload && systemctl restart UNIT"),
    "shell": "bash novatune-apply.sh apply   (undo: bash novatune-apply.sh rollback)",
}


class ExportError(NovatuneError, ValueError):
    """The requested export cannot be made (no feasible trial, bad trial number, ...): exit 2, HTTP 409."""

    exit_code = 2
    http_status = 409


class ExportRequestError(ExportError):
    """The request itself is invalid (unknown format, bad ``include``): exit 2, HTTP 422, not a study state."""

    exit_code = 2
    http_status = 422


def choose_trial(view: StudyView, trial: int | None = None) -> tuple[Any, str]:
    """The trial to export and how it was chosen: ``--trial N``, else the study's ``choose`` rule
    (the knee of the front by default) on pooled medians (:meth:`StudyView.decide`)."""
    if trial is not None:
        try:
            t = view.trial(trial)
        except LookupError as err:
            raise ExportError(str(err)) from None
        if t.state != TrialState.COMPLETE:
            raise ExportError(
                f"trial {trial} of {view.name!r} is {t.state.name.lower()}, not complete: nothing to export")
        if not view.is_feasible(t):
            raise ExportError(
                f"trial {trial} of {view.name!r} violates the study's constraints; choose a feasible trial")
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


def _exported_at() -> str:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (reproducible exports: the same study gives the same bytes)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else datetime.now(UTC)
    return when.isoformat(timespec="seconds")


def _document(view: StudyView, t: Any, chosen_by: str) -> dict[str, Any]:
    return {
        "format": "novatune.config/v1",
        "study": view.name,
        "trial": t.number,
        "chosen_by": chosen_by,
        "knobs": view.knob_values(t),
        "objectives": dict(zip(view.objectives, t.values)),
        "metrics": t.user_attrs.get("metrics", {}),
        "exported_at": _exported_at(),
    }


# ------------------------------------------------------------------ helpers
def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _objective_text(doc: dict[str, Any]) -> str:
    parts = []
    for k, v in doc["objectives"].items():
        parts.append(f"{k}={v:.6g}" if isinstance(v, (int, float)) else f"{k}={v}")
    return ", ".join(parts) or "(none)"


def _header(fmt: str, doc: dict[str, Any]) -> list[str]:
    return [
        f"# novatune export ({fmt}) of study {doc['study']!r}, trial {doc['trial']}",
        f"# chosen by: {_one_line(doc['chosen_by'])}",
        f"# objectives: {_objective_text(doc)}",
        f"# exported at {doc['exported_at']}",
        f"# install: {_INSTALL[fmt]}",
    ]


def _value(value: Any) -> str:
    """A knob value as sysctl/sysfs text: sequences (tcp_rmem triplets) space-separated."""
    return one_line(value)


def _export(name: str) -> tuple[Match, KnobExport] | None:
    """The family's match of ``name`` and its export mapping; None when no family maps it."""
    m = REGISTRY.match(name)
    return (m, m.export) if m is not None and m.export is not None else None


def _sysctl_key(view: StudyView, name: str, value: Any) -> tuple[str | None, str]:
    """(sysctl key, why not) for ``name``: None when the knob is not a sysctl or not writable as one line.

    Which knobs are sysctls is what the study recorded (``sysctl_keys``); a family may say a value of
    the wrong shape cannot be written (a triplet given one number).
    """
    key = view.attrs.get("sysctl_keys", {}).get(name)
    if not key:
        return None, ""
    found = _export(key)
    why = found[1].whole_value if found is not None else None
    if why and not isinstance(value, (list, tuple)):
        return None, why
    return key, ""


def _sysctl_path(key: str) -> str | None:
    """The file the shell export writes for a sysctl key: the family's, else where ``sysctl`` writes it."""
    found = _export(key)
    if found is not None and found[1].sysctl and found[1].file is not None:
        return found[1].file
    return sysctl_file(key)


def _note(items: list[str], fmt: str) -> list[str]:
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


def _knob(name: str, value: Any) -> str:
    return f"{name}={_value(value)}"


# ------------------------------------------------------------------ formats
def _render_sysctl(view: StudyView, doc: dict[str, Any]) -> str:
    lines = _header("sysctl", doc)
    others = []
    for name, value in doc["knobs"].items():
        key, why = _sysctl_key(view, name, value)
        if key:
            lines.append(f"{key} = {_value(value)}")
        else:
            others.append(_knob(name, value) + why)
    lines += _note(others, "sysctl")
    return "\n".join(lines) + "\n"


def _section(lines: list[str], name: str, options: list[tuple[str, str]], **extra: str) -> None:
    if not options:
        return
    lines += ["", f"[{name}]", *(f"{k}={v}" for k, v in extra.items()), *(f"{k}={v}" for k, v in options)]


def _render_tuned(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    plain: dict[str, list[tuple[str, str]]] = {"sysctl": [], "vm": [], "cpu": [], "sysfs": []}
    disks: dict[str, dict[str, str]] = {}
    nics: dict[str, dict[str, list[str]]] = {}
    others: list[str] = []
    for name, value in doc["knobs"].items():
        key, why = _sysctl_key(view, name, value)
        v = _value(value)
        found = _export(name)
        tuned = found[1].tuned if found is not None else None
        if key:
            plain["sysctl"].append((key, v))
        elif found is None or tuned is None:
            # irq.*: TuneD 2.20's scheduler plugin applies default_irq_smp_affinity only together
            # with isolated_cores, and has no per-IRQ option; /proc/irq is outside [sysfs]
            others.append(_knob(name, value) + why)
        elif tuned.section == "disk":
            disks.setdefault(found[0].fields["dev"], {})[tuned.option] = v
        elif tuned.section == "net":
            nics.setdefault(found[0].fields["iface"], {}).setdefault(tuned.option, []).append(f"{tuned.word} {v}")
        elif tuned.section == "sysfs":
            plain["sysfs"].append((fill(found[1].file or "", found[0].fields), v))
        else:
            plain[tuned.section].append((tuned.option, v))
    lines = _header("tuned", doc)
    lines += _note(others, "tuned")
    main = [("summary", _one_line(f"novatune: study {doc['study']} trial {doc['trial']}"))]
    if include:
        main.append(("include", include))
    _section(lines, "main", main)
    _section(lines, "sysctl", plain["sysctl"])
    _section(lines, "vm", plain["vm"])
    _disk_sections(lines, disks)
    _section(lines, "sysfs", plain["sysfs"])
    _section(lines, "cpu", plain["cpu"])
    for iface, options in nics.items():
        net_opts = [("devices", iface), *((k, " ".join(ws)) for k, ws in options.items())]
        if len(nics) == 1:
            _section(lines, "net", net_opts)
        else:
            _section(lines, f"net_{iface}", net_opts, type="net")
    return "\n".join(lines) + "\n"


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


def systemd_options(knobs: dict[str, Any]) -> tuple[dict[str, str], list[str], list[str]]:
    """The ``[Service]`` option each workload-bound knob of ``knobs`` becomes (knob -> ``Option=value``),
    the notes explaining unit conversions, and the knobs a drop-in cannot express (``name=value (why)``).

    The options are the families' declarations (``KnobExport.systemd``)."""
    opts: dict[str, str] = {}
    notes: list[str] = []
    others: list[str] = []
    for name, value in knobs.items():
        found = _export(name)
        sd = found[1].systemd if found is not None else None
        if sd is None:
            others.append(_knob(name, value))
            continue
        if sd.when is not None and knobs.get(sd.when[0], sd.when[1]) != sd.when[1]:
            others.append(_knob(name, value) + (f" ({sd.why_not})" if sd.why_not else ""))
            continue
        if sd.option is None:  # carried by another knob's option, when that one is set
            if sd.carried_by not in knobs:
                others.append(_knob(name, value))
            continue
        opts[name] = f"{sd.option}={sd.render(value)}"
        if sd.note is not None:
            notes.append(sd.note(value))
    return opts, notes, others


def _render_systemd(view: StudyView, doc: dict[str, Any]) -> str:
    opts, notes, others = systemd_options(doc["knobs"])
    lines = _header("systemd", doc)
    lines += [f"# {n}" for n in notes]
    lines += _note(others, "systemd")
    lines += ["", "[Service]", *opts.values()]
    if not opts:
        lines.append("# (no knob of this trial is bound to the workload's unit)")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Write:
    """One file the shell script writes: a path, or a glob over CPUs (cpufreq)."""

    name: str
    path: str
    value: str
    glob: bool = False


def _shell_writes(view: StudyView, doc: dict[str, Any]) -> tuple[list[_Write], list[str]]:
    """The files the script writes, in the families' apply order (a block scheduler before the queue sizes
    it resets), and the knobs it cannot write."""
    writes: list[tuple[int, _Write]] = []
    others: list[str] = []
    for name, value in doc["knobs"].items():
        key, why = _sysctl_key(view, name, value)
        found = _export(name)
        if key:
            path = _sysctl_path(key)
            if path is None:
                others.append(_knob(name, value))
                continue
            writes.append((REGISTRY.rank(name), _Write(name, path, _value(value))))
        elif found is not None and found[1].file is not None and not found[1].sysctl:
            m, exp = found
            try:
                v = exp.file_value(value) if exp.file_value is not None else _value(value)
            except ValueError:
                others.append(_knob(name, value))
                continue
            writes.append((REGISTRY.rank(name), _Write(name, fill(exp.file or "", m.fields), v, glob=exp.glob)))
        else:
            others.append(_knob(name, value) + why)
    return [w for _, w in sorted(writes, key=lambda p: p[0])], others




def _render_shell(view: StudyView, doc: dict[str, Any]) -> str:
    writes, others = _shell_writes(view, doc)
    body = []
    for w in writes:
        q = shlex.quote(w.value)
        if w.glob:
            body += [
                "  found=0",
                f"  for f in {w.path}; do",
                f'    if [ -e "$f" ]; then emit "$f" {q}; found=1; fi',
                "  done",
                f'  [ "$found" = 1 ] || echo "novatune-apply: no CPU has {w.path.rsplit("/", 1)[1]}: '
                f'{w.name} skipped" >&2',
            ]
        else:
            body.append(f"  emit {shlex.quote(w.path)} {q}  # {w.name}")
    if not writes:
        body.append("  :  # no host setting in this export")
    lines = ["#!/bin/bash", *_header("shell", doc)]
    lines += [
        "# apply: saves the current value of every file below to $NOVATUNE_STATE_FILE",
        "#   (default /var/lib/novatune/novatune-apply.state), syncs it, then writes the new values;",
        "#   refuses while a state file exists. rollback: restores the saved values, removes the state file.",
        "# check: exit 1 when a setting differs from the export. status: shows the saved state.",
    ]
    lines += _note(others, "shell")
    return "\n".join(lines) + SHELL_BODY.replace("__SETTINGS__", "\n".join(body))


def _render_yaml(doc: dict[str, Any]) -> str:
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    return "\n".join(_header("yaml", doc)) + "\n" + text


# ------------------------------------------------------------------ public
def _check_request(fmt: str, include: str | None) -> None:
    if fmt not in FORMATS:
        raise ExportRequestError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if include is None:
        return
    if fmt != "tuned":
        raise ExportRequestError(f"include= applies to the tuned format only, not {fmt!r}")
    if not isinstance(include, str) or not _PROFILE_NAME.fullmatch(include) or ".." in include:
        raise ExportRequestError(
            f"include {include!r} is not a plain TuneD profile name; allowed: letters, digits, '_', '.', '-' "
            "(e.g. throughput-performance), no path"
        )


def render(view: StudyView, fmt: str, *, trial: int | None = None, include: str | None = None) -> str:
    """The export text (for ``tuned``, the ``tuned.conf`` of the profile).

    ``include``: a stock TuneD profile the ``tuned`` profile builds on (``include=`` in ``[main]``).

    Raises:
        ExportError: unknown format, bad ``include``, unknown or unusable trial.
    """
    _check_request(fmt, include)
    t, chosen_by = choose_trial(view, trial)
    doc = _document(view, t, chosen_by)
    renderers: dict[str, Callable[[], str]] = {
        "json": lambda: json.dumps(doc, indent=2, sort_keys=False) + "\n",
        "yaml": lambda: _render_yaml(doc),
        "sysctl": lambda: _render_sysctl(view, doc),
        "tuned": lambda: _render_tuned(view, doc, include),
        "systemd": lambda: _render_systemd(view, doc),
        "shell": lambda: _render_shell(view, doc),
    }
    return renderers[fmt]()


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _is_directory(dest: str | Path, fmt: str) -> bool:
    """Whether ``dest`` names a directory to write :data:`FILENAMES` ``[fmt]`` into: an existing
    directory, a path written with a trailing ``/``, or (systemd) a drop-in directory ``UNIT.d``."""
    text = os.fspath(dest)
    path = Path(text)
    return path.is_dir() or text.endswith(os.sep) or (fmt == "systemd" and path.name.endswith(".d"))


def write_export(
    view: StudyView, fmt: str, dest: str | Path, *, trial: int | None = None, include: str | None = None
) -> list[Path]:
    """Write the export; returns the files written.

    ``tuned``: ``dest`` is the profile directory (created) that gets ``tuned.conf``. Other formats:
    ``dest`` is the file, or a directory in which :data:`FILENAMES` ``[fmt]`` is created: an existing
    one, a path ending in ``/``, or for ``systemd`` a drop-in directory (``myapp.service.d``), created
    when missing. The shell script is made executable.

    Raises:
        ExportError: as :func:`render`, or ``dest`` cannot be written.
    """
    text = render(view, fmt, trial=trial, include=include)
    into_dir = _is_directory(dest, fmt)
    dest = Path(dest)
    try:
        if fmt == "tuned":
            if dest.exists() and not dest.is_dir():
                raise ExportError(f"{dest}: a TuneD profile is a directory; {dest} is a file")
            dest.mkdir(parents=True, exist_ok=True)
            path = dest / FILENAMES[fmt]
        elif into_dir:
            if dest.exists() and not dest.is_dir():
                raise ExportError(f"{dest}: names a directory for the {fmt} export, but it is a file")
            dest.mkdir(parents=True, exist_ok=True)
            path = dest / FILENAMES[fmt]
        else:
            path = dest
            path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, text, 0o755 if fmt == "shell" else 0o644)
    except OSError as err:
        raise ExportError(f"cannot write the {fmt} export to {dest}: {err}") from None
    return [path]
