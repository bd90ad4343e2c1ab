"""Everything that changes the system: knobs, their hard bounds, the journal, restore.

One module per knob family (TuneD style): :mod:`~actuators.sysctl`,
:mod:`~actuators.thp`, :mod:`~actuators.block`, :mod:`~actuators.cgroup`
(``sizing.vcpus``), :mod:`~actuators.affinity`. Runners change knobs only
through :class:`ChangeSession`, which journals (fsync) before each write;
:func:`recover` restores what a killed run left open.
"""

from actuators.base import Change, Domain, Knob, Token
from actuators.catalog import Catalog, KnobContext
from actuators.cgroup import WorkloadCgroup
from actuators.errors import ActuatorError, KnobUnavailable, OutOfBounds, UnknownKnob
from actuators.journal import Journal
from actuators.recover import RecoverReport, recover
from actuators.session import ChangeSession
from actuators.sysroot import SysRoot

__all__ = [
    "ActuatorError",
    "Catalog",
    "Change",
    "ChangeSession",
    "Domain",
    "Journal",
    "Knob",
    "KnobContext",
    "KnobUnavailable",
    "OutOfBounds",
    "RecoverReport",
    "SysRoot",
    "Token",
    "UnknownKnob",
    "WorkloadCgroup",
    "recover",
]
