"""``sizing.*`` knobs beside ``sizing.vcpus``: CPU weight, memory limit, cpuset.

All act on the workload cgroup a run creates (:class:`WorkloadCgroup`), v1 or
v2, through one file each; restore writes back the exact old bytes.

* ``sizing.cpu_weight`` — v2 ``cpu.weight`` (1..10000, default 100); on v1
  ``cpu.shares = weight * 1024 / 100`` (so 100 is the default 1024).
* ``sizing.memory_gib`` — v1 ``memory.limit_in_bytes`` / v2 ``memory.max``;
  never below the workload's working set (usage minus inactive file cache)
  plus a margin, never above the machine's RAM. No limit reads as RAM.
* ``sizing.cpuset_cpus`` / ``sizing.cpuset_mems`` — a compact range of the
  parent's CPUs / memory nodes (``0``, ``0-1``, ...).

:data:`FAMILY` declares the ``sizing`` family (with ``sizing.vcpus`` of
:mod:`actuators.cgroup`); each knob is deployed as a systemd resource-control
option of the workload's unit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from actuators.base import Domain, FileKnob, Knob
from actuators.cgroup import CgroupDirs, VcpusKnob, WorkloadCgroup
from actuators.errors import ActuatorError, OutOfBounds
from actuators.family import Env, Family, KnobExport, SystemdOption, one_line
from actuators.sysroot import SysRoot
from collectors.kernelfiles import parse_cpu_list, parse_meminfo

__all__ = ["FAMILY", "SIZING", "CpuWeightKnob", "CpusetKnob", "MemoryKnob", "SizingFamily", "sizing_knob"]

GIB = 1024**3
#: v1 writes this (page-aligned LLONG_MAX) for "no limit"; anything at or above 2**62 is unlimited
_UNLIMITED = 2**62
#: headroom kept above the working set when lowering a memory limit
MEMORY_MARGIN = 1.25
MEMORY_FLOOR_GIB = 0.0625


def _ranges(items: tuple[int, ...]) -> tuple[str, ...]:
    """Compact prefixes of ``items``: ``[0, 1, 2]`` -> ``("0", "0-1", "0-2")``."""
    return tuple(str(items[0]) if n == 1 else f"{items[0]}-{items[n - 1]}" for n in range(1, len(items) + 1))


def _mem_total_bytes(root: SysRoot) -> int:
    try:
        return parse_meminfo(root.read("proc/meminfo")).get("MemTotal", 0)
    except ActuatorError:
        return 0


class _CgroupFileKnob(FileKnob):
    """A knob in one file of the workload cgroup's ``controller`` directory."""

    controller = "cpu"

    def __init__(self, *, cgroup: CgroupDirs | None, leaf_v1: str, leaf_v2: str, **kw: Any) -> None:
        self.cgroup = cgroup
        d = cgroup.dir_for(self.controller) if cgroup is not None else None
        root = cgroup.root if cgroup is not None else SysRoot()
        leaf = leaf_v1 if cgroup is not None and cgroup.version == 1 else leaf_v2
        super().__init__(root=root, rel=f"{d}/{leaf}" if d else "", scope="cgroup", needs_root=True, **kw)

    def available(self) -> str | None:
        if self.cgroup is None:
            return "no workload cgroup in this context (sizing.* binds to the cgroup a run creates)"
        if not self.rel:
            return f"the run's cgroup has no {self.controller} controller (v1 hierarchy not mounted)"
        if self.cgroup.removed:
            return f"cgroup {self.cgroup.path} was removed"
        return super().available()

    def read(self) -> Any:
        self.check_available()
        return super().read()


class CpuWeightKnob(_CgroupFileKnob):
    def __init__(self, *, cgroup: WorkloadCgroup | None) -> None:
        super().__init__(
            cgroup=cgroup, leaf_v1="cpu.shares", leaf_v2="cpu.weight", name="sizing.cpu_weight",
            domain=Domain("int", 1, 10000, step=1), risk="low", unit="weight",
            description="CPU weight of the workload cgroup against its siblings (100 = default share).",
        )

    def _v1(self) -> bool:
        return self.cgroup is not None and self.cgroup.version == 1

    def parse(self, raw: str) -> int:
        v = int(raw.split()[0])
        return max(1, round(v * 100 / 1024)) if self._v1() else v

    def format(self, value: Any) -> str:
        return str(max(2, round(int(value) * 1024 / 100))) if self._v1() else str(int(value))

    def same(self, a: Any, b: Any) -> bool:
        return self.format(a) == self.format(b)


