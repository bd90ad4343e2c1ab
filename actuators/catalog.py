"""The knob catalog: the only way from a name to a knob, through the registry of families.

Each family (:mod:`actuators.registry`) resolves its own names through fixed
tables and directory listings: a block device name must be one of the entries
of ``<root>/sys/block``, an IRQ number one of ``<root>/proc/irq``, a network
namespace one of ``<root>/run/netns``. Anything else is :class:`UnknownKnob`,
with the allowed names in the message.
"""

from __future__ import annotations

from actuators.base import Knob
from actuators.errors import ProtectedInterface, UnknownKnob
from actuators.family import Env, KnobContext
from actuators.registry import REGISTRY, Registry
from actuators.sysroot import SysRoot

__all__ = ["Catalog", "KnobContext"]


class Catalog:
    """Every knob novatune knows, bound to a root and a workload context.

    Args:
        root: where ``/proc`` and ``/sys`` live (``/`` by default).
        context: the run's workload (cgroup, pids, network namespace).
        registry: the families (all of novatune's by default).
    """

    def __init__(
        self, root: SysRoot | None = None, context: KnobContext | None = None, *, registry: Registry = REGISTRY
    ) -> None:
        self.root = root if root is not None else SysRoot()
        self.context = context if context is not None else KnobContext()
        self.registry = registry

    @property
    def env(self) -> Env:
        """What the families bind knobs to."""
        return Env(self.root, self.context)

    def patterns(self) -> list[str]:
        """Allowed names; ``<dev>`` stands for an entry of ``/sys/block``, ``<n>`` for one of ``/proc/irq``."""
        return self.registry.patterns()

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
                not in the catalog, or names a device, IRQ or interface that is
                not here (the family's reason in the message).
        """
        if not isinstance(name, str) or not name:
            raise self._unknown(name, "not a name")
        if ".." in name or "/" in name or "\x00" in name or any(c.isspace() for c in name):
            raise self._unknown(name, "names may not contain '..', '/', NUL or whitespace")
        family = self.registry.family_of(name)
        if family is None:
            raise self._unknown(name, "not in the catalog")
        try:
            return family.resolve(name, self.env)
        except ProtectedInterface:
            raise  # its own message: a knob that exists, refused by a rule (not an unknown name)
        except UnknownKnob as err:
            raise self._unknown(name, str(err)) from None

    def knobs(self) -> list[Knob]:
        """Every concrete knob on this machine (block knobs only where the file exists, one per numbered IRQ).

        Knobs that cannot be used here are included; ``available()`` says why.
        """
        env = self.env
        return [k for family in self.registry.families for k in family.knobs(env)]
