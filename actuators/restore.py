"""One restore path: from a journaled knob intent to the code of the family that put the change there.

Session restore (:class:`actuators.ChangeSession`), crash recovery
(:func:`actuators.recover`) and ``novatune rollback`` all restore a change
through :func:`restore_intent`, from the journal record alone (no knob
object). The record's ``restore`` kind picks the restorer (each family
declares the kinds its knobs journal, see ``Family.restore_kinds``; the
registry checks a restorer exists for each):

* ``file`` (sysctl, THP, KSM, block, IRQ, cgroup files): the raw old bytes
  written back under ``root``; a target bound to a network namespace
  (``netns:NAME:<rel>``) is restored inside it;
* ``files`` (cpufreq): each file of the set, in reverse order;
* ``affinity`` / ``process``: per thread, only where the recorded create time matches;
* ``nic``: ethtool, in the recorded namespace.

Safety: before any restorer runs, :func:`restore_intent` re-validates the
record through the same knob tables and hard bounds as a fresh apply
(:func:`actuators.vetting.vet_intent`): a record that names anything else is
:class:`~actuators.vetting.Refused` and never written, one made under another
root is skipped (:class:`Skipped`), and one whose device, cgroup or namespace
is gone is reported ``gone``. The restorers keep their own checks (a file
target under :data:`~actuators.sysroot.RESTORABLE_PREFIXES`, threads by create
time) behind it. The family that owns a record's knob is :func:`owner_of`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from actuators.affinity import restore_affinity
from actuators.errors import ActuatorError, UnsafePath
from actuators.family import Family
from actuators.net import netns_root
from actuators.nic import restore_nic
from actuators.process import restore_process
from actuators.records import KnobIntent
from actuators.sysroot import RESTORABLE_PREFIXES, SysRoot
from actuators.vetting import Refused, Skipped, check_root, vet_intent

__all__ = ["RESTORERS", "Refused", "Skipped", "check_root", "check_target", "owner_of", "restore_intent"]

Restorer = Callable[[KnobIntent, SysRoot], str]


def check_target(target: Any) -> str:
    """``target`` if it is a root-relative file under the restorable trees.

    Raises:
        UnsafePath: anything else.
    """
    if not isinstance(target, str) or not target.startswith(RESTORABLE_PREFIXES):
        raise UnsafePath(f"refused target {target!r}: outside {', '.join(RESTORABLE_PREFIXES)}")
    return target


def owner_of(intent: KnobIntent) -> Family | None:
    """The family that owns the record's knob (None for a name no family knows)."""
    from actuators.registry import REGISTRY

    return REGISTRY.family_of(intent.knob) if intent.knob is not None else None


def _netns_names() -> list[str]:
    return os.listdir("/run/netns") if os.path.isdir("/run/netns") else []


def _affinity(intent: KnobIntent, root: SysRoot) -> str:
    return f"{restore_affinity(list(intent.old or []))} thread(s)"


def _process(intent: KnobIntent, root: SysRoot) -> str:
    return f"{restore_process(str(intent.knob), list(intent.old or []))} thread(s)"


def _nic(intent: KnobIntent, root: SysRoot) -> str:
    target = str(intent.target)
    ns = target.split(":", 1)[0]
    if ns and ns not in _netns_names():
        return "gone"  # the namespace, and its interfaces, are gone
    restore_nic(target, intent.old)
    return "ok"


def _files(intent: KnobIntent, root: SysRoot) -> str:
    """Each file of the set in reverse order; a failed one does not stop the others (all are reported)."""
    check_root(intent.root, root)
    old = intent.old
    if not isinstance(old, dict):
        raise ActuatorError(f"no raw old contents recorded for {intent.target}")
    errors = []
    for rel, raw in reversed(list(old.items())):
        target = check_target(rel)
        try:
            root.restore(target, raw)
        except ActuatorError as err:
            errors.append(str(err))
    if errors:
        raise ActuatorError(f"{intent.knob}: restore failed: " + "; ".join(errors))
    return "ok"


def _file(intent: KnobIntent, root: SysRoot) -> str:
    check_root(intent.root, root)
    target = intent.target
    if isinstance(target, str) and target.startswith("netns:"):
        _, ns, rel = target.split(":", 2)
        ns_root = netns_root(root, ns)
        if ns_root.nsfile is None:
            return "gone"  # the namespace, and its settings, are gone
        ns_root.restore(check_target(rel), str(intent.old))
        return "ok"
    target = check_target(target)
    old = intent.old
    if not isinstance(old, str):
        raise ActuatorError(f"no raw old content recorded for {target}")
    if not root.exists(target) and target.startswith(("sys/block/", "sys/fs/cgroup/")):
        # the device or the cgroup is gone, and its setting with it
        parent = root.path(target).parent
        if not parent.exists() or target.startswith("sys/fs/cgroup/"):
            return "gone"
    root.restore(target, old)
    return "ok"


#: restore kind (a Token's ``kind``, journaled as ``restore``) -> its restorer
RESTORERS: dict[str, Restorer] = {
    "file": _file, "files": _files, "affinity": _affinity, "process": _process, "nic": _nic,
}


def restore_intent(intent: KnobIntent, root: SysRoot) -> str:
    """Put back what ``intent`` recorded, from the record alone, under ``root``, once it passed
    :func:`~actuators.vetting.vet_intent` (the one check every replayed record goes through).

    Returns:
        ``"ok"``, ``"gone"`` (the device, cgroup or namespace went away with its
        setting) or ``"N thread(s)"`` (process and affinity changes).
    Raises:
        Refused: the record names something a fresh apply would not write (nothing written).
        Skipped: recorded under another root.
        UnsafePath: a file target outside the restorable trees.
        ActuatorError, OSError: the restore failed (nothing claims it restored).
    """
    if vet_intent(intent, root).gone is not None:
        return "gone"
    return RESTORERS[intent.restore](intent, root)
