"""Search-space description: the optimizer's vocabulary for what may be tuned.

A :class:`SearchSpace` is plain data (no I/O). ``experiments`` builds one from
the knob catalog's domains intersected with a study spec's ranges; the optimizer
turns it into Optuna suggestions. Ordering constraints between two numeric
parameters (``vm.dirty_background_ratio < vm.dirty_ratio``) are honoured at
sampling time, define-by-run, so an invalid combination is never proposed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "LessThan",
    "Param",
    "SearchSpace",
    "When",
]


@dataclass(frozen=True)
class IntParam:
    """An integer parameter in ``[low, high]`` (both inclusive)."""

    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"{self.name}: low {self.low} > high {self.high}")
        if self.step < 1:
            raise ValueError(f"{self.name}: step must be >= 1, got {self.step}")

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high


@dataclass(frozen=True)
class FloatParam:
    """A float parameter in ``[low, high]``; ``step`` discretises it."""

    name: str
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"{self.name}: bounds must be finite")
        if self.low > self.high:
            raise ValueError(f"{self.name}: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: log scale needs low > 0")

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= float(value) <= self.high


@dataclass(frozen=True)
class CategoricalParam:
    """A parameter taking one of ``choices`` (strings)."""

    name: str
    choices: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"{self.name}: no choices")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"{self.name}: duplicate choices {list(self.choices)}")

    def contains(self, value: Any) -> bool:
        return value in self.choices


Param = IntParam | FloatParam | CategoricalParam


@dataclass(frozen=True)
class LessThan:
    """``lower`` must stay strictly below ``upper`` (both numeric parameters)."""

    lower: str
    upper: str


@dataclass(frozen=True)
class When:
    """``param`` applies only while ``parent`` takes one of ``values`` (e.g. ``thp.defrag`` only
    while ``thp.enabled`` is ``always`` or ``madvise``); otherwise it is not proposed and the
    knob stays as it is."""

    param: str
    parent: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters plus ordering constraints and conditions between them."""

    params: tuple[Param, ...]
    orderings: tuple[LessThan, ...] = field(default=())
    conditions: tuple[When, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        by_name = {p.name: p for p in self.params}
        for c in self.conditions:
            if c.param not in by_name or c.parent not in by_name or c.param == c.parent:
                raise ValueError(f"condition {c} names a parameter that is not in the space")
            if not isinstance(by_name[c.parent], CategoricalParam):
                raise ValueError(f"condition {c}: the parent must be categorical")
        for rule in self.orderings:
            for n in (rule.lower, rule.upper):
                p = by_name.get(n)
                if p is None or isinstance(p, CategoricalParam):
                    raise ValueError(f"ordering {rule} names {n!r}, which is not a numeric parameter")
            # numeric, checked just above
            lo, up = cast(IntParam | FloatParam, by_name[rule.lower]), cast(IntParam | FloatParam, by_name[rule.upper])
            if lo.low >= up.high:
                raise ValueError(
                    f"{rule.lower} must be < {rule.upper}, but its lowest value {lo.low} "
                    f"is not below the highest {rule.upper} {up.high}"
                )

    def active(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` without the parameters whose condition does not hold (see :class:`When`)."""
        out = dict(values)
        for c in self.conditions:
            if c.param in out and (c.parent not in out or out[c.parent] not in c.values):
                del out[c.param]
        return out

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def _sampling_order(self) -> list[Param]:
        """Uppers before their lowers, so a lower's range can depend on its upper."""
        uppers = {r.upper for r in self.orderings}
        return sorted(self.params, key=lambda p: 0 if p.name in uppers else 1)

    def is_valid(self, values: dict[str, Any]) -> bool:
        """True when every value is in its parameter's range and every ordering holds."""
        for p in self.params:
            if p.name in values and not p.contains(values[p.name]):
                return False
        for r in self.orderings:
            if r.lower in values and r.upper in values and not values[r.lower] < values[r.upper]:
                return False
        return self.active(values) == dict(values)  # no parameter whose condition does not hold

    def repair(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with every ordering made to hold by the smallest change.

        For ``lower < upper`` broken, ``lower`` is lowered to just below
        ``upper`` (one step for integers) when its range allows, else ``upper``
        is raised just above ``lower``. The map is deterministic, so an
        objective measured on the repaired values is still a function of the
        proposal, which is what a model-based sampler learns.
        """
        out = dict(values)
        by_name = {p.name: p for p in self.params}
        for r in self.orderings:
            if r.lower not in out or r.upper not in out or out[r.lower] < out[r.upper]:
                continue
            lo, up = cast(IntParam | FloatParam, by_name[r.lower]), by_name[r.upper]  # orderings are numeric
            gap = 1 if isinstance(lo, IntParam) else 0.0
            below = out[r.upper] - gap if gap else math.nextafter(out[r.upper], -math.inf)
            if below >= lo.low:
                out[r.lower] = type(out[r.lower])(below)
            else:
                above = out[r.lower] + (1 if isinstance(up, IntParam) else 0.0)
                out[r.upper] = above if isinstance(up, IntParam) else math.nextafter(out[r.lower], math.inf)
        return out

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """Ask ``trial`` for one value per parameter, each from its own fixed distribution.

        The distributions never depend on other values (a dynamic search space
        would make Optuna's model-based samplers fall back to random sampling
        for those parameters); a proposal that breaks an ordering is repaired
        with :meth:`repair`, so no invalid combination is ever returned. The
        trial's params keep the proposal; the returned values (what is applied)
        are stored by the caller. Returns the values in the space's declared order.
        """
        chosen: dict[str, Any] = {}
        children = {c.param: c for c in self.conditions}
        for p in sorted(self.params, key=lambda q: q.name in children):  # parents before the knobs they gate
            cond = children.get(p.name)
            if cond is not None and chosen.get(cond.parent) not in cond.values:
                continue  # does not apply to this configuration: not proposed, the knob stays as it is
            if isinstance(p, CategoricalParam):
                chosen[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif isinstance(p, IntParam):
                chosen[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step, log=p.log)
            else:
                chosen[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        repaired = self.repair(chosen)
        return {n: repaired[n] for n in self.names if n in repaired}
