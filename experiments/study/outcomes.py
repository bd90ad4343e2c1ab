"""What a study run reports, and how a signal ends it early.

:class:`TrialReport` is one trial as the loop saw it, :class:`StudyReport` the
whole run (what the CLI prints and the worker records). SIGTERM and SIGHUP
raise :class:`Interrupted` in the main thread (:func:`signals_raise`), so every
``finally`` on the way out runs and restores what the trial changed.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "INTERRUPTED_BY_CRASH",
    "Event",
    "Interrupted",
    "RestoreFailed",
    "StudyReport",
    "TrialReport",
    "signals_raise",
    "write_json_atomic",
]

INTERRUPTED_BY_CRASH = "interrupted: the process running this trial died; recover restored its knobs"

#: ``on_event(kind, **data)``: kinds ``start``, ``trial_start``, ``trial_end``, ``finish``
Event = Callable[..., None]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and rename: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


class Interrupted(BaseException):
    """SIGTERM/SIGHUP arrived; raised in the main thread so every ``finally`` runs."""


class RestoreFailed(RuntimeError):
    """A knob could not be put back; the study stops, ``novatune recover`` retries."""


@contextmanager
def signals_raise() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Interrupted` (main thread only)."""

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: the caller handles signals
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@dataclass
class TrialReport:
    """One trial: the values applied, its state (``complete`` | ``fail``), what it measured and why it failed."""

    number: int
    params: dict[str, Any]
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    feasible: bool = False
    reason: str = ""
    seconds: float = 0.0
    samples: list[list[float]] = field(default_factory=list)
    started: float = 0.0  # wall clock (epoch seconds) when the trial began applying its knobs
    profile_files: list[Path] = field(default_factory=list)  # flamegraph, diff against the baseline (profile:)
    profile_tags: dict[str, str] = field(default_factory=dict)  # profile_id, profile_note


@dataclass
class StudyReport:
    """One run of a study: its trials, what it skipped, the baseline, the choice and how it ended."""

    name: str
    state: str
    trials: list[TrialReport]
    skipped: dict[str, str]
    baseline: dict[str, Any]
    objectives: list[str]
    knee: int | None = None
    front: list[int] = field(default_factory=list)
    export_json: str | None = None
    artifacts: list[Path] = field(default_factory=list)
    restore_mismatches: list[str] = field(default_factory=list)
    recovered_before: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    choice_reason: str = ""
    mlflow_experiment_id: str | None = None
    #: the functions whose share changed most between the baseline and the chosen trial (``profile:``)
    profile_changes: dict[str, Any] | None = None
