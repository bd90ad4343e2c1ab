"""One usage sample of a running target: CPU used, working set, capacity, throttling, OOM kills, PSI.

:class:`UsageSampler` reads a :class:`~collectors.usage.target.ResolvedTarget` once per :meth:`~UsageSampler.sample`.
Files (v1 under each controller's directory, v2 under the unified one):

* CPU used: the delta of ``cpuacct.usage`` (v1) or ``cpu.stat usage_usec`` (v2) over wall time, read by
  :class:`collectors.cgroupstats.CgroupCpuReader`; throttling: ``nr_throttled / nr_periods`` of ``cpu.stat`` over
  the same interval (0 with no quota). A ``pid:`` target in the root cgroup: the CPU time of the process and
  its descendants (psutil; time of descendants that exited in between is lost); the same for a ``pid:`` target
  whose cgroup holds other processes too.
* Memory: working set = usage - inactive file cache (v1 ``memory.usage_in_bytes`` - ``total_inactive_file`` of
  ``memory.stat``; v2 ``memory.current`` - ``inactive_file``), and the usage itself; a ``pid:`` target read from
  its process tree: the summed RSS of the tree (both figures).
* CPU capacity: the CFS quota / period (v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, v2 ``cpu.max``), else the
  CPUs of the cgroup's cpuset (v1 ``cpuset.effective_cpus``, v2 ``cpuset.cpus.effective``), else the online
  CPUs. Memory capacity: the limit (v1 the smaller of ``memory.limit_in_bytes`` and ``hierarchical_memory_limit``,
  v2 ``memory.max``), else ``MemTotal``. Limits of a parent cgroup count only on v1 memory.
* OOM kills: new ``oom_kill`` counts of v1 ``memory.oom_control`` / v2 ``memory.events`` since the previous sample.
* PSI: ``some avg10`` of the cgroup's ``cpu.pressure``/``memory.pressure``/``io.pressure`` (v2), else of the host's
  ``/proc/pressure/*`` (``psi_source="host"``); NaN when neither is readable.

Readings that fail are NaN and logged once per sampler; a target that went away raises :class:`TargetVanished`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from collectors.cgroupstats import CgroupCpuReader, CgroupCpuSample, cpu_delta
from collectors.kernelfiles import parse_cpu_list, parse_kv, parse_meminfo, psi_some_avg10
from collectors.rootfs import RootReader
from collectors.topology import online_cpus
from collectors.usage.errors import TargetVanished
from collectors.usage.target import ResolvedTarget

__all__ = ["GIB", "PSI_RESOURCES", "UsageSample", "UsageSampler", "cpu_seconds"]

log = logging.getLogger(__name__)
GIB = float(1 << 30)
PSI_RESOURCES = ("cpu", "memory", "io")
_NAN = math.nan


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (a process that exited meanwhile counts 0)."""
    total = 0.0
    for p in procs:
        try:
            ct = p.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            continue
    return total


