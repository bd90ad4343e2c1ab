"""Export a chosen trial as a configuration operators deploy.

Formats (:data:`FORMATS`, one module each in :mod:`experiments.deploy.formats`), each with its default
file name (:data:`FILENAMES`):

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
option, what a format cannot express); the format modules lay them out, this
module chooses the trial, builds the document every format renders and writes
the files. :func:`experiments.deploy.deployed.read_deployed` inverts the same
declarations.

The study database is data, not code: before any format sees the document,
:func:`check_document` refuses a knob name that is not a plain knob name
(:data:`KNOB_NAME`, the characters of the registry's names and fields), a sysctl
key that is not a plain dotted name (:data:`SYSCTL_KEY`), and a value that is not
a boolean, a finite number, a plain word (:data:`PLAIN_VALUE`) or a list of
those, so no name or value can carry a newline, a ``[section]``, an ``=``, a
quote or a shell metacharacter into a file. Files are written
by :func:`experiments.safefs.write_file` (a private temporary file, then a rename;
a symbolic link at the target is refused).
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from collectors.errors import NovatuneError
from experiments.deploy.formats import FORMATS as _FORMATS
from experiments.safefs import write_file
from experiments.study.results import StudyView

__all__ = ["FILENAMES", "FORMATS", "KNOB_NAME", "PLAIN_VALUE", "SYSCTL_KEY", "ExportError", "ExportRequestError",
           "check_document", "choose_trial", "chosen_configuration", "render", "write_export"]

#: the format names, in listing order
FORMATS: tuple[str, ...] = tuple(_FORMATS)

#: default file name per format; ``tuned`` names the file inside the profile directory
FILENAMES: dict[str, str] = {f.name: f.filename for f in _FORMATS.values()}

#: a stock TuneD profile name for ``include=`` (TuneD's own ``safe_name``, minus leading dots)
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
#: a knob name every format carries as is: the characters of the registry's names and of their ``<field>`` parts
#: (a device, an interface, an IRQ), no ``..``; a study may hold a sysctl no family declares any more
KNOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
#: a sysctl key (``net.ipv4.tcp_fin_timeout``): dotted plain words
SYSCTL_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
#: a knob value as text that every format carries as is: a scheduler, a THP mode, a CPU list or mask, a
#: governor, an instance type (no space, quote, ``=``, ``[``, ``%``, ``$``, ``#``, newline or other control)
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:+-]{1,4096}")
#: a metric name in a justification's evidence
_METRIC = re.compile(r"[A-Za-z0-9_.]{1,128}")


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


def _plain_scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return math.isfinite(value)
    return isinstance(value, str) and PLAIN_VALUE.fullmatch(value) is not None


def _value_problem(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        if 0 < len(value) <= 16 and all(_plain_scalar(v) and not isinstance(v, list | tuple) for v in value):
            return None
    elif _plain_scalar(value):
        return None
    return ("its value is not a boolean, a finite number, a plain word of letters, digits and '_.,:+-' "
            "or a list of those")


def check_document(view: StudyView, knobs: dict[str, Any]) -> None:
    """Refuse what a study database could smuggle into an export: every knob name must be plain
    (:data:`KNOB_NAME`, no ``..``), its recorded sysctl key (when it has one) a dotted plain name of at
    most 128 characters (:data:`SYSCTL_KEY`), its value plain (:func:`_value_problem`).

    Raises:
        ExportError: naming each knob refused, and what is allowed (exit 2, HTTP 409).
    """
    problems = []
    keys = view.attrs.get("sysctl_keys") or {}
    if not isinstance(keys, dict):
        problems.append("its sysctl_keys are not a mapping of knob names to sysctl keys")
        keys = {}
    for name, value in knobs.items():
        shown = ascii(name)[:80]
        if not isinstance(name, str) or not KNOB_NAME.fullmatch(name) or ".." in name:
            problems.append(f"{shown} is not a knob name (letters, digits and '_.:-', at most 128, no '..')")
            continue
        key = keys.get(name)
        if key is not None and not (isinstance(key, str) and len(key) <= 128 and SYSCTL_KEY.fullmatch(key)):
            problems.append(f"{shown}: its sysctl key {ascii(key)[:80]} is not a dotted name of letters, digits, "
                            "'_' and '-'")
        why = _value_problem(value)
        if why:
            problems.append(f"{shown}: {why}, got {ascii(value)[:80]}")
    if problems:
        raise ExportError(f"study {view.name!r} cannot be exported: its database holds what no export may carry: "
                          + "; ".join(problems))


def _effect_text(e: Any) -> str | None:
    """``metric +12.3 % [+8.1, +16.5]`` rebuilt from a stored effect's numbers (never its stored text)."""
    if not isinstance(e, dict) or not isinstance(e.get("metric"), str) or not _METRIC.fullmatch(e["metric"]):
        return None
    try:
        nums = [float(e[k]) for k in ("change_pct", "low_pct", "high_pct")]
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(x) for x in nums):
        return None
    return f"{e['metric']} {nums[0]:+.1f} % [{nums[1]:+.1f}, {nums[2]:+.1f}]"


