"""``instance.type``: the VM size, behind an adapter. For now novatune only plans it.

Resizing a VM is the cloud provider's operation, done from outside the VM, so
the knob is never applied here: ``available()`` says so, and ``prepare`` refuses.
What it offers is the current type (from the adapter) and the catalogue of
types a plan may choose from; ``experiments`` prices the move with
``optimizer.instance.plan_resize`` and the catalogue in ``collectors.pricing``.
:data:`FAMILY` declares the ``instance`` family (nothing to restore, nothing to export).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

from actuators.base import Domain, Knob, Token
from actuators.errors import ActuatorError, KnobUnavailable
from actuators.family import Env, Family
from actuators.sysroot import SysRoot

__all__ = ["FAMILY", "DmiAdapter", "InstanceAdapter", "InstanceFamily", "InstanceTypeKnob"]

_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")


class InstanceAdapter(ABC):
    """How novatune learns (and, one day, changes) the size of the VM it runs on.

    Implementations must be cheap and side-effect free in :meth:`current`.
    """

    name: str = "adapter"

    @abstractmethod
    def current(self) -> str | None:
        """The current instance type, None when it cannot be told."""

    def resize(self, target: str) -> None:
        """Change the VM to ``target``. Raises :class:`KnobUnavailable`: plan only for now."""
        raise KnobUnavailable(f"{self.name}: resizing to {target!r} is plan-only in novatune")


class DmiAdapter(InstanceAdapter):
    """EC2 (Nitro) writes the instance type into the DMI product name; read it from ``/sys``."""

    name = "dmi"

    def __init__(self, root: SysRoot | None = None) -> None:
        self.root = root if root is not None else SysRoot()

    def current(self) -> str | None:
        rel = "sys/devices/virtual/dmi/id/product_name"
        try:
            if not self.root.exists(rel):
                return None
            word = self.root.read(rel).strip()
        except ActuatorError:
            return None
        return word if _TYPE_RE.fullmatch(word) else None


class InstanceTypeKnob(Knob):
    """``instance.type``: plan-only; choices are the priced catalogue given by the caller."""

    def __init__(self, *, adapter: InstanceAdapter | None = None, choices: tuple[str, ...] = ()) -> None:
        super().__init__(
            name="instance.type",
            domain=Domain("categorical", choices=choices),
            risk="high",
            scope="vm",
            needs_root=False,
            description="Instance type / VM size (plan only: the price delta of a resize).",
        )
        self.adapter = adapter if adapter is not None else DmiAdapter()

    def available(self) -> str | None:
        return (
            "plan only: a VM is resized by its cloud provider, not from inside; "
            "`novatune plan` shows what would change and the price delta"
        )

    def read(self) -> str:
        cur = self.adapter.current()
        if cur is None:
            raise KnobUnavailable(
                f"{self.name}: the {self.adapter.name} adapter cannot tell this machine's instance type")
        return cur

    def prepare(self, value: Any) -> Token:
        self.validate(value)
        raise KnobUnavailable(f"{self.name}: {self.available()}")

    def commit(self, token: Token) -> None:
        raise KnobUnavailable(f"{self.name}: {self.available()}")

    def restore(self, token: Token) -> None:
        """Nothing was ever applied, so there is nothing to put back."""


class InstanceFamily(Family):
    """``instance.type``: the VM size, plan only."""

    name = "instance"
    patterns = ("instance.type",)
    restore_kinds = ()

    def resolve(self, name: str, env: Env) -> Knob:
        return InstanceTypeKnob(adapter=DmiAdapter(env.root), choices=env.context.instance_types)


FAMILY = InstanceFamily()
