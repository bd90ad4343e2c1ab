"""``affinity.cpus`` and ``affinity.placement``: how many CPUs the workload's threads run on, laid out how.

``n`` CPUs are picked from this process's allowed set by a placement
(compact by default: the first ``n``), applied with ``os.sched_setaffinity``
to every thread (``/proc/<pid>/task/*``) of every workload pid. The topology
is read through :mod:`collectors.topology`; the layout itself is pure planning,
:mod:`optimizer.placement`'s. The token keeps each thread's old mask and create
time, so a restore never touches a reused tid. :data:`FAMILY` declares the
``affinity`` family (deployed as systemd ``CPUAffinity`` when compact).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from actuators.base import Domain, Knob, Token
from actuators.errors import ActuatorError, OutOfBounds
from actuators.family import Env, Family, KnobExport, SystemdOption
from actuators.journal import process_ctime
from actuators.sysroot import SysRoot
from collectors.errors import CollectorError
from collectors.passive.allowed import NEVER, never_target
from collectors.topology import read_cpu_topology
from optimizer.placement import PLACEMENTS, layout, placement_of

__all__ = [
    "FAMILY", "AffinityFamily", "AffinityKnob", "PlacementKnob", "checked_pids", "cpu_topology", "restore_affinity",
    "same_thread", "threads_of",
]


def checked_pids(knob: str, pids: list[int]) -> list[int]:
    """``pids``, the processes a process-scoped knob is about to act on, unless one of them is never a
    target (pid 1, a kernel thread, novatune itself: :func:`collectors.passive.allowed.never_target`),
    whatever bound them.

    Raises:
        ActuatorError: naming the process and the rule; nothing was changed.
    """
    reason = never_target(pids)
    if reason is not None:
        raise ActuatorError(f"{knob}: refused: {reason}; {NEVER}")
    return pids

def cpu_topology(root: SysRoot | None = None) -> dict[int, tuple[int, int]]:
    """CPU -> (package, core) of the online CPUs whose topology is known, read by collectors' topology reader.

    Plain data for :func:`optimizer.placement.layout` (a CPU missing here counts
    as its own core on package 0).
    """
    try:
        return read_cpu_topology(root=root if root is not None else SysRoot()).core_map()
    except CollectorError:  # the root is not a directory
        return {}


def threads_of(pid: int) -> list[int]:
    """Thread ids of process ``pid`` (``[]`` if it is gone)."""
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{int(pid)}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return []


def same_thread(entry: dict[str, Any]) -> bool:
    """The recorded ``tid`` still runs and is the same thread (its create time matches)."""
    now = process_ctime(int(entry["tid"]))
    return now is not None and entry.get("ctime") is not None and abs(now - float(entry["ctime"])) < 0.05


def restore_affinity(entries: list[dict[str, Any]]) -> int:
    """Put back each recorded thread's mask; threads that are gone (or reused) are skipped.

    Returns:
        how many threads were restored.
    Raises:
        ActuatorError: a live thread refused its old mask (the others are still done).
    """
    done, errors = 0, []
    for e in entries:
        if not same_thread(e):
            continue
        try:
            os.sched_setaffinity(int(e["tid"]), [int(c) for c in e["cpus"]])
            done += 1
        except ProcessLookupError:
            continue
        except OSError as err:
            errors.append(f"tid {e['tid']}: {err.strerror or err}")
    if errors:
        raise ActuatorError("affinity restore failed: " + "; ".join(errors))
    return done


class AffinityKnob(Knob):
    """``affinity.cpus`` bound to the pids of a run's workload."""

    def __init__(self, *, pids: Callable[[], list[int]] | None, root: SysRoot | None = None) -> None:
        super().__init__(
            name="affinity.cpus",
            domain=Domain("int", 1, os.cpu_count() or 1, step=1),
            risk="low",
            scope="process",
            needs_root=False,
            unit="CPUs",
            description="Number of CPUs the workload may run on, laid out by affinity.placement (compact by default).",
        )
        self._pids = pids
        self._root = root
        self._topo: dict[int, tuple[int, int]] | None = None

    @property
    def topology(self) -> dict[int, tuple[int, int]]:
        if self._topo is None:
            self._topo = cpu_topology(self._root)
        return self._topo

    def current_mask(self) -> list[int]:
        """The CPU list of the first workload process."""
        pids = self.pids()
        if not pids:
            raise ActuatorError(f"{self.name}: no workload process to read")
        try:
            return sorted(os.sched_getaffinity(pids[0]))
        except OSError as err:
            raise ActuatorError(f"{self.name}: cannot read affinity of {pids[0]}: {err}") from err

    def placement_of(self, mask: list[int]) -> str:
        """The placement that lays ``len(mask)`` CPUs out as ``mask``; ``custom`` when none does."""
        return placement_of(mask, self.allowed(), self.topology)

    def target_mask(self, value: Any) -> list[int]:
        """The CPU list a (normalised) value means now."""
        p = self.placement_of(self.current_mask()) if self.pids() else "compact"
        return layout(int(value), "compact" if p == "custom" else p, self.allowed(), self.topology)

    @staticmethod
    def allowed() -> list[int]:
        """CPUs this process may use, sorted (the pool placement picks from)."""
        return sorted(os.sched_getaffinity(0))


    def pids(self) -> list[int]:
        """Workload pids (``[]`` without a context). Raises: ActuatorError: one is never a target."""
        return checked_pids(self.name, [int(p) for p in self._pids()]) if self._pids is not None else []

    def available(self) -> str | None:
        if self._pids is None:
            return "no workload processes in this context (affinity.* binds to the processes a run starts)"
        if not self.pids():
            return "the workload has no running process"
        return None

    def normalise(self, value: Any) -> int:
        n = int(super().normalise(value))
        if n > len(self.allowed()):
            raise OutOfBounds(f"{self.name}: {value!r} CPUs, but only {len(self.allowed())} are allowed here")
        return n

    def read(self) -> Any:
        return len(self.current_mask())

    def prepare(self, value: Any) -> Token:
        n = self.validate(value)
        self.check_available()
        pids = self.pids()
        entries = []
        for pid in pids:
            for tid in threads_of(pid):
                try:
                    cpus = sorted(os.sched_getaffinity(tid))
                except ProcessLookupError:
                    continue
                entries.append({"pid": pid, "tid": tid, "cpus": cpus, "ctime": process_ctime(tid)})
        return Token(
            knob=self.name,
            scope=self.scope,
            target="pids:" + ",".join(map(str, pids)),
            old=entries,
            new=self.target_mask(n),
            value=n,
            kind="affinity",
        )

    def commit(self, token: Token) -> None:
        errors = []
        for e in token.old:
            try:
                os.sched_setaffinity(int(e["tid"]), token.new)
            except ProcessLookupError:
                continue  # the thread ended
            except OSError as err:
                errors.append(f"tid {e['tid']}: {err.strerror or err}")
        if errors:
            raise ActuatorError(f"{self.name}: " + "; ".join(errors))

    def verify(self, value: Any) -> bool:
        want = set(self.target_mask(self.normalise(value)))
        seen = 0
        for pid in self.pids():
            for tid in threads_of(pid):
                try:
                    if os.sched_getaffinity(tid) != want:
                        return False
                    seen += 1
                except ProcessLookupError:
                    continue  # ended meanwhile
                except OSError:
                    return False
        return seen > 0

    def restore(self, token: Token) -> None:
        restore_affinity(token.old)


