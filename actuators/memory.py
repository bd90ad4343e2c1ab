"""Kernel samepage merging (TuneD's plugin_vm): ``ksm.run``.

Only 0 (stop merging; merged pages stay merged) and 1 (merge) are allowed:
2 would unmerge every shared page at once, a memory spike no trial should
cause. THP lives in :mod:`actuators.thp`. :data:`FAMILY` declares the ``ksm`` family.
"""

from __future__ import annotations

from actuators.base import Domain, IntFileKnob, Knob
from actuators.family import Env, Family, KnobExport, TunedOption
from actuators.sysroot import SysRoot

__all__ = ["FAMILY", "KSM", "KsmFamily", "KsmKnob", "ksm_knob"]

#: name -> fixed relative file
KSM: dict[str, str] = {"ksm.run": "sys/kernel/mm/ksm/run"}


class KsmKnob(IntFileKnob):
    """A KSM control file holding one integer."""


def ksm_knob(name: str, root: SysRoot) -> KsmKnob:
    """The knob for a name of :data:`KSM` (KeyError otherwise)."""
    return KsmKnob(
        root=root,
        rel=KSM[name],
        name=name,
        domain=Domain("int", 0, 1, step=1),
        risk="medium",
        scope="host",
        needs_root=True,
        description="Kernel samepage merging: 1 runs ksmd, 0 stops it (2, unmerge-all, is refused).",
    )


class KsmFamily(Family):
    """``ksm.*``: kernel samepage merging (a TuneD ``[sysfs]`` setting)."""

    name = "ksm"
    patterns = tuple(KSM)
    exports = {n: KnobExport(file="/" + rel, tuned=TunedOption("sysfs")) for n, rel in KSM.items()}

    def resolve(self, name: str, env: Env) -> Knob:
        return ksm_knob(name, env.root)


FAMILY = KsmFamily()
