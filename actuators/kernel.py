"""``kernel.*`` scheduler sysctls under ``/proc/sys/kernel`` (TuneD's plugin_sysctl / plugin_scheduler).

Only on/off switches whose both settings are safe: ``kernel.numa_balancing``
modes 2/3 (memory tiering) are refused. A kernel built without the feature
has no file; the knob is then listed as unavailable with that reason.
:data:`FAMILY` declares the ``kernel`` family.
"""

from __future__ import annotations

from actuators.base import Knob
from actuators.family import Env, Family
from actuators.sysctl import SysctlKnob, SysctlSpec, int_sysctl, sysctl_export
from actuators.sysroot import SysRoot

__all__ = ["FAMILY", "KERNEL", "KernelFamily", "kernel_knob"]


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
        SysctlKnob, name=name, rel=spec.rel, low=spec.low, high=spec.high, risk=spec.risk,
        scope="host", description=spec.description, root=root,
    )


class KernelFamily(Family):
    """``kernel.*``: the scheduler sysctls of :data:`KERNEL`."""

    name = "kernel"
    patterns = tuple(KERNEL)
    exports = {n: sysctl_export(spec.rel) for n, spec in KERNEL.items()}

    def resolve(self, name: str, env: Env) -> Knob:
        return kernel_knob(name, env.root)


FAMILY = KernelFamily()
