"""What a benchmark run records about the machine it ran on: identity, kernel, and the knobs' live values.

Two runs are comparable when they ran on the same machine with the same kernel; ``bench compare`` still
compares runs that differ, and says which fields differ (:func:`differences`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from typing import Any

__all__ = ["OTHERS_CPU_NOTE", "SNAPSHOT_SCOPES", "differences", "kernel", "knob_snapshot", "machine"]

#: the knob scopes a run snapshots: the machine's own knobs (not a study's cgroup, process or VM size)
SNAPSHOT_SCOPES = ("host", "device", "netns")
#: a difference in other processes' CPU use (CPUs) between two runs' groups that the comparison reports
OTHERS_CPU_NOTE = 0.25
#: the fields whose difference makes two runs a comparison across machines or kernels
_MACHINE_KEYS = ("hostname", "machine_id_sha256", "cpu_model", "cpu_count", "memory_bytes")
_KERNEL_KEYS = ("release", "version")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """The machine: ``hostname``, ``machine_id_sha256`` (the SHA-256 of /etc/machine-id, never the id itself),
    ``cpu_model``, ``cpu_count`` (online CPUs), ``memory_bytes`` (MemTotal); None where unreadable."""
    mid = _read("/etc/machine-id")
    model = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
            break
    return {
        "hostname": socket.gethostname(),
        "machine_id_sha256": hashlib.sha256(mid.strip().encode()).hexdigest() if mid and mid.strip() else None,
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "memory_bytes": mem,
    }


def kernel() -> dict[str, str]:
    """``uname``: ``system``, ``release``, ``version``, ``machine``."""
    u = platform.uname()
    return {"system": u.system, "release": u.release, "version": u.version, "machine": u.machine}


def knob_snapshot() -> dict[str, Any]:
    """The live value of every knob of :data:`SNAPSHOT_SCOPES` in the catalog (None where unreadable), read
    through :func:`experiments.autotune.steps.snapshot`; ``{}`` when the catalog cannot be built."""
    from collectors.errors import NovatuneError
    from experiments.autotune.steps import snapshot
    from experiments.deploy.applications import default_catalog

    try:
        names = [k.name for k in default_catalog(protect=False).knobs() if k.scope in SNAPSHOT_SCOPES]
    except NovatuneError:
        return {}
    return snapshot(sorted(names))


def differences(base: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """What differs between two stored runs' machine, kernel, machine load (other processes' CPU use per group,
    when it differs by :data:`OTHERS_CPU_NOTE` or more) and knobs, one phrase each (``[]``: nothing)."""
    out = []
    bm, rm = base.get("machine") or {}, run.get("machine") or {}
    for k in _MACHINE_KEYS:
        if bm.get(k) != rm.get(k):
            out.append(f"machine {k}: {bm.get(k)!r} -> {rm.get(k)!r}")
    bk, rk = base.get("kernel") or {}, run.get("kernel") or {}
    for k in _KERNEL_KEYS:
        if bk.get(k) != rk.get(k):
            out.append(f"kernel {k}: {bk.get(k)!r} -> {rk.get(k)!r}")
    bo, ro = base.get("others_cpu") or {}, run.get("others_cpu") or {}
    busier = {g: (bo[g], ro[g]) for g in set(bo) & set(ro) if abs(float(ro[g]) - float(bo[g])) >= OTHERS_CPU_NOTE}
    if busier:
        shown = ", ".join(f"{g} {b:.2f} -> {r:.2f}" for g, (b, r) in sorted(busier.items()))
        out.append(f"load: other processes used different CPU while measuring (CPUs, base -> run): {shown}")
    bs, rs = base.get("knobs") or {}, run.get("knobs") or {}
    changed = sorted(k for k in set(bs) & set(rs) if bs[k] != rs[k])
    if changed:
        shown = ", ".join(f"{k} {bs[k]!r} -> {rs[k]!r}" for k in changed[:10])
        more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
        out.append(f"knobs changed: {shown}{more}")
    return out
