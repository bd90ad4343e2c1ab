"""Everything one run of a study owns, set up in order and always torn down.

:class:`RunContext` is a context manager. On entry it creates the run's
workload cgroup (when the spec sizes the workload), starts the workload inside
it, journals the processes and scratch directories the workload made, binds the
spec's knobs to this run (cgroup, pids) and drops the ones that cannot be used
here, takes the machine-wide holds on the host knobs it will tune and reads the
baseline. On exit, whatever way the block ends, it stops the workload (and
releases its journaled processes once they are gone), removes the cgroup and
releases the holds. The knobs themselves are restored by each trial's
:class:`~actuators.ChangeSession`, before this teardown.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from actuators import ActuatorError, Catalog, Journal, Knob, KnobContext, WorkloadCgroup
from actuators.journal import process_ctime, same_process
from actuators.sizing import GIB, MemoryKnob
from collectors.cgroupstats import CgroupCpuReader
from collectors.errors import CollectorError, WorkloadError
from collectors.metrics import MetricsSampler, Target, parse_target
from collectors.workloads.base import Workload
from experiments.holds import KnobHeld, KnobHolds
from experiments.settings import Paths, config_file
from experiments.spec import PassiveWorkloadSpec
from experiments.study.manager import StudyConflict, host_wide
from experiments.study.prepare import StudyPlan
from experiments.study.resolve import Resolved
from experiments.study.target_disk import DiskError, disk_of, fio_dir
from experiments.study.target_loop import LoopTarget
from experiments.study.target_neighbour import Neighbour, bind_target
from experiments.study.target_netns import NetnsTarget, mirror_knobs

__all__ = ["RunContext"]

log = logging.getLogger(__name__)

#: memory, cpuacct and blkio too, for accounting: the collector reads the cgroup's CPU, memory and IO
#: bytes (cgroup v1 keeps them in separate hierarchies)
_SIZING_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio")


class RunContext:
    """The run's cgroup, workload, bound knobs, holds and baseline (see the module docstring).

    After entry: ``workload``, ``reader`` (the cgroup's CPU accounting, or None), ``targets`` and
    ``collector`` (what the metrics sampler watches), ``resolved`` (the knobs bound to this run, the
    search space over the usable ones), ``skipped`` (knob -> why not usable here) and ``baseline``
    (knob -> value before the study).
    """

    def __init__(self, plan: StudyPlan, *, paths: Paths, name: str, run_id: str, journal: Journal,
                 workdir: Path) -> None:
        self.plan = plan
        self.paths = paths
        self.name = name
        self.run_id = run_id
        self.journal = journal
        self.workdir = workdir
        self.cgroup: WorkloadCgroup | None = None
        self.cgroup_reason: str | None = None
        self.workload: Workload | None = None
        self.reader: CgroupCpuReader | None = None
        self.targets: dict[str, Target] = {}
        self.collector: MetricsSampler | None = None
        self.resolved: Resolved | None = None
        self.skipped: dict[str, str] = {}
        self.baseline: dict[str, Any] = {}
        self._holds: KnobHolds | None = None
        self._recorded: list[tuple[int, float]] = []  # workload (pid, ctime) in the journal
        self._scratch: list[Path] = []
        self.netns: NetnsTarget | None = None  # target.netns: the namespace pair the run owns
        #: the spec's ``target.neighbour`` while it runs: the run's knobs act on it
        self.neighbour: Neighbour | None = None
        self.loop: LoopTarget | None = None  # the study's own loop device (target.loop)
        self.disk: str | None = None  # target.disk: the disk under fio's file (in /sys/block)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> RunContext:
        try:
            self._make_netns()
            self._create_cgroup()
            self._start_neighbour()
            self._make_target()
            self._start_workload()
            self._bind_knobs()
            self._hold_knobs()
            assert self.resolved is not None
            self.baseline = {n: knob.read() for n, knob in self.resolved.knobs.items()}
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workload, remove the cgroup, release the holds; safe to call twice."""
        if self.workload is not None:
            self.workload.stop()
            for pid, ctime in self._recorded:  # one still alive stays open: recover ends it
                if not same_process(pid, ctime):
                    self.journal.release_process(self.run_id, pid, note="stopped with the workload")
            self._recorded = []
            for d in self._scratch:
                if not Path(d).exists():
                    self.journal.release_scratch(self.run_id, d, note="deleted by the workload")
            self._scratch = []
            self.workload = None
        if self.loop is not None:  # after the workload: fio has closed the device
            try:
                self.loop.close()
            except ActuatorError as err:  # its journal record stays open: `novatune recover` retries
                log.error("the study's loop device %s was not removed: %s", self.loop.backing, err)
            self.loop = None
        if self.cgroup is not None and not self.cgroup.removed:
            self.cgroup.remove()
        if self.neighbour is not None:
            self.neighbour.close()
            self.neighbour = None
        if self._holds is not None:
            self._holds.release()  # every knob was restored by now (each trial's session)
            self._holds = None
        if self.netns is not None:  # after the workload: its server lives in the namespace
            self.netns.close()
            self.netns = None

    # ---------------------------------------------------------------- steps
    @property
    def passive(self) -> bool:
        return self.plan.spec.workload.kind == "passive"

    def _make_netns(self) -> None:
        t = self.plan.spec.target
        if t is not None and t.netns is not None:
            self.netns = NetnsTarget(t.netns, journal=self.journal, run_id=self.run_id).__enter__()

    def _create_cgroup(self) -> None:
        knobs = self.plan.spec.knobs
        if self.passive:
            self.cgroup_reason = ("passive workload: novatune does not move processes it did not start into "
                                  "a cgroup, so sizing knobs do not apply")
            return
        target = self.plan.spec.target
        memory = target.memory if target is not None else None
        if memory is None and (not any(k.startswith("sizing.") for k in knobs)
                               or (target is not None and target.neighbour is not None)):
            return  # with a neighbour, the sizing knobs act on its cgroup
        controllers = list(_SIZING_CONTROLLERS)
        if any(k.startswith("sizing.cpuset_") for k in knobs):
            controllers.append("cpuset")
        try:
            self.cgroup = WorkloadCgroup.create(self.run_id, journal=self.journal, run_id=self.run_id,
                                                controllers=tuple(controllers))
        except (ActuatorError, OSError) as err:
            if memory is not None:  # the limit is part of what is measured: no study without it
                raise WorkloadError(f"target.memory: cannot make the workload's cgroup: {err}") from err
            self.cgroup_reason = f"no workload cgroup: {err}"
            return
        if memory is not None:  # the sizing knob's own file and format, written once (the cgroup is the run's)
            limit = MemoryKnob(cgroup=self.cgroup)
            if not limit.rel:
                raise WorkloadError("target.memory: the workload's cgroup has no memory controller")
            self.cgroup.root.write(limit.rel, limit.format(memory.bytes / GIB))

    def _make_target(self) -> None:
        target = self.plan.spec.target
        if target is not None and target.loop is not None:
            self.loop = LoopTarget(target.loop, workdir=self.workdir, home=self.paths.home, journal=self.journal,
                                   run_id=self.run_id)
            self.loop.open()
        if target is not None and target.disk is not None:
            try:
                self.disk = disk_of(fio_dir(self.plan.spec, self.workdir / "work"))
            except (DiskError, OSError) as err:
                raise WorkloadError(f"target.disk: {err}") from err

    def _start_workload(self) -> None:
        if self.netns is not None:  # server in namespace a, client in b
            workload: Workload = self.netns.workload(self.plan.spec, self.workdir / "work",
                                                      allowed_roots=self.plan.allowed_paths,
                                                      protected=(self.paths.home, config_file()))
        else:
            workload = self.plan.build_workload(self.workdir / "work", paths=self.paths)  # policy and roots bound
        self.workload = workload
        if self.loop is not None:
            workload.use_device(self.loop.path)  # type: ignore[attr-defined]  # - only fio takes a target.loop
        preexec = None
        if self.cgroup is not None:
            procs_files = [str(p) for p in self.cgroup.procs_files]

            def preexec() -> None:
                for procs in procs_files:
                    with open(procs, "w") as f:
                        f.write(str(os.getpid()))

        try:
            workload.start(preexec_fn=preexec)
        except (WorkloadError, CollectorError) as err:
            raise WorkloadError(f"the {workload.kind} workload could not start: {err}") from err
        if self.cgroup is not None:  # one reader per run: gaps reported once
            acct = self.cgroup.dir_for("cpuacct")
            self.reader = CgroupCpuReader(self.cgroup.path, cpuacct_path=self.cgroup.root.path(acct) if acct else None)
        # one sampler per run too: a missing file is reported once per study, not once per window
        self.targets = self._watch(workload)
        self.collector = MetricsSampler(targets=list(self.targets.values()))
        if not self.passive:  # recover kills what a killed run started, never what it only observed
            self._record_pids(workload)
        self._scratch = list(workload.scratch_dirs())
        for d in self._scratch:
            self.journal.record_scratch(self.run_id, d)

    def _start_neighbour(self) -> None:
        target = self.plan.spec.target
        if target is not None and target.neighbour is not None:
            cpuset = any(k.startswith("sizing.cpuset_") for k in self.plan.spec.knobs)
            self.neighbour = Neighbour.start(target.neighbour, journal=self.journal, run_id=self.run_id,
                                             workdir=self.workdir / "neighbour", cpuset=cpuset)

    def _record_pids(self, workload: Workload) -> None:
        for pid in workload.pids():
            try:
                self._recorded.append((pid, self.journal.record_process(self.run_id, pid)["ctime"]))
            except ActuatorError:
                if process_ctime(pid) is not None:
                    raise
                # exited between the listing and the record (a server's short-lived helper,
                # seen with pgbench's cluster start): nothing of it is left to clean up

    def _watch(self, workload: Workload) -> dict[str, Target]:
        """What the collector watches: ``"p"`` the tuned pid tree (its first pid and descendants),
        ``"c"`` the workload cgroup (or a passive workload's cgroup); none when nothing is tuned."""
        out: dict[str, Target] = {}
        pids = workload.pids()
        if pids:
            out["p"] = Target(label=f"pid{pids[0]}", pid=pids[0])
        w = self.plan.spec.workload
        if self.reader is not None:
            out["c"] = parse_target(str(self.reader.path))
        elif isinstance(w, PassiveWorkloadSpec) and w.cgroup:
            out["c"] = parse_target(w.cgroup)
        return out

    def knob_context(self) -> KnobContext:
        """What this run's knobs bind to (its cgroup, its workload's processes): the spec's knobs, and any
        other knob measured against the same workload (``novatune bench gain``)."""
        assert self.workload is not None
        cgroup, pids = bind_target(self.neighbour, self.cgroup, self.workload.pids)  # what the knobs act on
        return KnobContext(cgroup=cgroup, pids=pids, protected_interfaces=self.plan.protected_interfaces,
                           block_target=self.loop.device if self.loop is not None else self.disk,
                           netns=self.netns.pair.a if self.netns is not None and self.netns.pair else None)

    def catalog(self) -> Catalog:
        """The catalog bound to this run (:meth:`knob_context`; a namespace pair's ``nic.@target.*`` too)."""
        context = self.knob_context()
        return Catalog(context=context) if self.netns is None else self.netns.catalog(context)

    def mirrors(self, names: list[str]) -> dict[str, tuple[Knob, ...]]:
        """Per knob name, the knobs that take the same value (a namespace pair's twins in ``b``)."""
        if self.netns is None or self.netns.pair is None:
            return {}
        return mirror_knobs(names, self.knob_context(), self.netns.pair)

    def _bind_knobs(self) -> None:
        self.resolved = self.plan.resolved.bind(self.catalog(), source=self.plan.source)
        mirrors = self.mirrors(list(self.resolved.knobs))
        if mirrors:  # the same values in namespace b
            self.resolved = dataclasses.replace(self.resolved, mirrors=mirrors)
        skipped = dict(self.resolved.skipped)
        for k in skipped:
            if k.startswith("sizing.") and self.cgroup_reason:
                skipped[k] = self.cgroup_reason
        self.skipped = skipped

    def _hold_knobs(self) -> None:
        """Machine-wide: no other novatune process (whatever its data directory) tunes these host knobs
        while this study runs; taken before the baseline is read, released at the end."""
        assert self.resolved is not None
        holds = KnobHolds(host_wide(self.resolved.knobs.values()), owner=f"study {self.name} in {self.paths.home}")
        try:
            holds.acquire()
        except KnobHeld as err:
            raise StudyConflict(str(err)) from None
        self._holds = holds
