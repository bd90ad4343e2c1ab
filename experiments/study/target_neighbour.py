"""``target: neighbour``: a CPU-heavy batch job next to the measured service, and the knobs act on it.

A study whose spec has ``target: {neighbour: {stressor: cpu, workers: 2}}`` starts, next to its
workload (the measured service), a stress-ng batch job of its own: a holder process in a cgroup the
run creates (``novatune-<run>-nb``, journaled before mkdir), journaled with ``record_process``; in every
measurement window a bounded stress-ng run (``--timeout``, whole seconds) is spawned into that cgroup
with the holder's scheduling policy, nice value, I/O priority and CPU affinity
(:class:`~collectors.workloads.tools.stress_ng.StressNgWorkload`), alongside the service's window.

The process- and cgroup-scoped knobs (``sched.*``, ``ioprio.*``, ``affinity.*``, ``sizing.*``) are bound
to the neighbour (its holder and its cgroup), not to the service: the target is what the knobs act on,
the workload is what is measured. Each window adds ``neighbour_bogo_ops_per_s`` (the batch job's
throughput, so starving it is a visible trade-off) and ``neighbour_bogo_ops``.

Teardown (:meth:`Neighbour.close`): the holder and any run are stopped and reaped, the journaled pids
released, the cgroup removed; after a kill -9 ``novatune recover`` kills the journaled holder and every
task of the journaled cgroup (a window's stress-ng run also gets SIGTERM when its parent dies).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actuators import ActuatorError, Journal, WorkloadCgroup
from actuators.journal import same_process
from collectors.errors import CollectorError, WorkloadError
from collectors.workloads.base import Measurement
from collectors.workloads.tools.stress_ng import StressNgWorkload

__all__ = ["NEIGHBOUR_METRICS", "NEIGHBOUR_WORKLOADS", "Neighbour", "NeighbourSpec", "acts_on", "bind_target",
           "check_neighbour", "neighbour_metrics"]

#: workload kinds a neighbour can sit next to: a service whose latency is measured while the batch job runs
NEIGHBOUR_WORKLOADS: tuple[str, ...] = ("oltp",)
#: what a neighbour adds to every trial
NEIGHBOUR_METRICS: tuple[str, ...] = ("neighbour_bogo_ops_per_s", "neighbour_bogo_ops")
#: CPU and memory stressors only: a neighbour never writes to a disk
_STRESSORS = Literal["cpu", "matrix", "memcpy", "cache", "switch", "pipe", "vm"]
_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio")
_JOIN_SLACK_S = 60.0  # beyond the stress-ng runs' own bound (their --timeout + the adapter's margin)


class NeighbourSpec(BaseModel):
    """``target.neighbour``: a stress-ng batch job the study runs next to its workload (the knobs act on it).

    ``stressor``: one of cpu, matrix, memcpy, cache, switch, pipe, vm; ``workers``: 1..16 instances.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stressor: _STRESSORS = "cpu"
    workers: int = Field(default=2, ge=1, le=16)


def check_neighbour(kind: str, knobs: list[str]) -> list[str]:
    """Problems of a spec with ``target.neighbour`` (empty: none): the workload ``kind`` must be a measured
    service (:data:`NEIGHBOUR_WORKLOADS`)."""
    problems = []
    if kind not in NEIGHBOUR_WORKLOADS:
        problems.append(f"target.neighbour: the {kind} workload cannot have a neighbour; allowed workload kinds: "
                        f"{', '.join(NEIGHBOUR_WORKLOADS)} (a service whose latency is measured next to the batch job)")
    return problems


def acts_on(spec: Mapping[str, Any] | None) -> str | None:
    """What a stored spec's (``spec`` user attribute) process and cgroup knobs act on when it has a target
    (``study show``), else None."""
    target = (spec or {}).get("target") or {}
    nb = target.get("neighbour") if isinstance(target, Mapping) else None
    if not isinstance(nb, Mapping):
        return None
    return (f"the neighbour (stress-ng {nb.get('stressor')} x {nb.get('workers')}, its processes and cgroup), "
            "not the measured workload")


def neighbour_metrics(spec: NeighbourSpec | None) -> tuple[str, ...]:
    """The metric names a neighbour adds (none without one)."""
    return NEIGHBOUR_METRICS if spec is not None else ()


