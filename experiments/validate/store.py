"""Where validated applies are recorded: one JSON file per validation, ``<data dir>/validations/ID.json``.

Each report is written atomically (a temporary file in the same directory, fsynced, renamed over the old
one), first when the validation starts (decision ``running``), after every window, and once it ends. The
file also records the validating process (``pid``, ``pid_ctime``): a ``running`` report whose process is gone
is read back as ``crashed`` (``novatune recover`` puts the old values back).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actuators.journal import process_ctime, same_process
from collectors.errors import NovatuneError
from experiments.settings import Paths
from experiments.validate.model import ValidationReport

__all__ = ["RUNNING", "ValidationNotFound", "list_reports", "load_report", "new_validation_id", "save_report"]

#: the decision of a validation still measuring
RUNNING = "running"
#: a ``running`` report whose process died (kill -9, power loss): recover restores the old values
CRASHED = "crashed"

_ID = re.compile(r"^val-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
_FIELDS = ("id", "decision", "reason", "source", "values", "metrics", "windows", "application", "started", "ended",
           "old", "restored")


class ValidationNotFound(NovatuneError, LookupError):
    """No validation with that id; the message lists the known ids (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


def _dir(paths: Paths) -> Path:
    return paths.home / "validations"


def new_validation_id(paths: Paths) -> str:
    """A fresh id ``val-YYYYMMDD-HHMMSS-xxxx`` not used in ``paths`` yet."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    while True:
        vid = f"val-{stamp}-{secrets.token_hex(2)}"
        if not (_dir(paths) / f"{vid}.json").exists():
            return vid


def save_report(paths: Paths, report: ValidationReport) -> Path:
    """Write ``report`` atomically (temporary file, fsync, rename); returns its path.

    Raises:
        OSError: the data directory cannot be written.
    """
    d = _dir(paths)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    doc = {**report.as_dict(), "pid": os.getpid(), "pid_ctime": process_ctime(os.getpid())}
    final = d / f"{report.id}.json"
    tmp = d / f".{report.id}.{os.getpid()}.tmp"
    data = json.dumps(doc, indent=1, sort_keys=True, default=str).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


def _from_doc(doc: dict[str, Any]) -> ValidationReport:
    report = ValidationReport(**{k: doc[k] for k in _FIELDS if k in doc})
    if report.decision == RUNNING and not same_process(doc.get("pid"), doc.get("pid_ctime")):
        report.decision = CRASHED
        report.reason = (f"the validating process (pid {doc.get('pid')}) ended before deciding; "
                         "`novatune recover` puts back the old values")
    return report


def _read(path: Path) -> ValidationReport | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return _from_doc(doc) if isinstance(doc, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def load_report(paths: Paths, vid: str) -> ValidationReport:
    """The report of validation ``vid``.

    Raises:
        ValidationNotFound: no such id (or not an id at all); the message lists the known ones.
    """
    report = _read(_dir(paths) / f"{vid}.json") if _ID.match(vid) else None
    if report is None:
        known = [r.id for r in list_reports(paths)][:10]
        raise ValidationNotFound(f"no validation {vid!r}; known: {', '.join(known) or 'none yet'} "
                                 "(`novatune validations`)")
    return report


def list_reports(paths: Paths) -> list[ValidationReport]:
    """Every stored report, newest first (unreadable files are skipped)."""
    d = _dir(paths)
    if not d.is_dir():
        return []
    reports = [r for p in d.glob("val-*.json") if _ID.match(p.stem) and (r := _read(p)) is not None]
    return sorted(reports, key=lambda r: (r.started, r.id), reverse=True)
