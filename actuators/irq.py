"""Interrupt affinity (TuneD's plugin_irqbalance / plugin_scheduler): ``irq.*``.

``irq.default_affinity`` is ``/proc/irq/default_smp_affinity`` (a hex mask,
the CPUs a newly requested IRQ may use); ``irq.<N>.affinity`` is
``/proc/irq/<N>/smp_affinity_list`` (a CPU list). ``<N>`` is matched against
the listing of ``<root>/proc/irq``. The logical value is a canonical CPU list
(``"0-1,3"``); a set/list of CPU numbers is accepted too. The hard bound: a
non-empty subset of the online CPUs. Some IRQs refuse a new affinity (EIO on
many VMs): ``apply`` then raises :class:`ActuatorError` with the kernel's reason.

For a study the domain offers all online CPUs and each single CPU as choices.
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral
from typing import Any

from actuators.base import Domain, FileKnob
from actuators.errors import ActuatorError, OutOfBounds
from actuators.sysroot import SysRoot

__all__ = [
    "IrqAffinityKnob",
    "format_cpulist",
    "irq_affinity_knob",
    "irq_default_knob",
    "irq_numbers",
    "online_cpus",
    "parse_cpulist",
]

DEFAULT_REL = "proc/irq/default_smp_affinity"
_ONLINE = "sys/devices/system/cpu/online"


def parse_cpulist(text: str) -> set[int]:
    """``"0-2,5"`` -> ``{0, 1, 2, 5}``.

    Raises:
        ValueError: malformed.
    """
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            raise ValueError(text)
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(text)
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a or b > 65535:
            raise ValueError(text)
        out.update(range(a, b + 1))
    return out


def format_cpulist(cpus: Iterable[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"``."""
    runs: list[list[int]] = []
    for c in sorted(set(cpus)):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def _parse_mask(raw: str) -> set[int]:
    bits = int(raw.strip().replace(",", ""), 16)
    return {i for i in range(bits.bit_length()) if bits >> i & 1}


def online_cpus(root: SysRoot) -> set[int]:
    """Online CPUs from ``sys/devices/system/cpu/online``; empty when unreadable."""
    try:
        return parse_cpulist(root.read(_ONLINE))
    except (ActuatorError, ValueError):
        return set()


def irq_numbers(root: SysRoot) -> list[str]:
    """Numbered entries of ``<root>/proc/irq``, in numeric order."""
    return sorted((d for d in root.listdir("proc/irq") if d.isdigit()), key=int)


class IrqAffinityKnob(FileKnob):
    """An IRQ affinity file; ``mask`` files hold hex, the others a CPU list."""

    def __init__(self, *, mask: bool, online: set[int], **kw: Any) -> None:
        super().__init__(**kw)
        self.mask = mask
        self.online = frozenset(online)

    def available(self) -> str | None:
        if not self.online:
            return f"cannot read the online CPUs ({self.root.path(_ONLINE)})"
        return super().available()

    def parse(self, raw: str) -> str:
        return format_cpulist(_parse_mask(raw) if self.mask else parse_cpulist(raw))

    def format(self, value: Any) -> str:
        cpus = parse_cpulist(value)
        return format(sum(1 << c for c in cpus), "x") if self.mask else value

    def normalise(self, value: Any) -> str:
        allowed = f"allowed: a non-empty subset of the online CPUs {format_cpulist(self.online) or '(none)'}"
        if isinstance(value, str):
            try:
                cpus = parse_cpulist(value)
            except ValueError:
                raise OutOfBounds(f"{self.name}: {value!r} is not a CPU list; {allowed}") from None
        elif isinstance(value, (set, frozenset, list, tuple)) and all(
            isinstance(c, Integral) and not isinstance(c, bool) for c in value
        ):
            cpus = {int(c) for c in value}
        else:
            raise OutOfBounds(f"{self.name}: {value!r} is not a CPU list; {allowed}")
        if not cpus or not cpus <= self.online:
            raise OutOfBounds(f"{self.name}: {value!r} is outside the hard bounds; {allowed}")
        return format_cpulist(cpus)


def _choices(online: set[int]) -> tuple[str, ...]:
    if not online:
        return ()
    return tuple(dict.fromkeys([format_cpulist(online), *(str(c) for c in sorted(online))]))


def irq_default_knob(root: SysRoot) -> IrqAffinityKnob:
    """``irq.default_affinity``."""
    online = online_cpus(root)
    return IrqAffinityKnob(
        mask=True,
        online=online,
        root=root,
        rel=DEFAULT_REL,
        name="irq.default_affinity",
        domain=Domain("categorical", choices=_choices(online)),
        risk="medium",
        scope="host",
        needs_root=True,
        description="CPUs a newly requested IRQ may be delivered to (CPU list; written as a hex mask).",
    )


def irq_affinity_knob(irq: str, root: SysRoot) -> IrqAffinityKnob:
    """``irq.<N>.affinity``; ``irq`` must come from :func:`irq_numbers`."""
    online = online_cpus(root)
    return IrqAffinityKnob(
        mask=False,
        online=online,
        root=root,
        rel=f"proc/irq/{irq}/smp_affinity_list",
        name=f"irq.{irq}.affinity",
        domain=Domain("categorical", choices=_choices(online)),
        risk="high",
        scope="host",
        needs_root=True,
        description=f"CPUs IRQ {irq} may be delivered to (CPU list; some IRQs refuse changes).",
    )
