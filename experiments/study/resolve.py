"""Resolve a study spec against this machine's knob catalog into a search space.

This is where the two vocabularies meet: the catalog's hard bounds (actuators)
and the optimizer's parameters. A spec range may narrow a knob's hard bounds,
never widen them. The relations between knobs are the families' declarations
(:mod:`actuators.registry`), turned into the optimizer's ``LessThan`` / ``When``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from actuators import Catalog, Knob, UnknownKnob
from actuators.registry import REGISTRY
from experiments.spec import KnobSpec, SpecError, StudySpec
from experiments.study.metric_names import TRIAL_METRICS
from optimizer.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    LessThan,
    Param,
    SearchSpace,
    When,
)

__all__ = ["CONDITIONS", "ORDERINGS", "Resolved", "clamp_to_space", "resolve"]

#: Pairs that must stay ordered whenever a study tunes both (the families' orderings).
ORDERINGS: tuple[LessThan, ...] = tuple(LessThan(o.lower, o.upper) for o in REGISTRY.orderings())
#: knobs that only apply while another knob has certain values: not proposed otherwise (the families' conditions)
CONDITIONS: tuple[When, ...] = tuple(When(c.knob, c.parent, c.values) for c in REGISTRY.conditions())


@dataclass(frozen=True)
class Resolved:
    """The knobs a study will really tune here, its space, and what it skipped and why.

    ``specs`` keeps each knob's range as the spec gave it, for :meth:`bind`. ``mirrors``: knobs that take
    the same value as ``knobs[name]`` in each trial (a netns target's second namespace), each journaled.
    """

    knobs: dict[str, Knob]
    space: SearchSpace
    skipped: dict[str, str] = field(default_factory=dict)
    specs: dict[str, KnobSpec] = field(default_factory=dict)
    mirrors: dict[str, tuple[Knob, ...]] = field(default_factory=dict)

    def block_devices(self) -> list[str]:
        """The devices of the ``block.<dev>.*`` knobs, sorted (where a TuneD ``[disk]`` section acts)."""
        return sorted({k.name.split(".")[1] for k in self.knobs.values() if k.name.startswith("block.")})

    def values_for(self, params: dict[str, Any]) -> dict[Knob, Any]:
        """Every knob a trial's ``params`` set (the mirrors with their knob's value)."""
        out = {self.knobs[n]: v for n, v in params.items()}
        out.update({m: v for n, v in params.items() for m in self.mirrors.get(n, ())})
        return out

    def bind(self, catalog: Catalog, *, source: str = "<spec>") -> Resolved:
        """The same knobs bound to ``catalog`` (a run's cgroup and pids), without the ones that cannot be used
        here (they go to ``skipped`` with the reason). The spec is not resolved again: each knob is looked up
        once more, in the run's context, and its range checked against what the bound knob allows.

        Raises:
            SpecError: a range the bound knob does not allow, or no knob left to tune.
        """
        problems: list[str] = []
        knobs: dict[str, Knob] = {}
        params: list[Param] = []
        skipped = dict(self.skipped)
        for p in self.space.params:
            knob = catalog.get(p.name)
            reason = knob.available()
            if reason is not None:
                skipped[p.name] = reason
                continue
            bound = _param(p.name, self.specs[p.name], knob, problems)
            if bound is not None:
                knobs[p.name] = knob
                params.append(bound)
        if problems:
            raise SpecError(source, problems)
        return Resolved(knobs, _space(params, skipped, source), skipped, self.specs)


def _param(name: str, ks: KnobSpec, knob: Knob, problems: list[str]) -> Param | None:
    d = knob.domain
    if d.kind == "categorical":
        if ks.choices is None:
            problems.append(f"knobs.{name}: takes choices, one of {list(d.choices)}; a range was given")
            return None
        bad = [c for c in ks.choices if c not in d.choices]
        if bad:
            problems.append(f"knobs.{name}: {bad} not allowed here; allowed choices: {list(d.choices)}")
            return None
        return CategoricalParam(name, tuple(dict.fromkeys(ks.choices)))
    if ks.choices is not None:
        problems.append(f"knobs.{name}: takes a range {{low, high}} within [{d.low}, {d.high}]; choices were given")
        return None
    if ks.low is None or ks.high is None or d.low is None or d.high is None:  # a validated spec has both
        problems.append(f"knobs.{name}: takes a range {{low, high}} within [{d.low}, {d.high}]")
        return None
    low, high = float(ks.low), float(ks.high)
    if low < d.low or high > d.high:
        problems.append(
            f"knobs.{name}: range [{ks.low}, {ks.high}] is outside the hard safety bounds [{d.low}, {d.high}]"
        )
        return None
    if d.kind == "int":
        if not (low.is_integer() and high.is_integer()) or (ks.step is not None and not float(ks.step).is_integer()):
            problems.append(f"knobs.{name}: an integer knob needs integer low/high/step, got {ks.low}, {ks.high}")
            return None
        return IntParam(name, int(low), int(high), step=int(ks.step or 1), log=ks.log)
    if ks.log and low <= 0:
        problems.append(f"knobs.{name}: log scale needs low > 0")
        return None
    return FloatParam(name, low, high, step=ks.step, log=ks.log)


def resolve(
    spec: StudySpec,
    catalog: Catalog,
    *,
    check_availability: bool = True,
    source: str = "<spec>",
    metrics: list[str] | tuple[str, ...] | None = None,
) -> Resolved:
    """Map every spec knob to a catalog knob and a parameter.

    Raises:
        SpecError: unknown knobs, ranges outside hard bounds, unknown metrics.
            Every problem is listed, with what is allowed.
    ``metrics`` are the names objectives and constraints may use (default:
    the built-in OLTP workload's, :data:`TRIAL_METRICS`).
    Knobs that exist but cannot be used here (no privilege, no such file) are
    not errors: they are returned in ``skipped`` with the reason.
    """
    problems: list[str] = []
    knobs: dict[str, Knob] = {}
    params: list[Param] = []
    skipped: dict[str, str] = {}
    for name, ks in spec.knobs.items():
        try:
            knob = catalog.get(name)
        except UnknownKnob as err:
            problems.append(f"knobs.{name}: {err}")
            continue
        p = _param(name, ks, knob, problems)
        if p is None:
            continue
        if check_availability:
            reason = knob.available()
            if reason is not None:
                skipped[name] = reason
                continue
        knobs[name] = knob
        params.append(p)
    known = list(metrics) if metrics is not None else list(TRIAL_METRICS)
    allowed_metrics = ", ".join(known)
    for metric in list(spec.objectives) + list(spec.constraints):
        if metric not in known:
            where = "objectives" if metric in spec.objectives else "constraints"
            problems.append(f"{where}.{metric}: unknown metric; allowed: {allowed_metrics}")
    if problems:
        raise SpecError(source, problems)
    return Resolved(knobs, _space(params, skipped, source), skipped, dict(spec.knobs))


def _space(params: list[Param], skipped: dict[str, str], source: str) -> SearchSpace:
    """The search space over ``params``, with the families' relations among them."""
    if not params:
        raise SpecError(source, [f"no knob of the spec can be tuned here: {skipped}"])
    names = {p.name for p in params}
    orderings = tuple(o for o in ORDERINGS if o.lower in names and o.upper in names)
    choices = {p.name: p.choices for p in params if isinstance(p, CategoricalParam)}
    conditions = tuple(
        When(c.param, c.parent, tuple(v for v in c.values if v in choices.get(c.parent, ())))
        for c in CONDITIONS if c.param in names and c.parent in names
    )
    try:
        return SearchSpace(tuple(params), orderings, conditions)
    except ValueError as err:
        raise SpecError(source, [str(err)]) from None


def clamp_to_space(values: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The subset of ``values`` the baseline trial can use (finite, known names, conditions holding)."""
    out = {}
    for p in space.params:
        v = values.get(p.name)
        if isinstance(v, (tuple, list)) and v and not isinstance(p, CategoricalParam):
            v = v[-1]  # a triplet sysctl (net.ipv4.tcp_rmem: min default max) is searched by its max
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        out[p.name] = v
    return space.active(out)