class PlacementKnob(AffinityKnob):
    """``affinity.placement``: how the workload's current CPU count is laid out on the topology.

    Applied after ``affinity.cpus`` in a set (the family's ``apply_order``), so the
    pair means "N CPUs, placed this way" whatever order a study lists them in.
    """

    def __init__(self, *, pids: Callable[[], list[int]] | None, root: SysRoot | None = None) -> None:
        super().__init__(pids=pids, root=root)
        Knob.__init__(
            self,
            name="affinity.placement",
            domain=Domain("categorical", choices=PLACEMENTS),
            risk="low",
            scope="process",
            needs_root=False,
            description="compact (lowest CPUs), spread (one thread per core across packages) "
            "or smt-siblings (both threads of a core together).",
        )

    def normalise(self, value: Any) -> Any:
        return Knob.normalise(self, value)

    def read(self) -> str:
        return self.placement_of(self.current_mask())

    def same(self, a: Any, b: Any) -> bool:
        return a == b

    def target_mask(self, value: Any) -> list[int]:
        return layout(len(self.current_mask()), str(value), self.allowed(), self.topology)


def _first_cpus(value: Any) -> str:
    n = int(value)
    return "0" if n == 1 else f"0-{n - 1}"


_COMPACT = ("affinity.placement", "compact")


class AffinityFamily(Family):
    """``affinity.*``: how many CPUs the workload's threads run on, and how they are laid out."""

    name = "affinity"
    patterns = ("affinity.cpus", "affinity.placement")
    apply_order = {"affinity.placement": 1}  # "N CPUs, placed this way": the count first
    restore_kinds = ("affinity",)
    workload = True
    exports = {
        "affinity.cpus": KnobExport(systemd=SystemdOption(
            "CPUAffinity", _first_cpus, when=_COMPACT, why_not="which CPUs depends on the target's topology",
            note=lambda v: f"CPUAffinity: affinity.cpus={int(v)} as the first {int(v)} CPU(s) (compact placement)")),
        # compact with a count: the count's CPUAffinity says it all
        "affinity.placement": KnobExport(systemd=SystemdOption(None, when=_COMPACT, carried_by="affinity.cpus")),
    }

    def resolve(self, name: str, env: Env) -> Knob:
        cls = AffinityKnob if name == "affinity.cpus" else PlacementKnob
        return cls(pids=env.context.pids, root=env.root)


FAMILY = AffinityFamily()