class MemoryKnob(_CgroupFileKnob):
    controller = "memory"

    def __init__(self, *, cgroup: CgroupDirs | None, name: str = "sizing.memory_gib") -> None:
        root = cgroup.root if cgroup is not None else SysRoot()
        total = _mem_total_bytes(root) / GIB
        super().__init__(
            cgroup=cgroup, leaf_v1="memory.limit_in_bytes", leaf_v2="memory.max", name=name,
            domain=Domain("float", MEMORY_FLOOR_GIB, max(total, MEMORY_FLOOR_GIB)), risk="high", unit="GiB",
            description=f"Memory limit of the workload cgroup; never below {MEMORY_MARGIN}x its working set.",
        )

    def parse(self, raw: str) -> float:
        word = raw.split()[0]
        if word == "max" or int(word) >= _UNLIMITED:
            return float(self.domain.high or 0.0)  # no limit reads as the RAM (the domain's high bound)
        return int(word) / GIB

    def format(self, value: Any) -> str:
        return str(int(float(value) * GIB) // 4096 * 4096)

    def same(self, a: Any, b: Any) -> bool:
        return self.format(a) == self.format(b)

    def working_set_gib(self) -> float:
        """Usage minus inactive file cache, in GiB (what the workload really needs)."""
        assert self.cgroup is not None
        d = self.rel.rsplit("/", 1)[0]
        usage_leaf = "memory.usage_in_bytes" if self.cgroup.version == 1 else "memory.current"
        inactive_key = "total_inactive_file" if self.cgroup.version == 1 else "inactive_file"
        try:
            usage = int(self.root.read(f"{d}/{usage_leaf}").split()[0])
            inactive = 0
            if self.root.exists(f"{d}/memory.stat"):
                for line in self.root.read(f"{d}/memory.stat").splitlines():
                    k, _, v = line.partition(" ")
                    if k == inactive_key:
                        inactive = int(v)
        except (ActuatorError, ValueError, IndexError) as err:
            raise ActuatorError(f"{self.name}: cannot read the working set under {d}: {err}") from err
        return max(0, usage - inactive) / GIB

    def validate(self, value: Any, *, assume: Mapping[str, Any] | None = None) -> float:
        v = float(super().validate(value, assume=assume))
        if self.available() is None:
            floor = self.working_set_gib() * MEMORY_MARGIN
            if v < floor:
                raise OutOfBounds(
                    f"{self.name}: {value!r} GiB is below {MEMORY_MARGIN}x the workload's working set; "
                    f"allowed: [{max(floor, MEMORY_FLOOR_GIB):.3f}, {self.domain.high:.3f}] GiB"
                )
        return v


class CpusetKnob(_CgroupFileKnob):
    controller = "cpuset"

    def __init__(self, *, cgroup: CgroupDirs | None, what: str, name: str | None = None) -> None:
        if what not in ("cpus", "mems"):
            raise ValueError(f"cpuset knob is cpus or mems, not {what!r}")
        self.what = what
        choices: tuple[str, ...] = ()
        cpuset_dir = cgroup.dir_for("cpuset") if cgroup is not None else None
        if cgroup is not None and cpuset_dir:
            parent = cpuset_dir.rsplit("/", 1)[0]
            leaf = f"cpuset.{what}" if cgroup.version == 1 else f"cpuset.{what}.effective"
            try:
                choices = _ranges(parse_cpu_list(cgroup.root.read(f"{parent}/{leaf}")))
            except (ActuatorError, ValueError):
                choices = ()
        if not choices:
            n = (os.cpu_count() or 1) if what == "cpus" else 1
            choices = _ranges(tuple(range(n)))
        super().__init__(
            cgroup=cgroup, leaf_v1=f"cpuset.{what}", leaf_v2=f"cpuset.{what}", name=name or f"sizing.cpuset_{what}",
            domain=Domain("categorical", choices=choices), risk="medium", unit="list",
            description=f"{'CPUs' if what == 'cpus' else 'NUMA memory nodes'} of the workload cgroup (compact range).",
        )

    def parse(self, raw: str) -> str:
        items = parse_cpu_list(raw)
        if not items:
            return ""
        return str(items[0]) if len(items) == 1 else f"{items[0]}-{items[-1]}"


SIZING = ("sizing.cpu_weight", "sizing.memory_gib", "sizing.cpuset_cpus", "sizing.cpuset_mems")


def sizing_knob(name: str, cgroup: WorkloadCgroup | None) -> FileKnob:
    """The knob for a name of :data:`SIZING` (KeyError otherwise)."""
    if name == "sizing.cpu_weight":
        return CpuWeightKnob(cgroup=cgroup)
    if name == "sizing.memory_gib":
        return MemoryKnob(cgroup=cgroup)
    if name in ("sizing.cpuset_cpus", "sizing.cpuset_mems"):
        return CpusetKnob(cgroup=cgroup, what=name.rsplit("_", 1)[1])
    raise KeyError(name)


def _percent(x: Any) -> str:
    return f"{round(float(x) * 100, 2):g}%"


class SizingFamily(Family):
    """``sizing.*``: the resources of the workload cgroup a run creates."""

    name = "sizing"
    patterns = ("sizing.vcpus", *SIZING)
    workload = True
    exports = {
        "sizing.vcpus": KnobExport(systemd=SystemdOption(
            "CPUQuota", _percent, note=lambda v: f"CPUQuota: sizing.vcpus={v} CPUs x 100%")),
        # the cgroup v2 cpu.weight scale, 1-10000, 100 = default
        "sizing.cpu_weight": KnobExport(systemd=SystemdOption("CPUWeight", lambda v: str(int(v)))),
        "sizing.memory_gib": KnobExport(systemd=SystemdOption(
            "MemoryMax", lambda v: str(round(float(v) * GIB)),
            note=lambda v: f"MemoryMax: sizing.memory_gib={v} GiB in bytes")),
        "sizing.cpuset_cpus": KnobExport(systemd=SystemdOption("AllowedCPUs", one_line)),
        "sizing.cpuset_mems": KnobExport(systemd=SystemdOption("AllowedMemoryNodes", one_line)),
    }

    def resolve(self, name: str, env: Env) -> Knob:
        if name == "sizing.vcpus":
            return VcpusKnob(cgroup=env.context.cgroup)
        return sizing_knob(name, env.context.cgroup)


FAMILY = SizingFamily()
