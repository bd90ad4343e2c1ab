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
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from collectors.errors import NovatuneError
from experiments.deploy.formats import FORMATS as _FORMATS
from experiments.study.results import StudyView

__all__ = ["FILENAMES", "FORMATS", "ExportError", "ExportRequestError", "choose_trial", "render", "write_export"]

#: the format names, in listing order
FORMATS: tuple[str, ...] = tuple(_FORMATS)

#: default file name per format; ``tuned`` names the file inside the profile directory
FILENAMES: dict[str, str] = {f.name: f.filename for f in _FORMATS.values()}

#: a stock TuneD profile name for ``include=`` (TuneD's own ``safe_name``, minus leading dots)
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


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
        _write_atomic(path, text, spec.mode)
    except OSError as err:
        raise ExportError(f"cannot write the {fmt} export to {dest}: {err}") from None
    return [path]
