"""Block device queue settings (TuneD's plugin_disk): ``block.<dev>.*``.

A device name is only ever one of the entries of ``<root>/sys/block`` (the
family matches it against the listing); the leaf maps to a fixed file. A new
scheduler resets ``nr_requests``, so a set is written scheduler first
(the family's ``apply_order``, also the shell export's order).
:data:`FAMILY` declares the ``block`` family.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from actuators.base import Domain, IntFileKnob, Knob, Risk, SelectorKnob, selector_choices
from actuators.errors import UnknownKnob
from actuators.family import Env, Family, KnobExport, TunedOption
from actuators.sysroot import SysRoot

__all__ = ["BLOCK_LEAVES", "FAMILY", "BlockFamily", "BlockIntKnob", "ReadAheadKnob", "SchedulerKnob", "block_knob"]

#: leaf -> file under sys/block/<dev>/
BLOCK_LEAVES: dict[str, str] = {
    "read_ahead_kb": "queue/read_ahead_kb",
    "scheduler": "queue/scheduler",
    "nr_requests": "queue/nr_requests",
    "rq_affinity": "queue/rq_affinity",
    "nomerges": "queue/nomerges",
    "wbt_lat_usec": "queue/wbt_lat_usec",
}


@dataclass(frozen=True)
class _IntLeaf:
    low: int
    high: int
    risk: Risk
    unit: str
    description: str


#: integer leaves: hard bounds (the kernel may refuse more, e.g. nr_requests above the tag depth)
_INT_LEAVES: dict[str, _IntLeaf] = {
    "nr_requests": _IntLeaf(
        4, 4096, "medium", "", "Request queue depth of {dev} (the device may refuse more than its tags)."
    ),
    "rq_affinity": _IntLeaf(0, 2, "low", "", "Completion CPU of {dev}: 0 any, 1 same group, 2 the submitting CPU."),
    "nomerges": _IntLeaf(0, 2, "low", "", "Request merging of {dev}: 0 all, 1 simple only, 2 none."),
    "wbt_lat_usec": _IntLeaf(
        0, 1_000_000, "low", "us", "Writeback throttling latency target of {dev} in microseconds (0 disables)."
    ),
}


def _page_kib() -> int:
    return max(1, os.sysconf("SC_PAGE_SIZE") // 1024)


class ReadAheadKnob(IntFileKnob):
    """``read_ahead_kb``: the kernel keeps whole pages, so values are rounded down to a page."""

    def normalise(self, value: Any) -> int:
        v = int(super().normalise(value))
        return v - v % _page_kib()


class BlockIntKnob(IntFileKnob):
    """An integer queue attribute (``nr_requests``, ``rq_affinity``, ``nomerges``, ``wbt_lat_usec``)."""


class SchedulerKnob(SelectorKnob):
    """The I/O scheduler; choices are the device's own list."""


def block_knob(dev: str, leaf: str, root: SysRoot) -> IntFileKnob | SelectorKnob:
    """The knob ``block.<dev>.<leaf>``; ``dev`` must come from the ``sys/block`` listing.

    Raises:
        KeyError: unknown leaf.
    """
    rel = f"sys/block/{dev}/{BLOCK_LEAVES[leaf]}"
    name = f"block.{dev}.{leaf}"
    if leaf == "read_ahead_kb":
        return ReadAheadKnob(
            root=root,
            rel=rel,
            name=name,
            domain=Domain("int", 0, 16384, step=_page_kib()),
            risk="low",
            scope="device",
            needs_root=True,
            unit="KiB",
            description=f"Read-ahead of {dev} in KiB (rounded down to whole pages).",
        )
    if leaf in _INT_LEAVES:
        spec = _INT_LEAVES[leaf]
        return BlockIntKnob(
            root=root,
            rel=rel,
            name=name,
            domain=Domain("int", spec.low, spec.high, step=1),
            risk=spec.risk,
            scope="device",
            needs_root=True,
            unit=spec.unit,
            description=spec.description.format(dev=dev),
        )
    return SchedulerKnob(
        root=root,
        rel=rel,
        name=name,
        domain=Domain("categorical", choices=selector_choices(root, rel)),
        risk="medium",
        scope="device",
        needs_root=True,
        description=f"I/O scheduler of {dev}; choices are the ones the device offers.",
    )


