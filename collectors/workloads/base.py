"""What every workload offers the trial loop: start, pids, measure, stop.

A *workload* is how a trial is measured. Three families implement it:

* the built-in loopback OLTP service (:mod:`collectors.workloads.oltp`:
  :class:`~collectors.workloads.oltp.OltpService`),
* real tools with their servers, one module per tool holding its adapter
  (command + parser) and its workload (:mod:`collectors.workloads.tools`:
  ``fio``, ``pgbench`` + PostgreSQL, ``redis_benchmark`` + redis-server,
  ``wrk`` + an HTTP server, ``iperf3`` client + server, ``stress_ng``),
* passive observation of something already running
  (:mod:`collectors.passive.target`: pids or a cgroup, an HTTP probe, a
  Prometheus scrape).

:mod:`collectors.workloads.registry` builds one from a spec's ``workload``
section (``build_workload``).

The trial loop only sees this protocol. ``start(preexec_fn=...)`` starts the
processes that are *tuned* (the server, or a holder process for client-only
tools); ``preexec_fn`` runs in each of those children before ``exec`` (the
loop uses it to place them in the workload cgroup). ``pids()`` lists the tuned
processes at this moment (process knobs such as ``affinity.cpus`` act on
them). ``measure()`` runs one bounded window and returns a
:class:`Measurement`; ``stop()`` stops and reaps everything ``start`` started
and is safe to call twice.

Optional members have defaults in the protocol itself; every workload
subclasses :class:`Workload` explicitly and inherits them, so callers call
them directly (no ``getattr`` probing): ``scratch_dirs() -> list[Path]``
lists the directories a workload created outside its workdir (a server's
private directory under the system temp dir; ``[]`` by default);
the trial loop journals them so that ``novatune recover`` deletes them after a
``kill -9``, and :meth:`Workload.stop` deletes them. ``prepare_paths()``
makes and checks what ``start`` writes by path (through
:class:`collectors.safepath.WriteRoots`: the workdir, the roots the operator
allowed, never a symlink, a device or the data directory), starting nothing.

Metric names are shared across workloads where the meaning is the same:
``throughput`` (the tool's main rate, unit in :attr:`Measurement.units`),
``latency_p50_ms`` / ``latency_p95_ms`` / ``latency_p99_ms`` /
``latency_avg_ms``, ``errors`` and ``error_rate``. A workload declares the
names it reports in :meth:`Workload.metric_names` so a spec naming a metric the
workload never reports is refused before anything starts.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import psutil

__all__ = ["COMMON_METRICS", "Measurement", "Workload", "process_tree"]

#: name -> (unit, description) of the metrics most workloads report.
COMMON_METRICS: dict[str, tuple[str, str]] = {
    "throughput": ("per s", "the workload's main rate over the measurement window (unit: see the workload)"),
    "latency_p50_ms": ("ms", "median latency of an operation"),
    "latency_p95_ms": ("ms", "95th-percentile latency of an operation"),
    "latency_p99_ms": ("ms", "99th-percentile latency of an operation"),
    "latency_avg_ms": ("ms", "mean latency of an operation"),
    "errors": ("count", "failed operations in the window"),
    "error_rate": ("ratio", "failed operations / all operations"),
}


@dataclass(frozen=True)
class Measurement:
    """One measured window of a workload.

    ``metrics`` are the scalar figures (NaN where the workload could not
    measure one). ``units`` maps a metric name to its unit where it is not the
    one in :data:`COMMON_METRICS` (e.g. ``{"throughput": "bit/s"}``).
    ``timeline`` is an optional per-interval series indexed by seconds since
    the window started (``t_s``), e.g. per-second progress lines; ``None``
    when the tool gives none. ``notes`` carry anything the user should see
    (a vanished target, a capped run).
    """

    metrics: Mapping[str, float]
    units: Mapping[str, str] = field(default_factory=dict)
    timeline: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    notes: tuple[str, ...] = ()


@runtime_checkable
class Workload(Protocol):
    """The protocol the trial loop drives; see the module docstring.

    Implementations subclass it explicitly (``class OltpService(Workload)``)
    so that they inherit the defaults of the optional members.
    """

    kind: str

    def metric_names(self) -> tuple[str, ...]:
        """Every metric :meth:`measure` may report (objectives and constraints must come from these)."""
        ...

    def start(self, *, preexec_fn: Callable[[], None] | None = None) -> list[int]:
        """Start what is tuned; return its pids. Raises WorkloadError."""
        ...

    def pids(self) -> list[int]:
        """The tuned processes now ([] when none is running)."""
        ...

    def measure(self, *, warmup_s: float, measure_s: float) -> Measurement:
        """Warm up, then measure one window. Raises WorkloadError (with the tool's stderr tail), ValueError."""
        ...

    def stop(self) -> None:
        """Stop and reap everything :meth:`start` started (scratch directories deleted); idempotent."""
        ...

    def scratch_dirs(self) -> list[Path]:
        """Directories outside the workdir that :meth:`stop` deletes (for the crash journal); [] by default."""
        return []

    def prepare_paths(self) -> None:
        """Make and check every file and directory :meth:`start` writes by path, starting nothing (the first
        step of ``start``; undone by :meth:`stop`); nothing by default. Raises WorkloadError."""
        return None


def process_tree(proc: subprocess.Popen[Any] | None) -> list[int]:
    """``proc`` and its live descendants, parent first ([] when it is not running)."""
    if proc is None or proc.poll() is not None:
        return []
    try:
        parent = psutil.Process(proc.pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [parent.pid, *(c.pid for c in children if c.is_running())]
