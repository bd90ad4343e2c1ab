"""The registry of knob families: every family novatune knows, in listing order, checked at load.

:data:`REGISTRY` is what the catalog resolves names with, what a session
orders a set by, what a study's search space takes its relations from and what
the exports take their paths, sections and options from. Its declarations are
checked when this module is loaded (:meth:`Registry.problems`; a test runs it
too): each pattern resolvable to its own family and no other, every relation
and apply rank naming known knobs, every export mapping naming the family's
own patterns and fields, every exported kernel file one ``recover`` may
restore, a sysctl's file where ``sysctl`` writes its key, and a restorer for
every kind of change a family journals.
"""

from __future__ import annotations

from collections.abc import Iterable

from actuators import (
    affinity,
    block,
    cpu,
    instance,
    irq,
    kernel,
    memory,
    net,
    nic,
    process,
    rightsize,
    sizing,
    sysctl,
    thp,
)
from actuators.errors import ActuatorError
from actuators.family import Condition, Family, Match, Ordering, fill
from actuators.sysroot import RESTORABLE_PREFIXES

__all__ = ["FAMILIES", "REGISTRY", "Registry"]

#: every family, in the order the catalog lists their knobs
FAMILIES: tuple[Family, ...] = (
    sysctl.FAMILY,
    kernel.FAMILY,
    net.FAMILY,
    thp.FAMILY,
    memory.FAMILY,
    block.FAMILY,
    cpu.FAMILY,
    irq.FAMILY,
    sizing.FAMILY,
    rightsize.FAMILY,
    affinity.FAMILY,
    process.FAMILY,
    nic.FAMILY,
    instance.FAMILY,
)


class Registry:
    """The families, and the questions asked of all of them at once."""

    def __init__(self, families: Iterable[Family]) -> None:
        self.families = tuple(families)

    def family_of(self, name: str) -> Family | None:
        """The family that resolves ``name`` (or refuses it with its own reason); None when no family claims it."""
        for f in self.families:
            if f.claims(name):
                return f
        return None

    def match(self, name: str) -> Match | None:
        """``name`` matched by syntax alone (any host: exports, relations); None when no pattern fits."""
        for f in self.families:
            m = f.match(name)
            if m is not None:
                return m
        return None

    def patterns(self) -> list[str]:
        """Every name pattern, in listing order."""
        return [p for f in self.families for p in f.patterns]

    def orderings(self) -> tuple[Ordering, ...]:
        """Every ``lower < upper`` relation the families declare."""
        return tuple(o for f in self.families for o in f.orderings)

    def conditions(self) -> tuple[Condition, ...]:
        """Every "only while" relation the families declare."""
        return tuple(c for f in self.families for c in f.conditions)

    def rank(self, name: str) -> int:
        """The apply rank of ``name``: a set is written in increasing rank (0 for names of no family)."""
        m = self.match(name)
        return m.family.rank(name) if m is not None else 0

    def sysctl_names(self) -> dict[str, str]:
        """sysctl key -> knob name, for every knob a sysctl.d file can carry."""
        return {p: p for f in self.families for p, exp in f.exports.items() if exp.sysctl}

    def workload_bound(self, name: str) -> bool:
        """Whether ``name`` belongs to a family bound to a run's workload (deployed through its unit)."""
        m = self.match(name)
        return m is not None and m.family.workload

    # ----------------------------------------------------------------- checks
    def problems(self) -> list[str]:
        """Every inconsistency of the declarations (empty when the registry is sound)."""
        from actuators.restore import RESTORERS

        out: list[str] = []
        names = [f.name for f in self.families]
        out += [f"family {n!r} declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
        for f in self.families:
            out += self._pattern_problems(f)
            out += [f"{f.name}: apply_order names {p!r}, not one of its patterns"
                    for p in f.apply_order if p not in f.patterns]
            out += [f"{f.name}: restores {k!r} changes, but no restorer knows that kind"
                    for k in f.restore_kinds if k not in RESTORERS]
            out += self._export_problems(f)
        for o in self.orderings():
            out += [f"ordering {o.lower} < {o.upper}: {n!r} is no family's knob"
                    for n in (o.lower, o.upper) if self.match(n) is None]
        for c in self.conditions():
            out += [f"condition on {c.knob}: {n!r} is no family's knob"
                    for n in (c.knob, c.parent) if self.match(n) is None]
        return out

    def _pattern_problems(self, f: Family) -> list[str]:
        out: list[str] = []
        for p in f.patterns:
            name = f.example(p)
            m = f.match(name)
            if m is None or m.pattern != p:
                out.append(f"{f.name}: pattern {p!r} does not match its own example {name!r}")
            if not f.claims(name):
                out.append(f"{f.name}: does not claim {name!r} (pattern {p!r})")
            others = [g.name for g in self.families if g is not f and (g.claims(name) or g.match(name))]
            if others:
                out.append(f"{f.name}: {name!r} (pattern {p!r}) is also claimed by {', '.join(others)}")
        return out

    def _export_problems(self, f: Family) -> list[str]:
        out: list[str] = []
        for p, exp in f.exports.items():
            if p not in f.patterns:
                out.append(f"{f.name}: export mapping for {p!r}, not one of its patterns")
                continue
            m = f.match(f.example(p))
            if exp.file is None or m is None:
                continue
            try:
                rel = fill(exp.file, m.fields).lstrip("/")
            except KeyError as err:
                out.append(f"{f.name}: export file {exp.file!r} of {p!r} uses a field the pattern lacks: {err}")
                continue
            if not rel.startswith(RESTORABLE_PREFIXES):
                out.append(f"{f.name}: {p!r} exports {exp.file!r}, outside what recover restores")
            if exp.sysctl and sysctl.sysctl_file(p) != "/" + rel:
                out.append(f"{f.name}: sysctl {p!r} is exported as {exp.file!r}, not where sysctl writes it")
        return out

    def check(self) -> None:
        """Raises:
        ActuatorError: the declarations are inconsistent (every problem listed).
        """
        problems = self.problems()
        if problems:
            raise ActuatorError("inconsistent knob families:\n" + "\n".join(f"  - {p}" for p in problems))


REGISTRY = Registry(FAMILIES)
REGISTRY.check()
