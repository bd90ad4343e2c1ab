"""Beyond CPU time, from what Linux gives without instrumenting the target.

* **Per-thread accounting** (:func:`snapshot`, :func:`thread_deltas`): ``/proc/PID/task/*/schedstat`` (on-CPU
  ns, run-queue wait ns, time slices), ``/proc/PID/task/*/status`` (voluntary / nonvoluntary context
  switches) and ``/proc/PID/io``, read at a window's start and end; the deltas go into ``meta.threads``
  keyed by the OS thread id (the ``TID`` of py-spy's ``thread (TID): name`` root frames), plus a
  ``"process"`` entry with the sums and the I/O counters. A thread born inside the window counts from 0; one
  that ended inside it is not reported.
* **Off-CPU classes** (:func:`classify`, :func:`offcpu_shares`): in wall mode py-spy samples idle threads
  too, without marking them idle; a sample is put in a class by its leaf Python frame — the function and
  file (``threading.py``'s ``Condition.wait``, ``queue.py``'s ``get``, ``socket.py``) and, when that does
  not decide, the frame's source line (read with :mod:`linecache`, regular ``.py`` files only): ``lock
  wait``, ``socket I/O``, ``file I/O``, ``sleep``, ``queue get``, ``other wait`` (``waitpid``, ``join``,
  ``input``...), or ``cpu`` (nothing says it waits). A heuristic: a line that reads a file is "file I/O"
  whether or not the read blocked.
* :func:`bottleneck_hints`: the classes and per-thread figures as sentences, most expensive first.
"""

from __future__ import annotations

import linecache
import os
import re
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collectors.profiler.model import Frame, Profile

__all__ = [
    "CLASSES",
    "WAIT_CLASSES",
    "ProcSnapshot",
    "TaskStat",
    "bottleneck_hints",
    "classify",
    "offcpu_shares",
    "snapshot",
    "thread_deltas",
]

LOCK, SOCKET, FILE, SLEEP, QUEUE, OTHER, CPU = (
    "lock wait", "socket I/O", "file I/O", "sleep", "queue get", "other wait", "cpu")
WAIT_CLASSES = (LOCK, SOCKET, FILE, SLEEP, QUEUE, OTHER)
CLASSES = (*WAIT_CLASSES, CPU)
_PHRASE = {LOCK: "waiting on a lock", SOCKET: "waiting on socket I/O", FILE: "in file I/O", SLEEP: "sleeping",
           QUEUE: "waiting on a queue get", OTHER: "waiting (other)"}

_THREAD_TID = re.compile(r"^thread \((?P<tid>\d+)\)(?:: (?P<name>.*))?$")
_LOCK_FUNCS = {"wait", "acquire", "_wait_for_tstate_lock", "join", "wait_for"}
_SOCKET_FILES = {"socket.py", "ssl.py", "selectors.py", "socketserver.py"}
_RE_LOCK = re.compile(r"\.acquire\(|\bacquire\(|\.wait\(|\bwith\s+\w*(lock|mutex|cond)\w*\s*:", re.I)
_RE_SLEEP = re.compile(r"\bsleep\(")
_RE_SOCKET = re.compile(r"\.(recv|recv_into|recvfrom|recvmsg|accept|connect|sendall|send|sendto|sendmsg)\(|"
                        r"\bselect\(|\.poll\(|\bgetaddrinfo\(|\burlopen\(")
_RE_FILE = re.compile(r"\.(read|readline|readlines|readinto|write|writelines|flush)\(|\bos\.(read|write|pread|"
                      r"pwrite|fsync|fdatasync)\(|\bfsync\(|\bopen\(")
_RE_OTHER = re.compile(r"\b(waitpid|wait4|communicate|pause|sigwait|sigtimedwait|input|join)\(|\.wait\(\)")
_MAX_SOURCE_BYTES = 8 * 1024 * 1024


# ------------------------------------------------------------------ per-thread accounting
@dataclass(frozen=True)
class TaskStat:
    """One thread's cumulative counters."""

    name: str
    oncpu_ns: int
    runq_ns: int
    slices: int
    voluntary: int
    nonvoluntary: int


