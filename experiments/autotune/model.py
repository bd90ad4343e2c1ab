"""The continuous tuner's vocabulary: its states, options, records and errors (no I/O)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from collectors.errors import NovatuneError

__all__ = ["STATES", "AutotuneConflict", "AutotuneError", "AutotuneNotFound", "AutotuneOptions", "CycleRecord",
           "StepRecord"]

#: what a tuner is doing: ``starting`` (checking the spec), ``measuring`` (the current configuration),
#: ``searching`` (a small study in the trust region), ``validating`` (a validated apply of the winner),
#: ``converged`` (K quiet cycles: re-checks only, at the longer interval), ``drifted`` (the workload or its
#: performance changed beyond the noise: a re-tune is due), and the final ``stopped`` / ``failed``
STATES = ("starting", "measuring", "searching", "validating", "converged", "drifted", "stopped", "failed")
FINAL = ("stopped", "failed")


class AutotuneError(NovatuneError, ValueError):
    """Bad continuous-tuning options (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class AutotuneNotFound(NovatuneError, LookupError):
    """No continuous tuner (or tuner step) of that id (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class AutotuneConflict(NovatuneError):
    """A continuous tuner already tunes one of these knobs (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


@dataclass(frozen=True)
class AutotuneOptions:
    """How a tuner runs (every field keyword, every bound checked by :meth:`check`).

    ``duration_s`` / ``cycles``: when to stop (None: until stopped); ``interval_s``: from the start of one
    cycle to the next; ``converged_interval_s``: the same once converged (default 3 × ``interval_s``);
    ``study_trials``: the budget of each small study (its first trial is the current configuration);
    ``window_s``: one measurement window (default: the spec's ``trial.measure_s``); ``windows``: windows
    per check of the current configuration; ``validation_s``: the validated apply's window;
    ``converge_after``: quiet cycles (no kept change, no drift) before ``converged``; ``keep_limit``: the
    validated apply keeps a step only when the primary objective's change is shown above this (relative,
    <= 0; 0, the default: a shown gain, so a step that only does no harm is rolled back instead of churning
    the configuration; the spec's other objectives are guarded at ``drop_limit``); ``drop_limit``: a
    performance fall (relative, <= 0) since the last kept step that rolls that step back;
    ``drift_limit``: the relative change of a workload characteristic (load, CPU use) or of the
    performance that counts as drift (two-sided, with confidence); ``max_step`` bounds of the trust region
    scale: ``min_scale`` .. ``max_scale`` × the spec's ``trust_region.max_step``.
    """

    duration_s: float | None = None
    cycles: int | None = None
    interval_s: float = 300.0
    converged_interval_s: float | None = None
    study_trials: int = 8
    window_s: float | None = None
    windows: int = 5
    validation_s: float = 600.0
    converge_after: int = 3
    keep_limit: float = 0.0
    drop_limit: float = -0.10
    drift_limit: float = 0.20
    min_scale: float = 0.25
    max_scale: float = 2.0

    def check(self) -> AutotuneOptions:
        """Returns self. Raises AutotuneError naming every bad option and what is allowed."""
        problems = []

        def positive(name: str, v: float | None, lo: float, hi: float) -> None:
            if v is not None and not (math.isfinite(v) and lo <= v <= hi):
                problems.append(f"{name} must be in [{lo:g}, {hi:g}], got {v!r}")

        positive("duration", self.duration_s, 1, 30 * 86400)
        positive("cycles", self.cycles, 1, 100_000)
        positive("interval", self.interval_s, 0, 86400)
        positive("converged interval", self.converged_interval_s, 0, 7 * 86400)
        positive("study-trials", self.study_trials, 1, 200)
        positive("window", self.window_s, 0.5, 3600)
        positive("windows", self.windows, 3, 100)
        positive("validation", self.validation_s, 1, 86400)
        positive("converge-after", self.converge_after, 1, 1000)
        positive("keep limit", self.keep_limit, -0.99, 0)
        positive("drop limit", self.drop_limit, -0.99, 0)
        positive("drift limit", self.drift_limit, 0.01, 0.9)
        positive("min scale", self.min_scale, 0.01, 1)
        positive("max scale", self.max_scale, 1, 10)
        if problems:
            raise AutotuneError("invalid autotune options: " + "; ".join(problems))
        return self

    @property
    def quiet_interval_s(self) -> float:
        return self.converged_interval_s if self.converged_interval_s is not None else 3 * self.interval_s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CycleRecord:
    """One cycle: what was measured (per-window figures and their medians with intervals), the drift
    verdict and why, whether a study ran (its name and choice), what became of it, the state after."""

    tuner: str
    cycle: int
    started: float
    ended: float = 0.0
    state: str = "measuring"
    measured: dict[str, list[float]] = field(default_factory=dict)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    study: str | None = None
    candidate: dict[str, Any] | None = None
    decision: str = ""
    reason: str = ""
    step: str | None = None
    trust_scale: float = 1.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"record": "cycle", **asdict(self)}


@dataclass
class StepRecord:
    """One change the tuner made or undid: ``kind`` is ``apply`` (a validated apply: ``decision`` kept |
    rolled_back | inconclusive), ``rollback`` (a kept step undone: performance fell) or ``reapply``; the
    spec's knobs' live values before and after, the validation report, the application id."""

    id: str
    tuner: str
    cycle: int
    kind: str
    time: float
    values: dict[str, Any]
    decision: str
    reason: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    application: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    undoes: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"record": "step", **asdict(self)}
