"""Everything a validated apply checks before it measures or writes anything.

:func:`check_request` loads the spec (a file, or one given inline by the API), prepares it as a study would
(workload options, paths, metrics; the spec's own knobs are not used: the request's values are), vets the
values exactly as ``novatune apply`` does (:func:`experiments.deploy.apply.check_config`: unknown knobs, hard
bounds, availability, protected interfaces), resolves the guards (direction from the spec's objectives or from
what the metric is) and turns the window lengths into A/B pair counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from collectors.errors import NovatuneError
from experiments.deploy.applications import AppliedKnob
from experiments.settings import Paths
from experiments.spec import StudySpec, load_spec
from experiments.study.prepare import StudyPlan, prepare
from experiments.study.resolve import Resolved
from experiments.validate.model import ValidationRequest
from optimizer.decision import Guard
from optimizer.space import SearchSpace

__all__ = ["Checked", "ValidationRefused", "check_request", "direction_of", "pair_counts"]

#: the default limit of the default guards (10 % worse)
DEFAULT_LIMIT = -0.10
#: the p95 latency guarded by default when the workload reports it
P95 = "latency_p95_ms"
#: metrics whose names say smaller is better / larger is better (for guards that are not objectives)
_MINIMIZE = ("latency", "cost", "error", "failcnt", "throttled", "retrans", "pgmajfault", "psi_", "iowait")
_MAXIMIZE = ("throughput", "iops", "rps", "bytes_per_s", "ops")
#: per window, on top of warm-up and measurement: starting the tool, reading the figures
_WINDOW_OVERHEAD_S = 1.0


class ValidationRefused(NovatuneError, ValueError):
    """A validated apply was asked with bad input: a window, a guard, a spec or values it cannot use; nothing was
    measured or written (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


@dataclass
class Checked:
    """A request checked against this machine: the prepared plan (the workload), the knobs that change (old ->
    new, and what will be written), the guards and how many A/B pairs to measure first and at most."""

    plan: StudyPlan
    rows: list[AppliedKnob]
    writes: dict[Any, Any]
    guards: list[Guard]
    initial_pairs: int
    max_pairs: int
    window_len_s: float
    #: the apply module's checked form (its held-knob check takes it)
    vetted: Any = None

    @property
    def changes(self) -> dict[str, Any]:
        """knob -> new value, for the knobs that change."""
        return {r.knob: r.new for r in self.rows}

    @property
    def old(self) -> dict[str, Any]:
        """knob -> value before the change."""
        return {r.knob: r.old for r in self.rows}


def direction_of(metric: str, objectives: dict[str, str]) -> str:
    """``maximize`` / ``minimize``: the spec's objective's direction, else what the metric's name says.

    Raises:
        ValidationRefused: neither says it.
    """
    if metric in objectives:
        return objectives[metric]
    low = metric.lower()
    if any(k in low for k in _MINIMIZE):
        return "minimize"
    if any(k in low for k in _MAXIMIZE):
        return "maximize"
    raise ValidationRefused(f"guard {metric}: cannot tell whether more or less is better; make it an objective of "
                            "the spec, or guard a latency, cost, error or throughput metric")


def _guards(plan: StudyPlan, wanted: tuple[tuple[str, float], ...]) -> list[Guard]:
    objectives = dict(plan.spec.objectives)
    allowed = list(dict.fromkeys([*objectives, *plan.metric_names]))
    if not wanted:
        primary = next(iter(objectives))
        wanted = ((primary, DEFAULT_LIMIT),) + (((P95, DEFAULT_LIMIT),)
                                                if P95 in plan.metric_names and primary != P95 else ())
    guards: list[Guard] = []
    for metric, limit in wanted:
        if metric not in allowed:
            raise ValidationRefused(f"unknown guard metric {metric!r}; allowed (this spec's workload): "
                                    f"{', '.join(allowed)}")
        if not -1.0 < float(limit) <= 0.0:
            raise ValidationRefused(f"guard {metric}: the limit must be in (-100 %, 0 %], got {float(limit):.1%}")
        guards.append(Guard(metric, direction_of(metric, objectives), float(limit)))  # type: ignore[arg-type]
    return guards


def pair_counts(window_s: float, max_window_s: float | None, window_len_s: float) -> tuple[int, int]:
    """A/B pairs measured first and at most: the validation window split into windows of the spec's trial
    length (one before and one after per pair; at least 3 pairs, the fewest the test decides on); the longest
    window (default 3 x ``window_s``) bounds how far an inconclusive answer extends it.

    Raises:
        ValidationRefused: ``window_s`` <= 0, or ``max_window_s`` < ``window_s``.
    """
    if not math.isfinite(window_s) or window_s <= 0:
        raise ValidationRefused(f"the validation window must be > 0 s, got {window_s:g}")
    longest = 3.0 * window_s if max_window_s is None else float(max_window_s)
    if not math.isfinite(longest) or longest < window_s:
        raise ValidationRefused(f"the longest window ({longest:g} s) must be >= the window ({window_s:g} s)")
    initial = max(3, int(window_s // (2.0 * window_len_s)))
    return initial, max(initial, int(longest // (2.0 * window_len_s)))


def _spec(req: ValidationRequest, spec: StudySpec | None) -> StudySpec:
    if spec is not None:
        return spec
    if not req.spec_path:
        raise ValidationRefused("a validated apply needs a spec (its workload, trial timing and objectives)")
    return load_spec(req.spec_path)


def check_request(req: ValidationRequest, *, paths: Paths, spec: StudySpec | None = None,
                  catalog: Any = None) -> Checked:
    """Check ``req`` (see the module docstring); nothing is started or written.

    ``spec``: the spec itself (the API's inline one) instead of ``req.spec_path``.

    Raises:
        SpecError: the spec cannot be read or is invalid (every problem listed).
        ValidationRefused: a bad window or guard, knobs that could not stay, nothing that would change.
        ApplyError: a knob is unknown, outside its hard bounds, not available or protected (as ``novatune apply``).
    """
    from experiments.deploy.apply import check_config

    full = _spec(req, spec)
    prepared = prepare(full, paths=paths, source=req.spec_path or "<inline spec>")
    # the spec's workload, timing and objectives; the knobs are the request's values, not the spec's ranges
    plan = replace(prepared, spec=full.model_copy(update={"knobs": {}, "profile": None}),
                   resolved=Resolved({}, SearchSpace((), (), ())))
    checked = check_config(req.values, source=req.source, catalog=catalog)
    if checked.not_applied:
        names = ", ".join(f"{n.knob} (scope {n.scope})" for n in checked.not_applied)
        raise ValidationRefused(f"cannot validate {names}: a validated change must be able to stay on this host "
                                "(host knobs only; nothing was changed)")
    rows = [r for r in checked.rows if r.changes]
    if not rows:
        raise ValidationRefused("nothing to validate: every knob already has its value (nothing was changed)")
    changing = {r.knob for r in rows}
    writes = {k: v for k, v in checked.plan.items() if k.name in changing}
    guards = _guards(plan, tuple(req.guards))
    t = plan.spec.trial
    window_len = t.warmup_s + t.measure_s + _WINDOW_OVERHEAD_S
    initial, most = pair_counts(float(req.window_s), req.max_window_s, window_len)
    return Checked(plan=plan, rows=rows, writes=writes, guards=guards, initial_pairs=initial, max_pairs=most,
                   window_len_s=window_len, vetted=checked)

