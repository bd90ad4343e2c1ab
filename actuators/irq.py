"""Interrupt affinity (TuneD's plugin_irqbalance / plugin_scheduler): ``irq.*``.

``irq.default_affinity`` is ``/proc/irq/default_smp_affinity`` (a hex mask,
the CPUs a newly requested IRQ may use); ``irq.<N>.affinity`` is
``/proc/irq/<N>/smp_affinity_list`` (a CPU list). ``<N>`` is matched against
the listing of ``<root>/proc/irq``. The logical value is a canonical CPU list
(``"0-1,3"``); a set/list of CPU numbers is accepted too. The hard bound: a
non-empty subset of the online CPUs. Some IRQs refuse a new affinity (EIO on
many VMs): ``apply`` then raises :class:`ActuatorError` with the kernel's reason.

For a study the domain offers all online CPUs and each single CPU as choices.
TuneD 2.20 cannot carry these knobs (its scheduler plugin applies
``default_irq_smp_affinity`` only together with ``isolated_cores`` and has no
per-IRQ option; ``/proc/irq`` is outside ``[sysfs]``); the shell export writes
the files. :data:`FAMILY` declares the ``irq`` family.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from actuators.base import Domain, FileKnob, Knob
from actuators.errors import OutOfBounds, UnknownKnob
from actuators.family import Env, Family, KnobExport
from actuators.sysroot import SysRoot
from collectors.kernelfiles import format_cpu_list, format_cpu_mask, parse_cpu_list, parse_cpu_mask
from collectors.topology import online_cpus

__all__ = ["FAMILY", "IrqAffinityKnob", "IrqFamily", "irq_affinity_knob", "irq_default_knob", "irq_numbers"]

DEFAULT_REL = "proc/irq/default_smp_affinity"
_ONLINE = "sys/devices/system/cpu/online"


def irq_numbers(root: SysRoot) -> list[str]:
    """Numbered entries of ``<root>/proc/irq``, in numeric order."""
    return sorted((d for d in root.listdir("proc/irq") if d.isdigit()), key=int)


class IrqAffinityKnob(FileKnob):
    """An IRQ affinity file; ``mask`` files hold hex, the others a CPU list."""

    def __init__(self, *, mask: bool, online: tuple[int, ...], **kw: Any) -> None:
        super().__init__(**kw)
        self.mask = mask
        self.online = frozenset(online)

    def available(self) -> str | None:
        if not self.online:
            return f"cannot read the online CPUs ({self.root.path(_ONLINE)})"
        return super().available()

    def parse(self, raw: str) -> str:
        return format_cpu_list(parse_cpu_mask(raw) if self.mask else parse_cpu_list(raw, strict=True))

    def format(self, value: Any) -> str:
        cpus = parse_cpu_list(value, strict=True)
        return format_cpu_mask(cpus) if self.mask else value

    def normalise(self, value: Any) -> str:
        allowed = f"allowed: a non-empty subset of the online CPUs {format_cpu_list(self.online) or '(none)'}"
        if isinstance(value, str):
            try:
                cpus = set(parse_cpu_list(value, strict=True))
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
        return format_cpu_list(cpus)


def _choices(online: tuple[int, ...]) -> tuple[str, ...]:
    if not online:
        return ()
    return tuple(dict.fromkeys([format_cpu_list(online), *(str(c) for c in sorted(online))]))


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


def _mask_text(value: Any) -> str:
    """A CPU list as the hex mask ``default_smp_affinity`` takes.

    Raises:
        ValueError: not a CPU list.
    """
    return format_cpu_mask(parse_cpu_list(str(value), strict=True))


class IrqFamily(Family):
    """``irq.default_affinity`` and ``irq.<n>.affinity`` for each numbered entry of ``/proc/irq``."""

    name = "irq"
    prefix = "irq."
    patterns = ("irq.default_affinity", "irq.<n>.affinity")
    fields = {"n": "[0-9]+"}
    exports = {
        "irq.default_affinity": KnobExport(file="/" + DEFAULT_REL, file_value=_mask_text),
        "irq.<n>.affinity": KnobExport(file="/proc/irq/{n}/smp_affinity_list"),
    }

    def resolve(self, name: str, env: Env) -> Knob:
        if name == "irq.default_affinity":
            return irq_default_knob(env.root)
        irq, _, leaf = name[len("irq."):].partition(".")
        if leaf != "affinity":
            raise UnknownKnob("IRQ knobs are irq.default_affinity and irq.<n>.affinity")
        listed = {n: n for n in irq_numbers(env.root)}
        if irq not in listed:
            raise UnknownKnob(f"no IRQ {irq!r} in /proc/irq")
        return irq_affinity_knob(listed[irq], env.root)

    def knobs(self, env: Env) -> list[Knob]:
        """The default affinity and one knob per numbered IRQ."""
        return [irq_default_knob(env.root), *(irq_affinity_knob(n, env.root) for n in irq_numbers(env.root))]


FAMILY = IrqFamily()