#: ``block.@target.<leaf>``: the study's block target, its own loop device or the disk under its fio file
#: (bound by the run, see :class:`KnobContext`)
TARGET = "@target"
#: the schedulers a loop device may offer, for a ``block.@target.scheduler`` not bound yet (the bound
#: device's own list is checked when the run binds it)
_KNOWN_SCHEDULERS = ("none", "mq-deadline", "kyber", "bfq")


def target_knob(leaf: str, env: Env) -> Knob:
    """``block.@target.<leaf>``: the knob of the run's block target (``env.context.block_target``, a device
    of ``sys/block`` the run chose: its loop device or the disk under its fio file, never a spec's text);
    before a run binds one, a stand-in with the catalog's hard bounds that is never available.

    Raises:
        UnknownKnob: the bound device is not a device of ``sys/block``.
    """
    dev = env.context.block_target
    if dev is None:
        knob = block_knob(TARGET, leaf, env.root)
        if leaf == "scheduler":
            knob = SchedulerKnob(root=env.root, rel=knob.rel, name=knob.name, risk="medium", scope="device",
                                 domain=Domain("categorical", choices=_KNOWN_SCHEDULERS), needs_root=True,
                                 description="I/O scheduler of the study's block target.")
        return knob
    if dev not in env.root.listdir("sys/block"):
        raise UnknownKnob(f"the study's block target {dev!r} is not a device of /sys/block here")
    return block_knob(dev, leaf, env.root)


#: the order a set of queue files is written in: a new scheduler resets nr_requests, so it goes first
WRITE_ORDER = ("scheduler", "read_ahead_kb", "nr_requests", "rq_affinity", "nomerges", "wbt_lat_usec")
#: leaves TuneD's [disk] plugin sets (the others are [sysfs] files)
_TUNED_DISK = {"scheduler": "elevator", "read_ahead_kb": "readahead"}  # TuneD: a plain readahead number is KiB


class BlockFamily(Family):
    """``block.<dev>.<leaf>``: queue settings of each device of ``/sys/block`` (TuneD's ``[disk]`` plugin)."""

    name = "block"
    prefix = "block."
    patterns = tuple(f"block.<dev>.{leaf}" for leaf in BLOCK_LEAVES)
    fields = {"dev": r"[A-Za-z0-9_.:-]{1,32}"}
    apply_order = {f"block.<dev>.{leaf}": 1 + i for i, leaf in enumerate(WRITE_ORDER)}
    exports = {
        f"block.<dev>.{leaf}": KnobExport(
            file=f"/sys/block/{{dev}}/{rel}",
            tuned=TunedOption("disk", _TUNED_DISK[leaf]) if leaf in _TUNED_DISK else TunedOption("sysfs"),
        )
        for leaf, rel in BLOCK_LEAVES.items()
    }

    def resolve(self, name: str, env: Env) -> Knob:
        dev, _, leaf = name[len("block."):].rpartition(".")
        if leaf not in BLOCK_LEAVES:
            raise UnknownKnob(f"block knobs are {', '.join(BLOCK_LEAVES)}")
        if dev == TARGET:
            return target_knob(leaf, env)
        listed = {d: d for d in env.root.listdir("sys/block")}
        if dev not in listed:
            raise UnknownKnob(f"no block device {dev!r}")
        return block_knob(listed[dev], leaf, env.root)

    def knobs(self, env: Env) -> list[Knob]:
        """Each leaf of each device of ``sys/block`` whose file exists."""
        return [
            block_knob(dev, leaf, env.root)
            for dev in env.root.listdir("sys/block")
            for leaf, rel in BLOCK_LEAVES.items()
            if env.root.exists(f"sys/block/{dev}/{rel}")
        ]


FAMILY = BlockFamily()