def _justification(view: StudyView, t: Any) -> dict[str, dict[str, Any]] | None:
    """Per changed knob of a justified trial: ``kept`` (bool) and ``evidence`` (the effects that justify it,
    or why it was put back), from the study's ``justified`` record; None when ``t`` is not the justified trial."""
    j = view.attrs.get("justified")
    if not isinstance(j, dict) or j.get("trial") != t.number or not isinstance(j.get("knobs"), dict):
        return None
    out = {}
    for name, k in j["knobs"].items():
        if not isinstance(k, dict):
            continue
        kept = k.get("kept") is True
        effects = [e for e in k.get("effects") or [] if isinstance(e, dict) and (e.get("better") is True or not kept)]
        texts = [x for x in map(_effect_text, effects) if x]
        out[str(name)] = {"kept": kept, "evidence": "; ".join(texts) or "not measured",
                          "rounds": j.get("rounds")}
    return out


def chosen_configuration(view: StudyView, trial: int | None = None) -> dict[str, Any]:
    """The configuration a study ships, before any format: ``trial``, ``chosen_by``, ``knobs`` (justified:
    only the kept changes; the study's own target's knobs included, which no export carries), and for a
    justified choice ``evidence`` and ``left_as_found`` (knob -> the measured effect). ``novatune bench gain``
    measures exactly this.

    Raises:
        ExportError: no usable trial (see :func:`choose_trial`).
    """
    t, chosen_by = choose_trial(view, trial)
    return {"trial": t.number, "chosen_by": chosen_by, **_chosen(view, t)}


def _chosen(view: StudyView, t: Any) -> dict[str, Any]:
    knobs = view.knob_values(t)
    why = _justification(view, t)
    out: dict[str, Any] = {"knobs": knobs}
    if why is not None:  # only the changes with a measured effect ship; the others stay as they are found
        out["knobs"] = {k: v for k, v in knobs.items() if why.get(k, {}).get("kept")}
        out["evidence"] = {k: w["evidence"] for k, w in why.items() if w["kept"]}
        out["left_as_found"] = {k: w["evidence"] for k, w in why.items() if not w["kept"]}
    return out


def _document(view: StudyView, t: Any, chosen_by: str) -> dict[str, Any]:
    chosen = _chosen(view, t)
    # a study's own target (its loop device, ``block.@target.*``) is gone with the study: nothing to deploy
    knobs = {k: v for k, v in chosen["knobs"].items() if not (isinstance(k, str) and "@target." in k)}
    doc: dict[str, Any] = {k: chosen[k] for k in ("evidence", "left_as_found") if k in chosen}
    check_document(view, knobs)
    return {
        "format": "novatune.config/v1",
        "study": view.name,
        "trial": t.number,
        "chosen_by": chosen_by,
        "knobs": knobs,
        **doc,
        "objectives": dict(zip(view.objectives, t.values)),
        "metrics": t.user_attrs.get("metrics", {}),
        "exported_at": _exported_at(),
    }


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
    return _FORMATS[fmt].render(view, _document(view, t, chosen_by), include)


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
    when missing. The shell script is made executable. Each file is written by
    :func:`experiments.safefs.write_file`: a private temporary file beside it, then a rename; its mode is
    the format's less the umask (0600 / 0700 under novatune's own umask 077).

    Raises:
        ExportError: as :func:`render`, or ``dest`` cannot be written.
        UnsafeLocation: the file to write is a symbolic link (refused, not followed).
    """
    text = render(view, fmt, trial=trial, include=include)
    spec = _FORMATS[fmt]
    into_dir = _is_directory(dest, fmt)
    dest = Path(dest)
    try:
        if spec.directory:
            if dest.exists() and not dest.is_dir():
                raise ExportError(f"{dest}: a TuneD profile is a directory; {dest} is a file")
            dest.mkdir(parents=True, exist_ok=True)
            path = dest / spec.filename
        elif into_dir:
            if dest.exists() and not dest.is_dir():
                raise ExportError(f"{dest}: names a directory for the {fmt} export, but it is a file")
            dest.mkdir(parents=True, exist_ok=True)
            path = dest / spec.filename
        else:
            path = dest
            path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, text.encode("utf-8"), mode=spec.mode)
    except OSError as err:
        raise ExportError(f"cannot write the {fmt} export to {dest}: {err}") from None
    return [path]