@dataclass(frozen=True)
class UsageSample:
    """One sample; NaN where unknown.

    ``t`` wall-clock Unix seconds; ``cpu_cores`` the mean CPUs used since the previous sample; ``mem_gib`` the
    working set and ``mem_usage_gib`` the usage (GiB); ``cpu_capacity`` cores and ``mem_capacity`` GiB
    provisioned; ``throttled_ratio`` share of CFS periods throttled since the previous sample; ``oom_kills``
    OOM kills since the previous sample; ``psi_*`` the ``some avg10`` percentages and ``psi_source``
    (``cgroup``, ``host`` or ``""``).
    """

    t: float
    cpu_cores: float
    mem_gib: float
    mem_usage_gib: float
    cpu_capacity: float
    mem_capacity: float
    throttled_ratio: float
    oom_kills: int
    psi_cpu: float = _NAN
    psi_memory: float = _NAN
    psi_io: float = _NAN
    psi_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UsageSampler:
    """Samples one resolved target; the first :meth:`sample` covers the time since construction.

    Args:
        target: from :func:`collectors.usage.target.resolve_target`.
        root: the same root it was resolved under.
    """

    def __init__(self, target: ResolvedTarget, *, root: RootReader | str = "/") -> None:
        self.target = target
        self.fs = root if isinstance(root, RootReader) else RootReader(root)
        self._reported: set[str] = set()
        self._cpu: CgroupCpuReader | None = None
        acct = target.dir("cpuacct")
        if "cpu" not in target.tree and acct is not None:
            self._cpu = CgroupCpuReader(self.fs.path(target.dir("cpu") or acct), cpuacct_path=self.fs.path(acct))
        meminfo = self._read("proc/meminfo")
        self._mem_total = parse_meminfo(meminfo).get("MemTotal", 0) if meminfo else 0
        self._prev_cpu: CgroupCpuSample | None = self._cpu.read() if self._cpu is not None else None
        self._prev_tree = (time.monotonic(), self._tree_cpu_s()) if "cpu" in target.tree else None
        self._prev_oom = self._oom_count()

    # ------------------------------------------------------------------ reading
    def _once(self, what: str, detail: object) -> None:
        if what not in self._reported:
            self._reported.add(what)
            log.warning("%s: %s unavailable (%s); recorded as unknown", self.target.name, what, detail)

    def _read(self, rel: str) -> str | None:
        try:
            return self.fs.read_bytes(rel).decode("latin-1")
        except OSError as err:
            self._once(rel, err.strerror or err)
        except self.fs.unsafe_error as err:
            self._once(rel, err)
        return None

    def _file(self, controller: str, name: str) -> str | None:
        d = self.target.dir(controller)
        return None if d is None else self._read(f"{d}/{name}")

    def _int(self, controller: str, name: str) -> int | None:
        text = self._file(controller, name)
        if not text or not text.split() or text.split()[0] == "max":  # v2's "no limit"
            return None
        try:
            return int(text.split()[0])
        except ValueError:
            self._once(name, f"unparsable {text[:40]!r}" if text else "empty")
            return None

    def _process(self) -> psutil.Process:
        try:
            proc = psutil.Process(self.target.pid)
            if self.target.pid_start is not None and proc.create_time() != self.target.pid_start:
                raise TargetVanished(f"{self.target.name}: the process exited (the pid now names another process)")
            return proc
        except psutil.Error as err:
            raise TargetVanished(f"{self.target.name}: the process exited") from err

    def _tree(self) -> list[psutil.Process]:
        proc = self._process()
        try:
            return [proc, *proc.children(recursive=True)]
        except psutil.Error as err:
            raise TargetVanished(f"{self.target.name}: the process exited") from err

    def _tree_cpu_s(self) -> float:
        return cpu_seconds(self._tree())

    def _tree_rss(self) -> float:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return float(total)

    def _oom_count(self) -> int | None:
        text = self._file("memory", "memory.events" if self.target.version == 2 else "memory.oom_control")
        return parse_kv(text, int).get("oom_kill") if text else None

    # ------------------------------------------------------------------ figures
    def _cpu_used(self) -> tuple[float, float]:
        """(cores used, throttled ratio) since the previous sample."""
        if self._prev_tree is not None:
            now, cpu_s = time.monotonic(), self._tree_cpu_s()
            t0, c0 = self._prev_tree
            self._prev_tree = (now, cpu_s)
            return (max(0.0, cpu_s - c0) / (now - t0) if now > t0 else 0.0), _NAN
        if self._cpu is None or self._prev_cpu is None:
            return _NAN, _NAN
        after = self._cpu.read()
        before, self._prev_cpu = self._prev_cpu, after
        if after.monotonic_s <= before.monotonic_s:
            return 0.0, _NAN
        d = cpu_delta(before, after)
        return d.cpu_vcpus, d.throttled_ratio

    def _memory(self) -> tuple[float, float, float]:
        """(working set, usage, limit) in bytes (NaN unknown; the limit is MemTotal when there is none)."""
        total = float(self._mem_total) if self._mem_total else _NAN
        v2 = self.target.version == 2
        usage = None if "memory" in self.target.tree else self._int("memory", "memory.current" if v2 else
                                                                   "memory.usage_in_bytes")
        stat_text = self._file("memory", "memory.stat")
        stat = parse_kv(stat_text, int) if stat_text else {}
        inactive = stat.get("inactive_file" if v2 else "total_inactive_file", 0)
        limits = [x for x in (self._int("memory", "memory.max" if v2 else "memory.limit_in_bytes"),
                              None if v2 else stat.get("hierarchical_memory_limit")) if x is not None]
        limit = float(min(limits)) if limits else _NAN
        if not math.isnan(total) and (math.isnan(limit) or limit >= total):
            limit = total
        if "memory" in self.target.tree:
            rss = self._tree_rss()
            return rss, rss, limit
        if usage is None:
            return _NAN, _NAN, limit
        return float(max(0, usage - inactive)), float(usage), limit

    def _cpu_capacity(self) -> float:
        if self.target.version == 2:
            text = self._file("cpu", "cpu.max")
            parts = text.split() if text else []
            if len(parts) == 2 and parts[0] != "max" and parts[0].isdigit() and parts[1].isdigit():
                return int(parts[0]) / int(parts[1])
        else:
            quota, period = self._int("cpu", "cpu.cfs_quota_us"), self._int("cpu", "cpu.cfs_period_us")
            if quota is not None and period and quota > 0:
                return quota / period
        cpus = self._file("cpuset", "cpuset.cpus.effective" if self.target.version == 2 else "cpuset.effective_cpus")
        try:
            n = len(parse_cpu_list(cpus)) if cpus and cpus.strip() else 0
        except ValueError:
            n = 0
        return float(n or len(online_cpus(self.fs)) or _NAN)

    def _psi(self) -> tuple[tuple[float, float, float], str]:
        d = self.target.dir("unified") if self.target.version == 2 else None
        for source, base in (("cgroup", d), ("host", "proc/pressure")):
            if base is None:
                continue
            names = [f"{base}/{r}.pressure" if source == "cgroup" else f"{base}/{r}" for r in PSI_RESOURCES]
            if not self.fs.exists(names[0]):
                continue
            vals = []
            for name in names:
                text = self._read(name)
                v = psi_some_avg10(text) if text else None
                vals.append(_NAN if v is None else v)
            return (vals[0], vals[1], vals[2]), source
        return (_NAN, _NAN, _NAN), ""

    def _check_alive(self) -> None:
        if self.target.pid is not None:
            self._process()
        for d in self.target.dirs.values():
            if not self.fs.is_dir(d):
                raise TargetVanished(f"{self.target.name}: its cgroup {self.fs.path(d)} was removed")

    def sample(self) -> UsageSample:
        """Read the target now (one read of each file).

        Raises:
            TargetVanished: its cgroup was removed or its process exited.
        """
        self._check_alive()
        t = time.time()
        cores, throttled = self._cpu_used()
        ws, usage, limit = self._memory()
        oom = self._oom_count()
        new_oom = max(0, oom - self._prev_oom) if oom is not None and self._prev_oom is not None else 0
        self._prev_oom = oom if oom is not None else self._prev_oom
        (p_cpu, p_mem, p_io), source = self._psi()
        return UsageSample(t=t, cpu_cores=cores, mem_gib=ws / GIB, mem_usage_gib=usage / GIB,
                           cpu_capacity=self._cpu_capacity(), mem_capacity=limit / GIB, throttled_ratio=throttled,
                           oom_kills=new_oom, psi_cpu=p_cpu, psi_memory=p_mem, psi_io=p_io, psi_source=source)
