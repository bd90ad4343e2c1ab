"""``affinity.cpus``: how many CPUs the workload's threads may run on.

Compact placement: ``n`` CPUs are the first ``n`` of this process's allowed set
(sorted), applied with ``os.sched_setaffinity`` to every thread
(``/proc/<pid>/task/*``) of every workload pid. The token keeps each thread's
old mask and create time, so a restore never touches a reused tid.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from actuators.base import Domain, Knob, Token
from actuators.errors import ActuatorError, OutOfBounds
from actuators.journal import process_ctime

__all__ = ["AffinityKnob", "restore_affinity", "threads_of"]


def threads_of(pid: int) -> list[int]:
    """Thread ids of process ``pid`` (``[]`` if it is gone)."""
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{int(pid)}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return []


def _same_thread(entry: dict[str, Any]) -> bool:
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
        if not _same_thread(e):
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

    def __init__(self, *, pids: Callable[[], list[int]] | None) -> None:
        super().__init__(
            name="affinity.cpus",
            domain=Domain("int", 1, os.cpu_count() or 1, step=1),
            risk="low",
            scope="process",
            needs_root=False,
            unit="CPUs",
            description="Number of CPUs the workload may run on (compact: the lowest allowed CPUs).",
        )
        self._pids = pids

    @staticmethod
    def allowed() -> list[int]:
        """CPUs this process may use, sorted (the pool placement picks from)."""
        return sorted(os.sched_getaffinity(0))

    def cpus_for(self, n: int) -> list[int]:
        """The compact set of ``n`` CPUs."""
        return self.allowed()[:n]

    def pids(self) -> list[int]:
        """Workload pids (``[]`` without a context)."""
        return [int(p) for p in self._pids()] if self._pids is not None else []

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

    def read(self) -> int:
        pids = self.pids()
        if not pids:
            raise ActuatorError(f"{self.name}: no workload process to read")
        try:
            return len(os.sched_getaffinity(pids[0]))
        except OSError as err:
            raise ActuatorError(f"{self.name}: cannot read affinity of {pids[0]}: {err}") from err

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
            new=self.cpus_for(n),
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
        want = set(self.cpus_for(self.normalise(value)))
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
