"""``vm.*`` sysctls under ``/proc/sys/vm`` (TuneD's plugin_sysctl / plugin_vm).

:class:`SysctlKnob` and :func:`int_sysctl` also serve the other sysctl
families (:mod:`actuators.kernel`, :mod:`actuators.net`).

``vm.min_free_kbytes`` has bounds computed from ``MemTotal`` (under the root):
never below half the kernel's own default (``sqrt(16 * MemTotal_kB)`` clamped
to [128, 262144]) nor above 5 % of RAM: too little reserve risks atomic
allocation failures, too much an early OOM.

The dirty ratios are related: ``vm.dirty_background_ratio`` must stay below
``vm.dirty_ratio`` (the family's :class:`~actuators.family.Ordering`). Each
ratio validates against the other's current value (or the value a batch will
give it: ``assume``); ``ChangeSession.apply_many`` orders a batch so the
relation holds after every single write, and a study's search space proposes
only ordered pairs.

:data:`FAMILY` declares the ``vm`` family; :func:`sysctl_file` is where
``sysctl -w`` writes a key (the shell export's file for a sysctl key).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actuators.base import Domain, IntFileKnob, Knob, Risk, Scope
from actuators.errors import ActuatorError, OutOfBounds
from actuators.family import Env, Family, KnobExport, Ordering
from actuators.sysroot import SysRoot
from collectors.kernelfiles import parse_meminfo

__all__ = [
    "FAMILY", "SYSCTLS", "MinFreeKbytesKnob", "OrderedSysctlKnob", "SysctlKnob", "SysctlSpec", "VmFamily", "int_sysctl",
    "min_free_bounds", "sysctl_export", "sysctl_file", "sysctl_knob",
]


@dataclass(frozen=True)
class SysctlSpec:
    """Where an integer sysctl lives, its hard bounds, risk and meaning."""

    rel: str
    low: int
    high: int
    risk: Risk
    description: str


#: name -> fixed relative file and hard bounds. Names never become paths.
SYSCTLS: dict[str, SysctlSpec] = {
    "vm.swappiness": SysctlSpec(
        "proc/sys/vm/swappiness", 0, 200, "low", "How eagerly the kernel swaps anonymous memory (0-200)."
    ),
    "vm.dirty_ratio": SysctlSpec(
        "proc/sys/vm/dirty_ratio", 5, 80, "medium",
        "Percent of reclaimable memory that may be dirty before writers are throttled.",
    ),
    "vm.dirty_background_ratio": SysctlSpec(
        "proc/sys/vm/dirty_background_ratio", 1, 50, "medium",
        "Percent of reclaimable memory dirty before background writeback starts; below vm.dirty_ratio.",
    ),
    "vm.dirty_expire_centisecs": SysctlSpec(
        "proc/sys/vm/dirty_expire_centisecs", 100, 6000, "low",
        "Age (1/100 s) after which dirty data is old enough to be written back.",
    ),
    "vm.dirty_writeback_centisecs": SysctlSpec(
        "proc/sys/vm/dirty_writeback_centisecs", 100, 6000, "low",
        "Interval (1/100 s) between writeback flusher wake-ups (0, which disables them, is refused).",
    ),
    "vm.vfs_cache_pressure": SysctlSpec(
        "proc/sys/vm/vfs_cache_pressure", 10, 1000, "low",
        "Preference for reclaiming dentry/inode caches vs page cache (100 = fair; 0 is refused).",
    ),
    "vm.min_free_kbytes": SysctlSpec(
        "proc/sys/vm/min_free_kbytes", 128, 262144, "high",
        "Memory (KiB) kept free for atomic allocations; bounds follow MemTotal (see module docs).",
    ),
    "vm.zone_reclaim_mode": SysctlSpec(
        "proc/sys/vm/zone_reclaim_mode", 0, 1, "medium",
        "1: reclaim on the local NUMA node before allocating remotely (write/swap modes are refused).",
    ),
    "vm.stat_interval": SysctlSpec(
        "proc/sys/vm/stat_interval", 1, 10, "low", "Seconds between VM statistics updates."
    ),
}


#: pairs of sysctls that must stay ordered (lower < upper), whatever order a batch writes them in
ORDERINGS: tuple[Ordering, ...] = (Ordering("vm.dirty_background_ratio", "vm.dirty_ratio"),)


class SysctlKnob(IntFileKnob):
    """An integer sysctl; ``sysctl_key`` is its name (a sysctl.d file can carry it)."""


class OrderedSysctlKnob(SysctlKnob):
    """A ``vm.*`` sysctl in one of the family's :data:`ORDERINGS`: the relation holds on every validate.

    The partner's value is the one a batch gives it (``assume``) or, else, the
    one its file holds (0 there means the ``*_bytes`` variant is in use: the
    ratio is not known and the relation not checked).
    """

    def _partner_value(self, partner: str, assume: Mapping[str, Any] | None) -> int | None:
        if assume is not None and partner in assume:
            return int(SYSCTLS[partner].low if assume[partner] is None else assume[partner])
        spec = SYSCTLS[partner]
        try:
            v = int(self.root.read(spec.rel).split()[0])
        except (ActuatorError, ValueError, IndexError):
            return None
        return v if v > 0 else None

    def validate(self, value: Any, *, assume: Mapping[str, Any] | None = None) -> Any:
        v = self.normalise(value)
        for o in ORDERINGS:
            if self.name == o.upper:
                lower = self._partner_value(o.lower, assume)
                if lower is not None and v <= lower:
                    raise OutOfBounds(
                        f"{o.upper}: {value!r} must stay above {o.lower} ({lower}); lower {o.lower} first")
            elif self.name == o.lower:
                upper = self._partner_value(o.upper, assume)
                if upper is not None and v >= upper:
                    raise OutOfBounds(
                        f"{o.lower}: {value!r} must stay below {o.upper} ({upper}); raise {o.upper} first")
        return v


class MinFreeKbytesKnob(SysctlKnob):
    """``vm.min_free_kbytes``: unavailable when ``MemTotal`` cannot be read (no safe bounds then)."""

    def available(self) -> str | None:
        if min_free_bounds(self.root) is None:
            return f"cannot read MemTotal from {self.root.path('proc/meminfo')}: no safe bounds"
        return super().available()


def min_free_bounds(root: SysRoot) -> tuple[int, int] | None:
    """``(low, high)`` for ``vm.min_free_kbytes`` from ``MemTotal``, or None if unknown."""
    try:
        total = parse_meminfo(root.read("proc/meminfo"))["MemTotal"] // 1024
    except (ActuatorError, KeyError):
        return None
    default = min(max(math.isqrt(total * 16), 128), 262144)
    low, high = max(default // 2, 128), total * 5 // 100
    return (low, high) if high > low else None


def int_sysctl(
    cls: type[SysctlKnob], *, name: str, rel: str, low: int, high: int, risk: Risk, scope: Scope,
    description: str, unit: str = "", root: SysRoot,
) -> SysctlKnob:
    """An integer sysctl knob; ``sysctl_key`` is its name."""
    return cls(
        root=root,
        rel=rel,
        name=name,
        domain=Domain("int", low, high, step=1),
        risk=risk,
        scope=scope,
        needs_root=True,
        unit=unit,
        description=description,
        sysctl_key=name,
    )


def sysctl_knob(name: str, root: SysRoot) -> SysctlKnob:
    """The knob for a name of :data:`SYSCTLS` (KeyError otherwise)."""
    spec = SYSCTLS[name]
    ordered = any(name in (o.lower, o.upper) for o in ORDERINGS)
    cls: type[SysctlKnob] = OrderedSysctlKnob if ordered else SysctlKnob
    low, high = spec.low, spec.high
    if name == "vm.min_free_kbytes":
        cls = MinFreeKbytesKnob
        bounds = min_free_bounds(root)
        if bounds is not None:
            low, high = bounds
    unit = {"vm.min_free_kbytes": "KiB", "vm.stat_interval": "s"}.get(name, "")
    if "ratio" in name:
        unit = "%"
    elif "centisecs" in name:
        unit = "cs"
    return int_sysctl(
        cls, name=name, rel=spec.rel, low=low, high=high, risk=spec.risk,
        scope="host", description=spec.description, unit=unit, root=root,
    )


def sysctl_file(key: str) -> str | None:
    """The file ``sysctl -w KEY=...`` writes (``vm.swappiness`` -> ``/proc/sys/vm/swappiness``), for exports.

    None for a key that is not a plain dotted name (an empty, ``.`` or ``..`` part, or a ``/``).
    """
    if any(not part or part in (".", "..") for part in key.split(".")) or "/" in key:
        return None
    return "/proc/sys/" + key.replace(".", "/")


def sysctl_export(rel: str, **kw: Any) -> KnobExport:
    """The export mapping of a sysctl knob whose file is ``rel`` (sysctl.d, TuneD ``[sysctl]``, the shell's file)."""
    return KnobExport(file="/" + rel, sysctl=True, **kw)


class VmFamily(Family):
    """``vm.*``: the memory-management sysctls of :data:`SYSCTLS`."""

    name = "vm"
    patterns = tuple(SYSCTLS)
    orderings = ORDERINGS
    exports = {n: sysctl_export(spec.rel) for n, spec in SYSCTLS.items()}

    def resolve(self, name: str, env: Env) -> Knob:
        return sysctl_knob(name, env.root)


FAMILY = VmFamily()
