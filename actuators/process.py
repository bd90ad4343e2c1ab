"""Per-thread scheduling knobs of the workload's processes: policy, nice, I/O priority.

Each knob acts on every thread (``/proc/<pid>/task/*``) of every pid the run's
:class:`~actuators.catalog.KnobContext` returns. The token keeps each thread's
old setting with its create time, so a restore never touches a reused tid
(the same rule as ``affinity.cpus``). Threads that end meanwhile are skipped.

* ``sched.policy`` — ``other`` | ``batch`` | ``idle`` (never a real-time class).
* ``sched.nice`` — -20..19; going below the current value needs CAP_SYS_NICE.
* ``ioprio.class`` — ``best-effort`` | ``idle`` (never real-time);
  ``ioprio.level`` — 0..7 within best-effort (the idle class has no level: a
  study proposes a level with best-effort only).

:data:`FAMILY` declares the ``process`` family (``sched.*`` and ``ioprio.*``),
deployed as the systemd scheduling options of the workload's unit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psutil

from actuators.affinity import checked_pids, same_thread, threads_of
from actuators.base import Domain, Knob, Token
from actuators.errors import ActuatorError
from actuators.family import Condition, Env, Family, KnobExport, SystemdOption, one_line
from actuators.journal import process_ctime

__all__ = ["FAMILY", "PROCESS", "ProcessFamily", "ProcessKnob", "process_knob", "restore_process"]

_POLICIES = {"other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}
_POLICY_NAMES = {v: k for k, v in _POLICIES.items()}
_IOCLASSES = {"best-effort": psutil.IOPRIO_CLASS_BE, "idle": psutil.IOPRIO_CLASS_IDLE}


def _get_policy(tid: int) -> Any:
    return os.sched_getscheduler(tid)


def _set_policy(tid: int, raw: Any) -> None:
    os.sched_setscheduler(tid, int(raw), os.sched_param(0))


def _get_nice(tid: int) -> Any:
    return os.getpriority(os.PRIO_PROCESS, tid)


def _set_nice(tid: int, raw: Any) -> None:
    os.setpriority(os.PRIO_PROCESS, tid, int(raw))


def _get_ioprio(tid: int) -> Any:
    cls, level = psutil.Process(tid).ionice()
    return [int(cls), int(level)]


def _set_ioprio(tid: int, raw: Any) -> None:
    cls, level = int(raw[0]), int(raw[1])
    p = psutil.Process(tid)
    if cls in (psutil.IOPRIO_CLASS_IDLE, psutil.IOPRIO_CLASS_NONE):
        p.ionice(cls)
    else:
        p.ionice(cls, level)


#: name -> (domain, getter, setter, logical value of a raw setting, description)
_SPECS: dict[str, tuple[Domain, Callable[[int], Any], Callable[[int, Any], None], Callable[[Any], Any], str]] = {
    "sched.policy": (
        Domain("categorical", choices=tuple(_POLICIES)), _get_policy, _set_policy,
        lambda raw: _POLICY_NAMES.get(int(raw), f"policy-{raw}"),
        "CPU scheduling policy of the workload's threads (never real-time).",
    ),
    "sched.nice": (
        Domain("int", -20, 19, step=1), _get_nice, _set_nice, int,
        "Nice value of the workload's threads (-20 highest priority, 19 lowest).",
    ),
    "ioprio.class": (
        Domain("categorical", choices=tuple(_IOCLASSES)), _get_ioprio, _set_ioprio,
        lambda raw: {v: k for k, v in _IOCLASSES.items()}.get(int(raw[0]), "none"),
        "I/O scheduling class of the workload's threads (never real-time).",
    ),
    "ioprio.level": (
        Domain("int", 0, 7, step=1), _get_ioprio, _set_ioprio, lambda raw: int(raw[1]),
        "I/O priority level within best-effort (0 highest, 7 lowest).",
    ),
}
PROCESS = tuple(_SPECS)
_SETTERS = {name: spec[2] for name, spec in _SPECS.items()}


def _each_thread(entries: list[dict[str, Any]], set_one: Callable[[dict[str, Any]], None], what: str) -> int:
    """``set_one(entry)`` for every recorded thread; ended threads are skipped, failures collected.

    Returns:
        how many threads were set.
    Raises:
        ActuatorError: a live thread refused (all the others were still done).
    """
    done, errors = 0, []
    for e in entries:
        try:
            set_one(e)
            done += 1
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
        except (OSError, psutil.Error) as err:
            errors.append(f"tid {e['tid']}: {err}")
    if errors:
        raise ActuatorError(f"{what}: " + "; ".join(errors))
    return done


def restore_process(knob: str, entries: list[dict[str, Any]]) -> int:
    """Put back each recorded thread's old setting of ``knob``; gone or reused threads are skipped.

    Returns:
        how many threads were restored.
    Raises:
        ActuatorError: unknown knob, or a live thread refused (the others are still done).
    """
    setter = _SETTERS.get(knob)
    if setter is None:
        raise ActuatorError(f"no process restore for {knob!r}; known: {', '.join(PROCESS)}")
    live = [e for e in entries if same_thread(e)]
    return _each_thread(live, lambda e: setter(int(e["tid"]), e["raw"]), f"{knob} restore failed")


class ProcessKnob(Knob):
    """One of :data:`PROCESS`, bound to the pids of a run's workload."""

    def __init__(self, name: str, *, pids: Callable[[], list[int]] | None) -> None:
        domain, self._get, self._set, self._logical, description = _SPECS[name]
        super().__init__(
            name=name, domain=domain, risk="medium" if name == "sched.nice" else "low",
            scope="process", needs_root=False, description=description,
        )
        self._pids = pids

    def _threads(self) -> list[tuple[int, int]]:
        pids = checked_pids(self.name, [int(p) for p in self._pids()]) if self._pids is not None else []
        return [(pid, tid) for pid in pids for tid in threads_of(pid)]

    def available(self) -> str | None:
        if self._pids is None:
            return f"no workload processes in this context ({self.name} binds to the processes a run starts)"
        if not self._threads():
            return "the workload has no running process"
        return None

    def _raw_for(self, value: Any, current: Any) -> Any:
        if self.name == "sched.policy":
            return _POLICIES[value]
        if self.name == "ioprio.class":
            return [_IOCLASSES[value], current[1] if value == "best-effort" else 0]
        if self.name == "ioprio.level":
            return [psutil.IOPRIO_CLASS_BE, int(value)]
        return int(value)

    def read(self) -> Any:
        for _, tid in self._threads():
            try:
                return self._logical(self._get(tid))
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
            except (OSError, psutil.Error) as err:
                raise ActuatorError(f"{self.name}: cannot read thread {tid}: {err}") from err
        raise ActuatorError(f"{self.name}: no workload thread to read")

    def prepare(self, value: Any) -> Token:
        v = self.validate(value)
        self.check_available()
        entries = []
        for pid, tid in self._threads():
            try:
                raw = self._get(tid)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
            entries.append({"pid": pid, "tid": tid, "raw": raw, "ctime": process_ctime(tid)})
        pids = sorted({e["pid"] for e in entries})
        return Token(knob=self.name, scope=self.scope, target="pids:" + ",".join(map(str, pids)),
                     old=entries, new=v, value=v, kind="process")

    def commit(self, token: Token) -> None:
        _each_thread(token.old, lambda e: self._set(int(e["tid"]), self._raw_for(token.value, e["raw"])), self.name)

    def verify(self, value: Any) -> bool:
        want = self.normalise(value)
        seen = 0
        for _, tid in self._threads():
            try:
                if self._logical(self._get(tid)) != want:
                    return False
                seen += 1
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        return seen > 0

    def restore(self, token: Token) -> None:
        restore_process(self.name, token.old)


def process_knob(name: str, pids: Callable[[], list[int]] | None) -> ProcessKnob:
    """The knob for a name of :data:`PROCESS` (KeyError otherwise)."""
    if name not in _SPECS:
        raise KeyError(name)
    return ProcessKnob(name, pids=pids)


def _int_text(value: Any) -> str:
    return str(int(value))


class ProcessFamily(Family):
    """``sched.*`` and ``ioprio.*``: per-thread scheduling of the workload's processes."""

    name = "process"
    patterns = PROCESS
    # the idle class has no level
    conditions = (Condition("ioprio.level", "ioprio.class", ("best-effort",)),)
    restore_kinds = ("process",)
    workload = True
    exports = {
        "sched.policy": KnobExport(systemd=SystemdOption("CPUSchedulingPolicy", one_line)),
        "sched.nice": KnobExport(systemd=SystemdOption("Nice", _int_text)),
        "ioprio.class": KnobExport(systemd=SystemdOption("IOSchedulingClass", one_line)),
        "ioprio.level": KnobExport(systemd=SystemdOption("IOSchedulingPriority", _int_text)),
    }

    def resolve(self, name: str, env: Env) -> Knob:
        return process_knob(name, env.context.pids)


FAMILY = ProcessFamily()
