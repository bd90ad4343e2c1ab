"""Recommendations as plain data: what to change, what it should gain, how sure, how risky, and why.

The one vocabulary of the advisors (:mod:`optimizer.advisors`), right-sizing and finished studies when
they tell an operator what to change. Pure: no I/O. :func:`rank` orders and de-duplicates them.

A recommendation's ``changes`` are knob changes by catalog name (``block.vda.read_ahead_kb``,
``kernel.numa_balancing``, ``affinity.cpus`` bound to ``target``) so that accepting one goes through
the actuators (and the validated apply) like any other configuration; an action no knob can carry
(``numactl --membind`` on a service's unit file) is an advice with no changes and a ``manual`` text.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["ADVISORS", "Advice", "Change", "Evidence", "rank", "score"]

#: where a recommendation comes from
ADVISORS = ("numa", "pinning", "io", "network", "rightsizing", "study")


@dataclass(frozen=True)
class Evidence:
    """One observed fact behind a recommendation: ``what`` was seen, its ``value`` (and ``unit``), and
    where it was read (``source``: a file, a measurement, a study)."""

    what: str
    value: Any
    unit: str = ""
    source: str = ""


@dataclass(frozen=True)
class Change:
    """Set catalog knob ``knob`` to ``value`` (``current``: its value when advised, if known)."""

    knob: str
    value: Any
    current: Any = None


@dataclass(frozen=True)
class Advice:
    """One recommendation.

    ``expected_impact`` is the relative gain expected on ``metric`` (0.12 = 12 % better in the metric's
    own good direction; a figure measured here when ``measured``, else the advisor's estimate);
    ``confidence`` in [0, 1]; ``risk`` the 0..4 performance-risk scale of
    :data:`optimizer.rightsizing.model.RISK_LABELS`; ``usd_per_month`` the saving (positive) or cost
    (negative) in money when the change has one (right-sizing); ``target`` what a bound knob acts on
    (``pid:N``, ``cgroup:/PATH``, a netns) or None for host knobs.
    """

    advisor: str
    title: str
    why: str
    changes: tuple[Change, ...] = ()
    metric: str = "throughput"
    expected_impact: float = 0.0
    confidence: float = 0.5
    risk: float = 1.0
    evidence: tuple[Evidence, ...] = ()
    target: str | None = None
    manual: str | None = None
    usd_per_month: float | None = None
    measured: bool = False
    sources: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.advisor not in ADVISORS:
            raise ValueError(f"unknown advisor {self.advisor!r}; allowed: {', '.join(ADVISORS)}")
        if not 0.0 <= self.confidence <= 1.0 or not math.isfinite(self.confidence):
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if not 0.0 <= self.risk <= 4.0 or not math.isfinite(self.risk):
            raise ValueError(f"risk must be in [0, 4], got {self.risk}")
        if not self.changes and not self.manual:
            raise ValueError("an advice needs knob changes or a manual action")

    @property
    def key(self) -> tuple[Any, ...]:
        """What "the same recommendation" means: the same knobs on the same target (values may differ),
        or the same manual action."""
        return (self.target, tuple(sorted(c.knob for c in self.changes)), None if self.changes else self.manual)

    @property
    def id(self) -> str:
        """A stable short id (the same advice on the same machine gets the same id)."""
        raw = json.dumps([self.advisor, self.target, [[c.knob, c.value] for c in self.changes], self.manual],
                         sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:10]

    @property
    def values(self) -> dict[str, Any]:
        """The knob changes as a configuration (knob -> value)."""
        return {c.knob: c.value for c in self.changes}

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = self.id
        d["score"] = score(self)
        return d


def score(advice: Advice) -> float:
    """Expected impact × confidence ÷ risk weight (1 + risk): the ranking key. A money saving counts as
    its share of 100 USD/month on top, so a cost-neutral 5 % gain and a 5 USD/month saving rank alike."""
    gain = max(advice.expected_impact, 0.0)
    if advice.usd_per_month is not None and advice.usd_per_month > 0:
        gain += advice.usd_per_month / 100.0
    return gain * advice.confidence / (1.0 + advice.risk)


def _merge(a: Advice, b: Advice) -> Advice:
    """Two advisors said the same thing: keep the one ranked higher, with the evidence of both."""
    best, other = (a, b) if score(a) >= score(b) else (b, a)
    evidence = best.evidence + tuple(e for e in other.evidence if e not in best.evidence)
    sources = tuple(dict.fromkeys(best.sources + (best.advisor,) + other.sources + (other.advisor,)))
    return replace(best, evidence=evidence, sources=sources)


def rank(advices: Iterable[Advice], *, current: Mapping[str, Any] | None = None) -> list[Advice]:
    """De-duplicated (same :attr:`Advice.key`), without changes that would change nothing (every
    knob already at its value per ``current``), best :func:`score` first; ties by title."""
    current = current or {}
    merged: dict[tuple[Any, ...], Advice] = {}
    for adv in advices:
        if adv.changes and all(c.knob in current and _same(current[c.knob], c.value) for c in adv.changes):
            continue
        merged[adv.key] = _merge(merged[adv.key], adv) if adv.key in merged else adv
    return sorted(merged.values(), key=lambda a: (-score(a), a.title))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Sequence) and not isinstance(a, str):
        a = list(a)
    if isinstance(b, Sequence) and not isinstance(b, str):
        b = list(b)
    return bool(a == b or str(a) == str(b))
