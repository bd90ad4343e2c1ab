"""What every ``novatune`` command module shares: the consoles, the data directory, the settings, the
study manager and index, JSON output, value formatting, the common options and :class:`UserError`.

Everything that costs an import (the manager, the index) is imported when first called, so
``novatune --help`` stays fast.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from collectors.errors import NovatuneError
from experiments.settings import Paths, Settings, check_name

if TYPE_CHECKING:
    from experiments.service.views import StudyIndex
    from experiments.study.manager import StudyManager

__all__ = ["JsonOpt", "NameArg", "RootOpt", "UserError", "ctrl_c_ends", "err", "fmt", "index", "manager", "out",
           "paths", "print_json", "settings", "valid_name"]

#: what a command prints (tables, results)
out = Console()
#: progress, notes and errors
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output")]
RootOpt = Annotated[
    Path | None,
    typer.Option("--root", help="where proc/, sys/ and etc/ live (default /; a copy of a machine's tree for offline "
                                "checks)"),
]


def valid_name(value: str | None) -> str | None:
    """A typer callback: a study name given on the command line passes :func:`~experiments.settings.check_name`
    before the command runs (``../../x`` is refused with exit 2, nothing touched).

    Raises:
        InvalidName: the name is not one plain path component.
    """
    return None if value is None else check_name(value)


#: a study name argument, checked (:func:`valid_name`)
NameArg = Annotated[str, typer.Argument(help="study name", callback=valid_name)]


class UserError(NovatuneError):
    """A problem with the command line the user can fix; printed without a traceback, exit 2."""

    exit_code = 2
    http_status = 422


def paths() -> Paths:
    """The data directory, resolved and checked now (``$NOVATUNE_HOME`` or the default).

    Raises:
        UnsafeLocation: it, or a directory on the way, is another user's or writable by others.
    """
    return Paths.default()


def settings() -> Settings:
    """The settings, read now. Raises: SettingsError: a bad settings file or ``NOVATUNE_*`` variable."""
    return Settings.load()


def manager() -> StudyManager:
    """The registry of studies in the data directory, with the limits of the settings."""
    from experiments.study.manager import StudyManager

    s = settings()
    return StudyManager(paths(), max_running=s.max_running_studies, stop_timeout_s=s.stop_timeout_s,
                        max_resumes=s.max_resumes, tracking_uri=s.mlflow_tracking_uri)


def index() -> StudyIndex:
    """The summaries of every study (what ``GET /studies`` answers)."""
    from experiments.service.views import StudyIndex
    from experiments.study.manager import StudyManager

    p = paths()
    return StudyIndex(p, StudyManager(p))


def print_json(obj: Any) -> None:
    """``obj`` as indented JSON on stdout (what ``--json`` prints)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def fmt(v: Any) -> str:
    """A value in a table cell: floats to 6 significant digits, None as '-'."""
    if v is None:
        return "-"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


@contextmanager
def ctrl_c_ends(stop: threading.Event) -> Iterator[None]:
    """While inside, the first Ctrl-C sets ``stop`` (the command ends now and keeps what it did so far: a profile
    window what was sampled, as py-spy itself does; ``observe`` the samples stored); a second one interrupts."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (an embedding caller): Ctrl-C keeps its usual meaning
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
