"""The knob catalog: the only way from a name to a knob.

Names map through fixed tables to files; a block device name must be one of
the entries of ``<root>/sys/block``, an IRQ number one of ``<root>/proc/irq``,
a network namespace one of ``<root>/run/netns``. Anything else is :class:`UnknownKnob`,
with the allowed names in the message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from actuators.affinity import AffinityKnob, PlacementKnob
from actuators.base import Knob
from actuators.block import BLOCK_LEAVES, block_knob
from actuators.cgroup import VcpusKnob, WorkloadCgroup
from actuators.cpu import CPUFREQ, cpufreq_knob
from actuators.errors import UnknownKnob
from actuators.instance import DmiAdapter, InstanceTypeKnob
from actuators.irq import irq_affinity_knob, irq_default_knob, irq_numbers
from actuators.kernel import KERNEL, kernel_knob
from actuators.memory import KSM, ksm_knob
from actuators.net import NET_NAMES, net_knob, netns_root
from actuators.nic import NIC_LEAVES, interfaces, nic_knob
from actuators.process import PROCESS, process_knob
from actuators.sizing import SIZING, sizing_knob
from actuators.sysctl import SYSCTLS, sysctl_knob
from actuators.sysroot import SysRoot
from actuators.thp import THP, thp_knob

__all__ = ["Catalog", "KnobContext"]

_BLOCK_PREFIX = "block."
_IRQ_PREFIX = "irq."
_IRQ_DEFAULT = "irq.default_affinity"
_NIC_PREFIX = "nic."
_INSTANCE = "instance.type"


@dataclass(frozen=True)
class KnobContext:
    """Binds cgroup- and process-scoped knobs to a run's workload.

    ``netns``: the name of a network namespace (``ip netns add NAME``); the
    per-namespace ``net.*`` knobs then act inside it, the host-wide ones are
    unavailable. None: the namespace of this process.
    """

    cgroup: WorkloadCgroup | None = None
    pids: Callable[[], list[int]] | None = None
    netns: str | None = None
    #: instance types a plan may choose (the priced catalogue, given by the caller)
    instance_types: tuple[str, ...] = ()


class Catalog:
    """Every knob novatune knows, bound to a root and a workload context."""

    def __init__(self, root: SysRoot | None = None, context: KnobContext | None = None) -> None:
        self.root = root if root is not None else SysRoot()
        self.context = context if context is not None else KnobContext()

    def patterns(self) -> list[str]:
        """Allowed names; ``<dev>`` stands for an entry of ``/sys/block``, ``<n>`` for one of ``/proc/irq``."""
        return [
            *SYSCTLS,
            *KERNEL,
            *NET_NAMES,
            *THP,
            *KSM,
            *(f"block.<dev>.{leaf}" for leaf in BLOCK_LEAVES),
            *CPUFREQ,
            _IRQ_DEFAULT,
            "irq.<n>.affinity",
            "sizing.vcpus",
            *SIZING,
            "affinity.cpus",
            "affinity.placement",
            *PROCESS,
            *(f"nic.<iface>.{leaf}" for leaf in NIC_LEAVES),
            _INSTANCE,
        ]

    def devices(self) -> list[str]:
        """Entries of ``<root>/sys/block``."""
        return self.root.listdir("sys/block")

    def _unknown(self, name: object, why: str) -> UnknownKnob:
        devs = ", ".join(self.devices()) or "none"
        return UnknownKnob(
            f"unknown knob {name!r} ({why}); allowed: {', '.join(self.patterns())} (devices here: {devs})"
        )

    def get(self, name: str) -> Knob:
        """The concrete knob called ``name``.

        Raises:
            UnknownKnob: not a string, contains ``..``, ``/``, NUL or whitespace,
                not in the catalog, or names a device not in ``sys/block``.
        """
        if not isinstance(name, str) or not name:
            raise self._unknown(name, "not a name")
        if ".." in name or "/" in name or "\x00" in name or any(c.isspace() for c in name):
            raise self._unknown(name, "names may not contain '..', '/', NUL or whitespace")
        if name in SYSCTLS:
            return sysctl_knob(name, self.root)
        if name in KERNEL:
            return kernel_knob(name, self.root)
        if name in NET_NAMES:
            ns = self.context.netns
            return net_knob(name, self.root if ns is None else netns_root(self.root, ns))
        if name in THP:
            return thp_knob(name, self.root)
        if name in KSM:
            return ksm_knob(name, self.root)
        if name in CPUFREQ:
            return cpufreq_knob(name, self.root)
        if name == _IRQ_DEFAULT:
            return irq_default_knob(self.root)
        if name.startswith(_IRQ_PREFIX):
            irq, _, leaf = name[len(_IRQ_PREFIX):].partition(".")
            if leaf != "affinity":
                raise self._unknown(name, "IRQ knobs are irq.default_affinity and irq.<n>.affinity")
            listed = {n: n for n in irq_numbers(self.root)}
            if irq not in listed:
                raise self._unknown(name, f"no IRQ {irq!r} in /proc/irq")
            return irq_affinity_knob(listed[irq], self.root)
        if name == "sizing.vcpus":
            return VcpusKnob(cgroup=self.context.cgroup)
        if name in SIZING:
            return sizing_knob(name, self.context.cgroup)
        if name == "affinity.cpus":
            return AffinityKnob(pids=self.context.pids, root=self.root)
        if name == "affinity.placement":
            return PlacementKnob(pids=self.context.pids, root=self.root)
        if name in PROCESS:
            return process_knob(name, self.context.pids)
        if name == _INSTANCE:
            return InstanceTypeKnob(adapter=DmiAdapter(self.root), choices=self.context.instance_types)
        if name.startswith(_NIC_PREFIX):
            iface, _, leaf = name[len(_NIC_PREFIX):].rpartition(".")
            try:
                return nic_knob(iface, leaf, netns=self.context.netns)
            except UnknownKnob as err:
                raise self._unknown(name, str(err)) from None
        if name.startswith(_BLOCK_PREFIX):
            dev, _, leaf = name[len(_BLOCK_PREFIX):].rpartition(".")
            if leaf not in BLOCK_LEAVES:
                raise self._unknown(name, f"block knobs are {', '.join(BLOCK_LEAVES)}")
            listed = {d: d for d in self.devices()}
            if dev not in listed:
                raise self._unknown(name, f"no block device {dev!r}")
            return block_knob(listed[dev], leaf, self.root)
        raise self._unknown(name, "not in the catalog")

    def knobs(self) -> list[Knob]:
        """Every concrete knob on this machine (block knobs only where the file exists, one per numbered IRQ).

        Knobs that cannot be used here are included; ``available()`` says why.
        """
        out: list[Knob] = [self.get(n) for n in (*SYSCTLS, *KERNEL, *NET_NAMES, *THP, *KSM)]
        for dev in self.devices():
            for leaf, rel in BLOCK_LEAVES.items():
                if self.root.exists(f"sys/block/{dev}/{rel}"):
                    out.append(block_knob(dev, leaf, self.root))
        out.extend(self.get(n) for n in CPUFREQ)
        out.append(self.get(_IRQ_DEFAULT))
        out.extend(irq_affinity_knob(n, self.root) for n in irq_numbers(self.root))
        out.extend(self.get(n) for n in ("sizing.vcpus", *SIZING, "affinity.cpus", "affinity.placement", *PROCESS))
        if self.root.is_host:
            out.extend(nic_knob(i, leaf, netns=self.context.netns) for i in interfaces(self.context.netns) for leaf in NIC_LEAVES)
        out.append(self.get(_INSTANCE))
        return out