@dataclass(frozen=True)
class ProcSnapshot:
    """A process's per-thread counters and I/O counters at ``t`` (monotonic seconds)."""

    pid: int
    t: float
    tasks: dict[int, TaskStat] = field(default_factory=dict)
    io: dict[str, int] = field(default_factory=dict)


def _task(base: Path) -> TaskStat | None:
    try:
        oncpu, runq, slices = (int(x) for x in (base / "schedstat").read_text(encoding="ascii").split()[:3])
        status = (base / "status").read_text(encoding="latin-1")
    except (OSError, ValueError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def num(key: str) -> int:
        try:
            return int(fields.get(key, "0").split()[0])
        except (ValueError, IndexError):
            return 0

    return TaskStat(fields.get("Name", "").strip(), oncpu, runq, slices,
                    num("voluntary_ctxt_switches"), num("nonvoluntary_ctxt_switches"))


def snapshot(pid: int, *, proc: Path = Path("/proc")) -> ProcSnapshot:
    """The counters of every thread of ``pid`` now (empty when it is gone or unreadable)."""
    base = proc / str(pid)
    tasks: dict[int, TaskStat] = {}
    try:
        tids = [int(t) for t in os.listdir(base / "task") if t.isdigit()]
    except OSError:
        tids = []
    for tid in tids:
        task = _task(base / "task" / str(tid))
        if task is not None:
            tasks[tid] = task
    io: dict[str, int] = {}
    try:
        for line in (base / "io").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(":")
            if value.strip().isdigit():
                io[key.strip()] = int(value)
    except OSError:
        pass
    return ProcSnapshot(pid, time.monotonic(), tasks, io)


def thread_deltas(before: ProcSnapshot, after: ProcSnapshot) -> dict[str, dict[str, float]]:
    """Per-thread deltas (keyed by tid) and a ``"process"`` entry, as ``meta.threads`` holds them.

    Per thread: ``oncpu_ms``, ``runq_wait_ms``, ``offcpu_ms`` (the rest of the window), their ``_pct`` of the
    window, ``voluntary_ctxt``, ``nonvoluntary_ctxt``, ``slices``. ``"process"``: the sums, ``wall_ms``,
    ``threads`` and the ``/proc/PID/io`` deltas (``read_bytes``, ``write_bytes``, ``rchar``, ``wchar``,
    ``syscr``, ``syscw``).
    """
    wall_ms = max(1e-6, (after.t - before.t) * 1000.0)
    out: dict[str, dict[str, float]] = {}
    total = {"oncpu_ms": 0.0, "runq_wait_ms": 0.0, "voluntary_ctxt": 0.0, "nonvoluntary_ctxt": 0.0}
    zero = TaskStat("", 0, 0, 0, 0, 0)
    for tid, end in after.tasks.items():
        start = before.tasks.get(tid, zero)
        oncpu = max(0, end.oncpu_ns - start.oncpu_ns) / 1e6
        runq = max(0, end.runq_ns - start.runq_ns) / 1e6
        row = {
            "oncpu_ms": round(oncpu, 3), "runq_wait_ms": round(runq, 3),
            "offcpu_ms": round(max(0.0, wall_ms - oncpu - runq), 3),
            "oncpu_pct": round(100 * oncpu / wall_ms, 2), "runq_wait_pct": round(100 * runq / wall_ms, 2),
            "voluntary_ctxt": float(max(0, end.voluntary - start.voluntary)),
            "nonvoluntary_ctxt": float(max(0, end.nonvoluntary - start.nonvoluntary)),
            "slices": float(max(0, end.slices - start.slices)),
        }
        out[str(tid)] = row
        for key in total:
            total[key] += row[key]
    proc_row = {**{k: round(v, 3) for k, v in total.items()}, "wall_ms": round(wall_ms, 3),
                "threads": float(len(after.tasks))}
    for key, value in after.io.items():
        proc_row[key] = float(max(0, value - before.io.get(key, 0)))
    out["process"] = proc_row
    return out


# ------------------------------------------------------------------ off-CPU classes
def _source_line(frame: Frame) -> str:
    """The frame's source line when its file is a regular ``.py`` file of sane size; "" otherwise."""
    if not frame.file.endswith(".py") or frame.line <= 0:
        return ""
    try:
        st = os.stat(frame.file)
    except OSError:
        return ""
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_SOURCE_BYTES:
        return ""
    return linecache.getline(frame.file, frame.line).strip()


def _short(function: str) -> str:
    return function.rsplit(".", 1)[-1]


def classify(stack: Sequence[Frame]) -> str:
    """The class of one sample (root first): one of :data:`CLASSES` (see the module docstring)."""
    py = [f for f in stack if f.kind == "python"]
    if not py:
        return CPU
    for f in reversed(py[-4:]):
        base, fn = os.path.basename(f.file), _short(f.function)
        if (base == "queue.py" and fn in ("get", "get_nowait")) or (base == "queues.py" and fn == "get"):
            return QUEUE
    leaf = py[-1]
    base, fn = os.path.basename(leaf.file), _short(leaf.function)
    if base == "threading.py" and fn in _LOCK_FUNCS:
        return LOCK
    if base in _SOCKET_FILES:
        return SOCKET
    line = _source_line(leaf)
    if not line:
        return CPU
    for cls, pattern in ((SLEEP, _RE_SLEEP), (SOCKET, _RE_SOCKET), (LOCK, _RE_LOCK), (FILE, _RE_FILE),
                         (OTHER, _RE_OTHER)):
        if pattern.search(line):
            return cls
    return CPU


def _blamed(stack: Sequence[Frame], cls: str) -> str:
    """The function a wait is charged to: the queue's ``get`` for a queue, else the leaf Python function."""
    py = [f for f in stack if f.kind == "python"]
    if cls == QUEUE:
        for f in reversed(py[-4:]):
            if _short(f.function) in ("get", "get_nowait"):
                return f.function
    return py[-1].function if py else stack[-1].function


def offcpu_shares(profile: Profile) -> dict[str, float]:
    """The share (% of all samples) of each class in ``profile``; every class of :data:`CLASSES` is present."""
    counts = dict.fromkeys(CLASSES, 0)
    for stack, count in profile.stacks():
        counts[classify(stack)] += count
    total = sum(counts.values()) or 1
    return {cls: round(100.0 * n / total, 2) for cls, n in counts.items()}


def _thread_label(tid: str, profile: Profile) -> str:
    for label in profile.threads():
        m = _THREAD_TID.match(label)
        if m and m["tid"] == tid:
            return f"thread {tid} ({m['name']})" if m["name"] else f"thread {tid}"
    return f"thread {tid}"


def bottleneck_hints(profile: Profile, *, min_pct: float = 5.0, limit: int = 8) -> list[str]:
    """Sentences such as "42 % of wall time waiting on a lock in `Condition.wait` (3 threads)", most
    expensive first: the wait classes of a wall-mode profile charged to a function (at least ``min_pct`` of
    all samples), and threads that waited at least 10 % of the window for a CPU (``meta.threads``)."""
    hints: list[tuple[float, str]] = []
    if profile.meta.mode == "wall" and profile.total:
        groups: dict[tuple[str, str], list[int]] = {}
        threads: dict[tuple[str, str], set[str]] = {}
        for stack, count in profile.stacks():
            cls = classify(stack)
            if cls == CPU:
                continue
            key = (cls, _blamed(stack, cls))
            groups.setdefault(key, [0])[0] += count
            if stack[0].kind == "thread":
                threads.setdefault(key, set()).add(stack[0].function)
        for (cls, func), (n,) in groups.items():
            pct = 100.0 * n / profile.total
            if pct >= min_pct:
                k = len(threads.get((cls, func), ()))
                tail = f" ({k} threads)" if k > 1 else ""
                hints.append((pct, f"{pct:.0f} % of wall time {_PHRASE[cls]} in `{func}`{tail}"))
    for tid, row in profile.meta.threads.items():
        if tid.isdigit() and row.get("runq_wait_pct", 0.0) >= 10.0:
            pct = row["runq_wait_pct"]
            hints.append((pct, f"{_thread_label(tid, profile)} waited {pct:.0f} % of the window for a CPU "
                               "(run queue): the host or its cgroup has too little CPU for it"))
    hints.sort(key=lambda h: -h[0])
    return [text for _, text in hints[:limit]]
