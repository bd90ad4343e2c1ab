"""``target: {memory: {limit: 1G}}``: the workload runs in a cgroup of the study's own whose memory, page
cache included, is limited to ``limit`` for the whole study: a container's memory limit, part of what is
measured, not a knob. With it a data set larger than ``limit`` is read as on a machine that cannot cache it
(the 24 GiB here would cache a 4 GiB device after a few windows), which is what makes the device's
read-ahead matter to a reader that maps its data (experiments/specs/scenario-block-mmap.yaml).

The cgroup is made, journaled and removed like any workload cgroup (:class:`actuators.cgroup.WorkloadCgroup`),
so the limit goes with it: no host setting changes. Refused (exit 2, nothing made): a passive workload (its
processes are not novatune's), a neighbour target (the sizing cgroup is the batch job's), a
``sizing.memory_gib`` knob (it would change the limit), a limit below 64M or above the machine's memory.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from experiments.study.target_loop import size_bytes

__all__ = ["MEMORY_MIN", "MemoryTargetSpec", "memory_problems"]

MEMORY_MIN = 64 << 20


def _machine_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


class MemoryTargetSpec(BaseModel):
    """The workload cgroup's memory limit (``"1G"``, ``"512M"``; 64M .. the machine's memory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: str

    @field_validator("limit", mode="before")
    @classmethod
    def _bounded(cls, v: Any) -> str:
        n = size_bytes(v)
        if not MEMORY_MIN <= n <= _machine_bytes():
            raise ValueError(f"limit must be between 64M and the machine's memory ({_machine_bytes() >> 20}M), "
                             f"got {v!r}")
        return str(v)

    @property
    def bytes(self) -> int:
        return size_bytes(self.limit)


def memory_problems(spec: Any) -> list[str]:
    """What is wrong with the spec's memory target; empty if nothing (or none)."""
    target = spec.target
    if target is None or target.memory is None:
        return []
    out = []
    if spec.workload.kind == "passive":
        out.append("target.memory: a passive workload's processes are not novatune's to limit; allowed with "
                   "target.memory: a workload novatune starts")
    if target.neighbour is not None:
        out.append("target.memory: with target.neighbour the workload cgroup is the batch job's; use one of them")
    if "sizing.memory_gib" in spec.knobs:
        out.append("knobs.sizing.memory_gib: target.memory fixes the workload's memory limit; tune one or the other")
    return out

