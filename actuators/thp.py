"""Transparent huge pages (TuneD's plugin_vm): ``thp.enabled``, ``thp.defrag``.

The choices are the words of ``/sys/kernel/mm/transparent_hugepage/enabled``;
the bracketed one is current; the bare word is written. ``thp.defrag`` only
matters while huge pages are in use (``thp.enabled`` always or madvise): a
study does not propose it otherwise. :data:`FAMILY` declares the ``thp`` family.
"""

from __future__ import annotations

from actuators.base import Domain, Knob, SelectorKnob, selector_choices
from actuators.family import Condition, Env, Family, KnobExport, TunedOption
from actuators.sysroot import SysRoot

__all__ = ["FAMILY", "THP", "ThpFamily", "ThpKnob", "thp_knob"]

#: name -> fixed relative file
THP: dict[str, str] = {
    "thp.enabled": "sys/kernel/mm/transparent_hugepage/enabled",
    "thp.defrag": "sys/kernel/mm/transparent_hugepage/defrag",
}

_DESCRIPTIONS: dict[str, str] = {
    "thp.enabled": "Transparent huge pages for anonymous memory: always, madvise or never.",
    "thp.defrag": "How hard a huge-page fault compacts memory: always, defer, defer+madvise, madvise, never.",
}


class ThpKnob(SelectorKnob):
    """A THP selector file."""


def thp_knob(name: str, root: SysRoot) -> ThpKnob:
    """The knob for a name of :data:`THP` (KeyError otherwise)."""
    rel = THP[name]
    return ThpKnob(
        root=root,
        rel=rel,
        name=name,
        domain=Domain("categorical", choices=selector_choices(root, rel)),
        risk="medium",
        scope="host",
        needs_root=True,
        description=_DESCRIPTIONS[name],
    )


class ThpFamily(Family):
    """``thp.*``: transparent huge pages (TuneD's ``[vm]`` plugin)."""

    name = "thp"
    patterns = tuple(THP)
    # no huge pages: nothing to defragment
    conditions = (Condition("thp.defrag", "thp.enabled", ("always", "madvise")),)
    exports = {
        "thp.enabled": KnobExport(file="/" + THP["thp.enabled"], tuned=TunedOption("vm", "transparent_hugepages")),
        "thp.defrag": KnobExport(file="/" + THP["thp.defrag"], tuned=TunedOption("vm", "transparent_hugepage.defrag")),
    }

    def resolve(self, name: str, env: Env) -> Knob:
        return thp_knob(name, env.root)


FAMILY = ThpFamily()
