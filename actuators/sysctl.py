"""``vm.*`` sysctls under ``/proc/sys/vm`` (TuneD's plugin_sysctl / plugin_vm).

The dirty ratios are related: ``vm.dirty_background_ratio`` must stay below
``vm.dirty_ratio``. Each ratio validates against the other's current value (or
the value a batch will give it: ``assume``); ``ChangeSession.apply_many``
orders a batch so the relation holds after every single write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actuators.base import Domain, IntFileKnob
from actuators.errors import ActuatorError, OutOfBounds
from actuators.sysroot import SysRoot

__all__ = ["SYSCTLS", "SysctlKnob", "DirtyRatioKnob", "sysctl_knob"]


@dataclass(frozen=True)
class _Spec:
    rel: str
    low: int
    high: int
    risk: str
    description: str


#: name -> fixed relative file and hard bounds. Names never become paths.
SYSCTLS: dict[str, _Spec] = {
    "vm.swappiness": _Spec(
        "proc/sys/vm/swappiness", 0, 200, "low", "How eagerly the kernel swaps anonymous memory (0-200)."
    ),
    "vm.dirty_ratio": _Spec(
        "proc/sys/vm/dirty_ratio", 5, 80, "medium",
        "Percent of reclaimable memory that may be dirty before writers are throttled.",
    ),
    "vm.dirty_background_ratio": _Spec(
        "proc/sys/vm/dirty_background_ratio", 1, 50, "medium",
        "Percent of reclaimable memory dirty before background writeback starts; below vm.dirty_ratio.",
    ),
}

_LOWER, _UPPER = "vm.dirty_background_ratio", "vm.dirty_ratio"


class SysctlKnob(IntFileKnob):
    """An integer sysctl; ``sysctl_key`` is its name (a sysctl.d file can carry it)."""


class DirtyRatioKnob(SysctlKnob):
    """``vm.dirty_ratio`` / ``vm.dirty_background_ratio``: background < ratio, always."""

    def _partner_value(self, partner: str, assume: Mapping[str, Any] | None) -> int | None:
        if assume is not None and partner in assume:
            return int(SYSCTLS[partner].low if assume[partner] is None else assume[partner])
        spec = SYSCTLS[partner]
        try:
            v = int(self.root.read(spec.rel).split()[0])
        except (ActuatorError, ValueError, IndexError):
            return None
        # 0 means the *_bytes variant is in use: the ratio is not known
        return v if v > 0 else None

    def validate(self, value: Any, *, assume: Mapping[str, Any] | None = None) -> Any:
        v = self.normalise(value)
        if self.name == _UPPER:
            lower = self._partner_value(_LOWER, assume)
            if lower is not None and v <= lower:
                raise OutOfBounds(
                    f"{_UPPER}: {value!r} must stay above {_LOWER} ({lower}); lower {_LOWER} first"
                )
        else:
            upper = self._partner_value(_UPPER, assume)
            if upper is not None and v >= upper:
                raise OutOfBounds(
                    f"{_LOWER}: {value!r} must stay below {_UPPER} ({upper}); raise {_UPPER} first"
                )
        return v


def sysctl_knob(name: str, root: SysRoot) -> SysctlKnob:
    """The knob for a name of :data:`SYSCTLS` (KeyError otherwise)."""
    spec = SYSCTLS[name]
    cls = DirtyRatioKnob if name in (_LOWER, _UPPER) else SysctlKnob
    return cls(
        root=root,
        rel=spec.rel,
        name=name,
        domain=Domain("int", spec.low, spec.high, step=1),
        risk=spec.risk,  # type: ignore[arg-type]
        scope="host",
        needs_root=True,
        unit="%" if "ratio" in name else "",
        description=spec.description,
        sysctl_key=name,
    )
