"""``kernel.*`` scheduler sysctls under ``/proc/sys/kernel`` (TuneD's plugin_sysctl / plugin_scheduler).

Only on/off switches whose both settings are safe: ``kernel.numa_balancing``
modes 2/3 (memory tiering) are refused. A kernel built without the feature
has no file; the knob is then listed as unavailable with that reason.
"""

from __future__ import annotations

from actuators.sysctl import SysctlKnob, SysctlSpec, int_sysctl
from actuators.sysroot import SysRoot

__all__ = ["KERNEL", "kernel_knob"]


#: name -> fixed relative file and hard bounds. Names never become paths.
KERNEL: dict[str, SysctlSpec] = {
    "kernel.sched_autogroup_enabled": SysctlSpec(
        "proc/sys/kernel/sched_autogroup_enabled", 0, 1, "low",
        "1: group tasks by session for CFS fairness (desktop); 0: per-task fairness (servers).",
    ),
    "kernel.numa_balancing": SysctlSpec(
        "proc/sys/kernel/numa_balancing", 0, 1, "medium",
        "Automatic NUMA page migration (0 off, 1 on; tiering modes refused).",
    ),
    "kernel.timer_migration": SysctlSpec(
        "proc/sys/kernel/timer_migration", 0, 1, "low",
        "1: timers may move to a busy CPU so idle CPUs stay idle; 0: keep timers where armed.",
    ),
}


def kernel_knob(name: str, root: SysRoot) -> SysctlKnob:
    """The knob for a name of :data:`KERNEL` (KeyError otherwise)."""
    spec = KERNEL[name]
    return int_sysctl(
        SysctlKnob, name=name, rel=spec.rel, low=spec.low, high=spec.high, risk=spec.risk,  # type: ignore[arg-type]
        scope="host", description=spec.description, root=root,
    )