class Neighbour:
    """The batch job of one run: its cgroup, its holder (journaled) and one stress-ng run per window.

    Build with :meth:`start`; ``cgroup`` and :meth:`pids` are what the run's knobs are bound to.
    """

    def __init__(self, spec: NeighbourSpec, *, journal: Journal, run_id: str, workdir: Path) -> None:
        self.spec = spec
        self.journal = journal
        self.run_id = run_id
        self.cgroup: WorkloadCgroup | None = None
        self.workload = StressNgWorkload(workdir, stressor=spec.stressor, workers=spec.workers)
        self._recorded: list[tuple[int, float]] = []

    @classmethod
    def start(cls, spec: NeighbourSpec, *, journal: Journal, run_id: str, workdir: Path,
              cpuset: bool = False) -> Neighbour:
        """Create the cgroup (journaled), start the holder in it and journal its pids.

        Raises:
            WorkloadError: the cgroup or the holder could not be made (what was made is removed).
        """
        nb = cls(spec, journal=journal, run_id=run_id, workdir=workdir)
        try:
            nb._start(cpuset=cpuset)
        except BaseException:
            nb.close()
            raise
        return nb

    def _start(self, *, cpuset: bool) -> None:
        controllers = (*_CONTROLLERS, "cpuset") if cpuset else _CONTROLLERS
        try:
            self.cgroup = WorkloadCgroup.create(f"{self.run_id}-nb", journal=self.journal, run_id=self.run_id,
                                                controllers=controllers)
        except (ActuatorError, OSError) as err:
            raise WorkloadError(f"target.neighbour: no cgroup for the neighbour: {err}") from err
        procs_files = [str(p) for p in self.cgroup.procs_files]

        def join_cgroup() -> None:
            for procs in procs_files:
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))

        try:
            pids = self.workload.start(preexec_fn=join_cgroup)
        except (WorkloadError, CollectorError) as err:
            raise WorkloadError(f"target.neighbour: the stress-ng neighbour could not start: {err}") from err
        for pid in pids:
            self._recorded.append((pid, self.journal.record_process(self.run_id, pid)["ctime"]))

    def pids(self) -> list[int]:
        """The neighbour's tuned processes (the holder; each window's run copies its attributes)."""
        return self.workload.pids()

    @contextmanager
    def window(self, *, warmup_s: float, measure_s: float) -> Iterator[dict[str, float]]:
        """Run the batch job for the window of the block (warm-up then measure, like the service's); the
        yielded dict gets :data:`NEIGHBOUR_METRICS` once the block and the run are done.

        Raises:
            WorkloadError: the neighbour's run failed (its message), or did not end in time.
        """
        out: dict[str, float] = {}
        result: list[Measurement | BaseException] = []

        def run() -> None:
            try:
                result.append(self.workload.measure(warmup_s=warmup_s, measure_s=measure_s))
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                result.append(err)

        # a thread that lives until its run is reaped (the run's parent-death signal is tied to it)
        thread = threading.Thread(target=run, name="novatune-neighbour", daemon=True)
        thread.start()
        try:
            yield out
        finally:
            thread.join(timeout=warmup_s + measure_s + 2 * _JOIN_SLACK_S)
        if thread.is_alive() or not result:
            raise WorkloadError("target.neighbour: the stress-ng run did not end in time")
        res = result[0]
        if isinstance(res, BaseException):
            raise WorkloadError(f"target.neighbour: {res}") from res
        out["neighbour_bogo_ops_per_s"] = float(res.metrics["throughput"])
        out["neighbour_bogo_ops"] = float(res.metrics.get("bogo_ops", float("nan")))

    def close(self) -> None:
        """Stop and reap the holder (and a run), release the journaled pids, remove the cgroup. Idempotent."""
        self.workload.stop()
        for pid, ctime in self._recorded:  # one still alive stays open: recover ends it
            if not same_process(pid, ctime):
                self.journal.release_process(self.run_id, pid, note="stopped with the neighbour")
        self._recorded = []
        if self.cgroup is not None and not self.cgroup.removed:
            self.cgroup.remove()


def bind_target(neighbour: Neighbour | None, cgroup: WorkloadCgroup | None,
                pids: Callable[[], list[int]]) -> tuple[WorkloadCgroup | None, Callable[[], list[int]]]:
    """What a run's process- and cgroup-scoped knobs act on: the neighbour's cgroup and pids when there is
    one, else the run's own (``cgroup``, ``pids``)."""
    if neighbour is None:
        return cgroup, pids
    return neighbour.cgroup, neighbour.pids

