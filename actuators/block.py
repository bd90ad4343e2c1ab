"""Block device queue settings (TuneD's plugin_disk): ``block.<dev>.*``.

A device name is only ever one of the entries of ``<root>/sys/block`` (the
catalog matches it against the listing); the leaf maps to a fixed file.
"""

from __future__ import annotations

import os
from typing import Any

from actuators.base import Domain, IntFileKnob, SelectorKnob, selector_choices
from actuators.sysroot import SysRoot

__all__ = ["BLOCK_LEAVES", "ReadAheadKnob", "SchedulerKnob", "block_knob"]

#: leaf -> file under sys/block/<dev>/
BLOCK_LEAVES: dict[str, str] = {"read_ahead_kb": "queue/read_ahead_kb", "scheduler": "queue/scheduler"}


def _page_kib() -> int:
    return max(1, os.sysconf("SC_PAGE_SIZE") // 1024)


class ReadAheadKnob(IntFileKnob):
    """``read_ahead_kb``: the kernel keeps whole pages, so values are rounded down to a page."""

    def normalise(self, value: Any) -> int:
        v = int(super().normalise(value))
        return v - v % _page_kib()


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
