"""CPU frequency policy (TuneD's plugin_cpu): ``cpufreq.governor``, ``cpufreq.epp``.

One logical value for every CPU: the knob writes the same word into each
``/sys/devices/system/cpu/cpuN/cpufreq/<file>`` (CPU directories matched
against the listing, never pasted from input). The choices are cpu0's
``scaling_available_governors`` / ``energy_performance_available_preferences``.
Without a cpufreq driver (most VMs) the knobs are listed as unavailable.

The token is a multi-file one (``kind="files"``): ``old`` maps each file to
its raw content, and a failed write part-way puts back the files already written.
``cpufreq.epp`` is read by intel_pstate's ``powersave`` governor only: a study
proposes it with that governor. :data:`FAMILY` declares the ``cpufreq`` family.
"""

from __future__ import annotations

import re
from typing import Any

from actuators.base import Domain, Knob, Token
from actuators.errors import ActuatorError
from actuators.family import Condition, Env, Family, KnobExport, TunedOption
from actuators.sysroot import SysRoot

__all__ = ["CPUFREQ", "FAMILY", "CpufreqFamily", "CpufreqKnob", "cpu_dirs", "cpufreq_knob"]

_CPUS = "sys/devices/system/cpu"
_CPU = re.compile(r"cpu[0-9]+")

#: name -> (file in cpuN/cpufreq/, file listing the choices, description)
CPUFREQ: dict[str, tuple[str, str, str]] = {
    "cpufreq.governor": (
        "scaling_governor", "scaling_available_governors",
        "cpufreq governor of every CPU (e.g. performance, schedutil).",
    ),
    "cpufreq.epp": (
        "energy_performance_preference",
        "energy_performance_available_preferences",
        "Energy/performance preference of every CPU (intel_pstate/amd-pstate active mode).",
    ),
}


def cpu_dirs(root: SysRoot) -> list[str]:
    """``cpuN`` entries of ``sys/devices/system/cpu``, in CPU order."""
    return sorted((d for d in root.listdir(_CPUS) if _CPU.fullmatch(d)), key=lambda d: int(d[3:]))


class CpufreqKnob(Knob):
    """The same cpufreq word written for every CPU."""

    def __init__(self, *, root: SysRoot, leaf: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.root = root
        self.leaf = leaf

    def files(self) -> list[str]:
        """Root-relative files, one per CPU that has it."""
        rels = (f"{_CPUS}/{c}/cpufreq/{self.leaf}" for c in cpu_dirs(self.root))
        return [r for r in rels if self.root.exists(r)]

    def available(self) -> str | None:
        base = f"{_CPUS}/cpu0/cpufreq"
        if not self.root.path(base).is_dir():
            return f"no cpufreq driver (/{base} missing)"
        files = self.files()
        if not files:
            return f"the cpufreq driver has no {self.leaf}"
        if not all(self.root.writable(r) for r in files):
            return f"{self.leaf} is not writable (needs root)"
        if not self.domain.choices:
            return "the driver offers no choices"
        return None

    def read(self) -> str:
        files = self.files()
        if not files:
            raise ActuatorError(f"{self.name}: no {self.leaf} file")
        values = [self.root.read(r).strip() for r in files]
        if len(set(values)) == 1:
            return values[0]
        return "mixed:" + ",".join(values)

    def prepare(self, value: Any) -> Token:
        new = self.validate(value)
        self.check_available()
        files = self.files()
        old = {r: self.root.read(r) for r in files}
        return Token(
            knob=self.name, scope=self.scope, target="files:" + ",".join(files),
            old=old, new={r: str(new) for r in files}, value=new, kind="files",
        )

    def commit(self, token: Token) -> None:
        done: list[str] = []
        try:
            for rel, data in token.new.items():
                self.root.write(rel, data)
                done.append(rel)
        except ActuatorError:
            for rel in reversed(done):
                try:
                    self.root.restore(rel, token.old[rel])
                except ActuatorError:
                    pass
            raise

    def restore(self, token: Token) -> None:
        errors = []
        for rel, raw in reversed(list(token.old.items())):
            try:
                self.root.restore(rel, raw)
            except ActuatorError as err:
                errors.append(str(err))
        if errors:
            raise ActuatorError(f"{self.name}: restore failed: " + "; ".join(errors))


def cpufreq_knob(name: str, root: SysRoot) -> CpufreqKnob:
    """The knob for a name of :data:`CPUFREQ` (KeyError otherwise)."""
    leaf, avail, description = CPUFREQ[name]
    try:
        choices = tuple(root.read(f"{_CPUS}/cpu0/cpufreq/{avail}").split())
    except ActuatorError:
        choices = ()
    return CpufreqKnob(
        root=root,
        leaf=leaf,
        name=name,
        domain=Domain("categorical", choices=choices),
        risk="medium",
        scope="host",
        needs_root=True,
        description=description,
    )


#: TuneD [cpu] plugin option of each knob
_TUNED_CPU = {"cpufreq.governor": "governor", "cpufreq.epp": "energy_performance_preference"}


class CpufreqFamily(Family):
    """``cpufreq.*``: one cpufreq word for every CPU (TuneD's ``[cpu]`` plugin)."""

    name = "cpufreq"
    patterns = tuple(CPUFREQ)
    # EPP is read by intel_pstate's powersave
    conditions = (Condition("cpufreq.epp", "cpufreq.governor", ("powersave",)),)
    restore_kinds = ("files",)
    exports = {
        n: KnobExport(file=f"/{_CPUS}/cpu[0-9]*/cpufreq/{leaf}", glob=True, tuned=TunedOption("cpu", _TUNED_CPU[n]))
        for n, (leaf, _, _) in CPUFREQ.items()
    }

    def resolve(self, name: str, env: Env) -> Knob:
        return cpufreq_knob(name, env.root)


FAMILY = CpufreqFamily()
