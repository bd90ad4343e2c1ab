"""The validated apply's contract: what it is asked and what it reports (shared by the CLI, the API, the
recommendations engine and the continuous tuner). The engine is :mod:`experiments.validate.engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OUTCOMES", "ValidationReport", "ValidationRequest"]

#: the final states of a validated apply: the change stays (an application, like `novatune apply`),
#: it was rolled back because a guard was worse than its limit, or nothing could be shown within the
#: longest window (rolled back too: never keep a change that is not shown safe)
OUTCOMES = ("kept", "rolled_back", "inconclusive")


@dataclass(frozen=True)
class ValidationRequest:
    """Apply ``values`` (knob -> value, catalog names) from ``source`` and validate it with the workload
    (or passive target) of the spec at ``spec_path``.

    ``window_s``: the validation window (default 600 s: ten minutes split into A/B windows of the
    spec's trial length); ``max_window_s``: how far an inconclusive result may extend it (default 3×);
    ``guards``: ``(metric, limit)`` pairs (``limit`` <= 0, relative), default: the spec's primary
    objective and the p95 latency when the workload reports one, each at -10 %.
    """

    values: dict[str, Any]
    source: str
    spec_path: str
    window_s: float = 600.0
    max_window_s: float | None = None
    guards: tuple[tuple[str, float], ...] = ()
    interleave: bool = True


@dataclass
class ValidationReport:
    """What happened: ``decision`` (one of :data:`OUTCOMES`), ``reason``, the before/after figures per
    guard with intervals (:class:`optimizer.decision.MetricVerdict` as dicts), the windows measured,
    the application id when kept, timestamps; ``old``: each knob's value before the change, ``restored``: each
    knob's value read back after the change was undone (None when it was kept or never written)."""

    id: str
    decision: str
    reason: str
    source: str
    values: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    application: str | None = None
    started: float = 0.0
    ended: float = 0.0
    old: dict[str, Any] = field(default_factory=dict)
    restored: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "decision", "reason", "source", "values", "metrics",
                                               "windows", "application", "started", "ended", "old", "restored")}


#: progress callback: (event, fields)
OnEvent = Callable[[str, dict[str, Any]], None]
