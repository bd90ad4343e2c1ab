"""Safe gradual tuning: a trust region around the configuration running now.

On a production target a tuner must not jump from ``vm.swappiness=60`` to
``0`` in one trial. A :class:`TrustRegion` allows each knob to move at most
``max_step`` away from the *center* (the current configuration) per trial; after
an accepted improvement the region moves (:meth:`TrustRegion.move`).

Numeric knobs
    The box is ``[center - step, center + step]`` intersected with the knob's
    bounds and snapped inward to the knob's grid (``low + k * step``). The
    center itself is snapped to the grid once, on construction. ``max_step``
    is either

    * a fraction of each knob's range (``0.1`` = 10 % of ``high - low``; a
      knob on a grid may always move at least one grid step; for log-scale
      knobs the fraction applies to the log-range, i.e. a factor
      ``(high/low) ** fraction`` either way), or
    * a mapping ``{knob: absolute step}``; knobs not in it get
      ``default_fraction``; a step of 0 freezes a knob.

Categorical knobs
    They have no distance, so the policy is a *count*: at most
    ``max_categorical_changes`` categorical knobs (default 1) may differ from
    the center in one trial. :meth:`TrustRegion.clamp` keeps the changes of the
    first knobs in the space's declared order and reverts the rest;
    :meth:`TrustRegion.suggest` lets the sampler vary only that many
    categorical knobs per trial (picked at random, seeded by the trial number)
    and keeps the others at the center without asking the sampler (they are
    then absent from ``trial.params``: record the returned dict). ``0``
    freezes every categorical knob.

Orderings
    The space's ``LessThan`` rules (``vm.dirty_background_ratio <
    vm.dirty_ratio``) always hold in what :meth:`clamp` and :meth:`suggest`
    return: the upper knob is never put below what its lower knob's box
    allows, and the lower knob is capped just below the upper's value. The
    center must itself be a valid configuration.

Example::

    from optimizer.trust import TrustRegion

    region = TrustRegion(current, 0.1, space)          # each knob moves <= 10 % of its range per trial
    region.clamp({"vm.swappiness": 0, "vm.dirty_ratio": 5})   # -> values pulled into the region
    region.contains(proposal)                           # True/False
    params = region.suggest(trial)                      # define-by-run, the sampler samples inside
    region = region.move(best_params)                   # after an accepted improvement
    region.distributions()                              # {name: optuna distribution} (boxes only)
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from optimizer.space import CategoricalParam, FloatParam, IntParam, SearchSpace

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

__all__ = ["TrustRegion"]

Numeric = IntParam | FloatParam
_EPS = 1e-9


# ------------------------------------------------------------- grid helpers
def _grid(p: Numeric) -> float | None:
    return p.step


def _at(p: Numeric, k: int) -> float:
    """The k-th grid value of ``p`` (float grids rounded so 0.1 + 0.2 stays 0.3)."""
    g = p.step
    assert g is not None
    v = p.low + k * g
    return v if isinstance(p, IntParam) else round(v, 12)


def _cast(p: Numeric, v: float) -> float | int:
    if isinstance(p, IntParam):
        return round(v)
    g = p.step
    return round(float(v), 12) if g is not None else float(v)


def _top(p: Numeric) -> float:
    g = _grid(p)
    if g is None:
        return p.high
    return _at(p, math.floor((p.high - p.low) / g + _EPS))


def _floor(p: Numeric, v: float) -> float:
    """Largest grid value <= v (not below low)."""
    g = _grid(p)
    if g is None:
        return max(p.low, min(v, p.high))
    k = math.floor((v - p.low) / g + _EPS)
    return max(p.low, min(_at(p, k), _top(p)))


def _ceil(p: Numeric, v: float) -> float:
    """Smallest grid value >= v (not above the top grid value)."""
    g = _grid(p)
    if g is None:
        return max(p.low, min(v, p.high))
    k = math.ceil((v - p.low) / g - _EPS)
    return min(_top(p), max(p.low, _at(p, k)))


def _snap(p: Numeric, v: float) -> float:
    g = _grid(p)
    if g is None:
        return max(p.low, min(float(v), p.high))
    k = round((v - p.low) / g)
    return max(p.low, min(_at(p, k), _top(p)))


def _above(p: Numeric, v: float) -> float:
    """Smallest value of ``p``'s grid strictly above ``v`` (may exceed ``p``'s bounds)."""
    g = _grid(p)
    if g is None:
        return max(p.low, math.nextafter(v, math.inf))
    k = math.floor((v - p.low) / g + _EPS) + 1
    return max(p.low, _at(p, k))


def _below(p: Numeric, v: float) -> float:
    """Largest value of ``p``'s grid strictly below ``v`` (may fall under ``p``'s bounds)."""
    g = _grid(p)
    if g is None:
        return min(p.high, math.nextafter(v, -math.inf))
    k = math.ceil((v - p.low) / g - _EPS) - 1
    return min(_top(p), _at(p, k))


def _on_grid(p: Numeric, v: float) -> bool:
    g = _grid(p)
    if g is None:
        return True
    k = (v - p.low) / g
    return abs(k - round(k)) < 1e-6


class TrustRegion:
    """The configurations reachable from ``center`` in one trial.

    Args:
        center: the current configuration (every parameter of ``space``).
        max_step: a fraction of each numeric knob's range, or ``{knob: absolute step}``.
        space: the search space (bounds, grids, orderings).
        default_fraction: step (as a fraction) for knobs missing from a ``max_step`` mapping.
        max_categorical_changes: how many categorical knobs may differ from the center per trial.

    Raises:
        ValueError: a missing or invalid center value, an unknown knob in
            ``max_step``, a negative step, or a fraction outside [0, 1].
    """

    def __init__(
        self,
        center: Mapping[str, Any],
        max_step: float | Mapping[str, float],
        space: SearchSpace,
        *,
        default_fraction: float = 0.1,
        max_categorical_changes: int = 1,
    ) -> None:
        self.space = space
        self.max_step = max_step if not isinstance(max_step, Mapping) else dict(max_step)
        self.default_fraction = default_fraction
        self.max_categorical_changes = max_categorical_changes
        if max_categorical_changes < 0:
            raise ValueError(f"max_categorical_changes must be >= 0, got {max_categorical_changes}")
        if not 0 <= default_fraction <= 1:
            raise ValueError(f"default_fraction must be in [0, 1], got {default_fraction}")
        if isinstance(max_step, Mapping):
            unknown = set(max_step) - set(space.names)
            if unknown:
                raise ValueError(f"max_step names knobs not in the space: {sorted(unknown)}")
            bad = {k: v for k, v in max_step.items() if not (isinstance(v, (int, float)) and v >= 0)}
            if bad:
                raise ValueError(f"max_step values must be numbers >= 0: {bad}")
        elif not (isinstance(max_step, (int, float)) and 0 <= max_step <= 1):
            raise ValueError(f"max_step as a fraction of the range must be in [0, 1], got {max_step!r}")
        self._params = {p.name: p for p in space.params}
        missing = [n for n in space.names if n not in center]
        if missing:
            raise ValueError(f"the center has no value for {missing}")
        snapped: dict[str, Any] = {}
        for p in space.params:
            v = center[p.name]
            if isinstance(p, CategoricalParam):
                if v not in p.choices:
                    raise ValueError(f"center {p.name}={v!r} is not one of {list(p.choices)}")
                snapped[p.name] = v
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not p.low <= v <= p.high:
                    raise ValueError(f"center {p.name}={v!r} is outside [{p.low}, {p.high}]")
                snapped[p.name] = _cast(p, _snap(p, v))
        if not space.is_valid(snapped):
            raise ValueError(f"the center breaks an ordering of the space: {snapped}")
        self.center: dict[str, Any] = snapped
        self._order = self._top_down()
        self._box = {name: self._make_box(p) for name, p in self._params.items() if not isinstance(p, CategoricalParam)}
        self._eff_lo = self._effective_lows()

    # -------------------------------------------------------------- set-up
    def _step_of(self, p: Numeric) -> tuple[str, float]:
        if isinstance(self.max_step, Mapping) and p.name in self.max_step:
            return "abs", float(self.max_step[p.name])
        frac = float(self.max_step) if not isinstance(self.max_step, Mapping) else self.default_fraction
        return "frac", frac

    def _make_box(self, p: Numeric) -> tuple[float, float]:
        c = float(self.center[p.name])
        kind, s = self._step_of(p)
        if kind == "frac" and p.log and p.low > 0:
            r = (p.high / p.low) ** s
            lo, hi = c / r, c * r
            g = _grid(p)
            if g is not None and s > 0:  # a knob on a grid may always move one step
                lo, hi = min(lo, c - g), max(hi, c + g)
        else:
            if kind == "frac":
                s = s * (p.high - p.low)
                g = _grid(p)
                if g is not None and s > 0:
                    s = max(s, g)
            lo, hi = c - s, c + s
        lo = max(_ceil(p, max(lo, p.low)), p.low)
        hi = _floor(p, min(hi, p.high))
        lo, hi = min(lo, c), max(hi, c)  # rounding never excludes the center
        return lo, hi

    def _numeric(self, name: str) -> Numeric:
        """The numeric knob ``name`` (the caller walks numeric knobs only)."""
        return cast(Numeric, self._params[name])

    def _top_down(self) -> list[str]:
        """Numeric knobs, every upper before its lowers (Kahn's algorithm)."""
        numeric = [p.name for p in self.space.params if not isinstance(p, CategoricalParam)]
        uppers_of = {n: [r.upper for r in self.space.orderings if r.lower == n] for n in numeric}
        done: list[str] = []
        pending = list(numeric)
        while pending:
            ready = [n for n in pending if all(u in done for u in uppers_of[n])]
            if not ready:
                raise ValueError(f"the orderings of the space form a cycle among {pending}")
            done.extend(ready)
            pending = [n for n in pending if n not in ready]
        return done

    def _effective_lows(self) -> dict[str, float]:
        """Lowest value each knob may take so that every knob below it still has room."""
        eff: dict[str, float] = {}
        for name in reversed(self._order):  # lowers first
            p = self._numeric(name)
            lo = self._box[name][0]
            for r in self.space.orderings:
                if r.upper == name:
                    lo = max(lo, _above(p, eff[r.lower]))
            eff[name] = lo
        return eff

    # ----------------------------------------------------------- queries
    def bounds(self, name: str) -> tuple[float, float]:
        """The box of one numeric knob (ignoring orderings)."""
        return self._box[name]

    def clamp(self, proposal: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration of the region nearest to ``proposal``.

        Numeric values are snapped to the grid and clipped to the box (then to
        the orderings, top-down); categorical changes beyond
        ``max_categorical_changes`` are reverted in the space's declared
        order; missing or unusable values take the center's. The result is
        always :meth:`contains`-ed and valid for the space.
        """
        out: dict[str, Any] = {}
        for name in self._order:
            p = self._numeric(name)
            v = proposal.get(name, self.center[name])
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                v = self.center[name]
            lo, hi = self._eff_lo[name], self._box[name][1]
            for r in self.space.orderings:
                if r.lower == name:
                    hi = min(hi, _below(p, out[r.upper]))
            out[name] = _cast(p, min(max(_snap(p, v), lo), hi))
        changes = 0
        for c in self.space.params:
            if not isinstance(c, CategoricalParam):
                continue
            v = proposal.get(c.name, self.center[c.name])
            if v not in c.choices or (v != self.center[c.name] and changes >= self.max_categorical_changes):
                v = self.center[c.name]
            changes += v != self.center[c.name]
            out[c.name] = v
        return {n: out[n] for n in self.space.names}

    def contains(self, proposal: Mapping[str, Any]) -> bool:
        """True when ``proposal`` (missing knobs = center) is reachable in one trial and valid."""
        if set(proposal) - set(self.space.names):
            return False
        full = {**self.center, **proposal}
        changes = 0
        for p in self.space.params:
            v = full[p.name]
            if isinstance(p, CategoricalParam):
                if v not in p.choices:
                    return False
                changes += v != self.center[p.name]
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return False
            if isinstance(p, IntParam) and not isinstance(v, int):
                return False
            lo, hi = self._box[p.name]
            if not (lo - 1e-12 <= v <= hi + 1e-12 and _on_grid(p, v)):
                return False
        return changes <= self.max_categorical_changes and self.space.is_valid(full)

    def move(self, new_center: Mapping[str, Any]) -> TrustRegion:
        """The same region around ``new_center`` (a new object; this one is unchanged)."""
        return TrustRegion(
            new_center,
            self.max_step,
            self.space,
            default_fraction=self.default_fraction,
            max_categorical_changes=self.max_categorical_changes,
        )

    # ---------------------------------------------------------- for optuna
    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of the boxes (numeric) and full choices (categorical).

        A static view for ``study.enqueue_trial``/inspection: orderings and the
        categorical change limit cannot be expressed as independent
        distributions; :meth:`suggest` applies them.
        """
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        out: dict[str, BaseDistribution] = {}
        for p in self.space.params:
            if isinstance(p, CategoricalParam):
                out[p.name] = CategoricalDistribution(list(p.choices))
            elif isinstance(p, IntParam):
                lo, hi = self._box[p.name]
                out[p.name] = IntDistribution(int(lo), int(hi), log=p.log, step=1 if p.log else p.step)
            else:
                lo, hi = self._box[p.name]
                out[p.name] = FloatDistribution(lo, hi, log=p.log, step=p.step)
        return out

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """Define-by-run suggestion inside the region: the sampler samples in the narrowed boxes.

        Uppers are suggested before their lowers, with ranges chosen so the
        orderings hold; only ``max_categorical_changes`` categorical knobs
        (chosen with ``random.Random(trial.number)``) are asked of the
        sampler, the others stay at the center and do not appear in
        ``trial.params``. Returns every knob, in the space's declared order.

        Note: the numeric ranges a parameter is suggested with change when the
        center moves; Optuna accepts that (same distribution type), but
        multivariate TPE only models parameters whose distribution is the same
        in every trial, so keep the center fixed for a block of trials, or use
        :meth:`clamp` after the space's own ``suggest`` instead.
        """
        chosen: dict[str, Any] = {}
        for name in self._order:
            p = self._numeric(name)
            lo, hi = self._eff_lo[name], self._box[name][1]
            for r in self.space.orderings:
                if r.lower == name:
                    hi = min(hi, _below(p, chosen[r.upper]))
            if isinstance(p, IntParam):
                chosen[name] = trial.suggest_int(name, int(lo), int(hi), step=1 if p.log else p.step, log=p.log)
            else:
                chosen[name] = trial.suggest_float(name, float(lo), float(hi), step=p.step, log=p.log)
        cats = [c for c in self.space.params if isinstance(c, CategoricalParam)]
        names = [c.name for c in cats]
        free = set(random.Random(trial.number).sample(names, min(len(cats), self.max_categorical_changes)))
        for c in cats:
            if c.name in free and len(c.choices) > 1:
                chosen[c.name] = trial.suggest_categorical(c.name, list(c.choices))
            else:
                chosen[c.name] = self.center[c.name]
        return {n: chosen[n] for n in self.space.names}
