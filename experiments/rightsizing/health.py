"""Is a running target still healthy after a right-sizing change? The samples, the rule, and one sampler.

:func:`experiments.rightsizing.workflow.validate` watches a target for a while after a change and rolls it back
when it degrades. What it watches is a :class:`Health` sample (from any callable: the usage collector's sampler,
or :class:`CgroupHealthSampler` here, which reads the cgroup's own files), judged against the sample taken
before the change (the baseline) by :class:`Judge`:

* an **OOM kill** (the cumulative ``oom_kill`` counter above the baseline's) degrades at once;
* **CPU throttling** (share of CFS periods throttled) above ``Thresholds.throttled_ratio`` *and* more than
  ``throttled_margin`` above the baseline's, on ``consecutive`` samples in a row (a target that was already
  throttled that much before the change is not blamed on it);
* **memory pressure** (PSI ``some avg10``, %, cgroup v2 only) likewise, with its own threshold and margin.

A field that is None (not available here) is not judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from collectors.cgroupstats import CgroupCpuReader, CgroupCpuSample, cpu_delta
from collectors.kernelfiles import parse_kv

__all__ = ["ALIASES", "CgroupHealthSampler", "Health", "Judge", "Thresholds"]

GIB = 1024**3


@dataclass(frozen=True)
class Health:
    """One sample of a target: ``throttled_ratio`` (0..1, since the previous sample), ``oom_kills`` (cumulative
    count), ``memory_pressure`` (PSI ``some avg10``, %), ``working_set_gib``; None: not available."""

    throttled_ratio: float | None = None
    oom_kills: int | None = None
    memory_pressure: float | None = None
    working_set_gib: float | None = None

    @classmethod
    def of(cls, value: object) -> Health:
        """A :class:`Health` from itself, a mapping or an object with (some of) its field names as keys or
        attributes (also the aliases of :data:`ALIASES`: ``oom_kill``, ``psi_some_avg10``, ``mem_gib``, ...);
        other keys are ignored, NaN and non-numbers read as None."""
        if isinstance(value, Health):
            return value
        get = value.get if isinstance(value, Mapping) else (lambda k: getattr(value, k, None))
        out: dict[str, Any] = {}
        for f in fields(cls):
            v = next((x for x in (get(n) for n in (f.name, *ALIASES.get(f.name, ()))) if x is not None), None)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[f.name] = int(v) if f.name == "oom_kills" else float(v)
            else:
                out[f.name] = None
        return cls(**out)


#: other names a sampler may give a field (the usage collector's, the kernel's)
ALIASES: dict[str, tuple[str, ...]] = {
    "throttled_ratio": ("throttled",),
    "oom_kills": ("oom_kill", "oom_count", "ooms"),
    "memory_pressure": ("memory_psi", "psi_some_avg10", "mem_psi_some_avg10", "mem_pressure"),
    "working_set_gib": ("mem_gib", "working_set"),
}


@dataclass(frozen=True)
class Thresholds:
    """When a sample counts as degraded (see the module doc)."""

    throttled_ratio: float = 0.25
    throttled_margin: float = 0.10
    memory_pressure: float = 20.0
    pressure_margin: float = 10.0
    consecutive: int = 2


class Judge:
    """Feeds samples against ``baseline``; :meth:`feed` returns why the target degraded, or None."""

    def __init__(self, baseline: Health, thresholds: Thresholds | None = None) -> None:
        self.baseline = baseline
        self.th = thresholds or Thresholds()
        self._streak = {"throttling": 0, "memory pressure": 0}
        self.worst: dict[str, float] = {}

    def _over(self, what: str, value: float | None, base: float | None, limit: float, margin: float,
              unit: str) -> str | None:
        if value is None:
            self._streak[what] = 0
            return None
        self.worst[what] = max(self.worst.get(what, 0.0), value)
        bar = max(limit, (base or 0.0) + margin)
        self._streak[what] = self._streak[what] + 1 if value > bar else 0
        if self._streak[what] >= self.th.consecutive:
            before = "n/a" if base is None else f"{base:.3g}{unit}"
            return (f"{what} {value:.3g}{unit} above {bar:.3g}{unit} on {self._streak[what]} samples in a row "
                    f"(before the change: {before})")
        return None

    def feed(self, sample: Health) -> str | None:
        """Why ``sample`` (with the ones before it) shows the target degraded; None while it does not."""
        b = self.baseline
        if sample.oom_kills is not None and sample.oom_kills > (b.oom_kills or 0):
            return f"OOM kill: {sample.oom_kills - (b.oom_kills or 0)} process(es) killed since the change"
        return (self._over("throttling", sample.throttled_ratio, b.throttled_ratio, self.th.throttled_ratio,
                           self.th.throttled_margin, "")
                or self._over("memory pressure", sample.memory_pressure, b.memory_pressure,
                              self.th.memory_pressure, self.th.pressure_margin, "%"))


def _int_field(text: str | None, key: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_kv(text, int).get(key)
    except ValueError:
        return None


class CgroupHealthSampler:
    """Samples a cgroup from its own files (v1: ``cpu``/``cpuacct``/``memory`` hierarchies, v2: one directory).

    ``cgroup`` is the path inside its hierarchy (``/system.slice/x.service``); ``base`` the cgroup mount
    (``/sys/fs/cgroup``). Each call returns the throttling since the previous call (the first call: since the
    sampler was made), the cumulative OOM kills (v1 ``memory.oom_control``, v2 ``memory.events``), memory PSI
    (v2 ``memory.pressure``) and the working set.

    Raises:
        CollectorError: the cgroup has no cpu directory.
    """

    def __init__(self, cgroup: str, *, base: Path = Path("/sys/fs/cgroup")) -> None:
        rel = cgroup.strip("/")
        self.v2 = (base / "cgroup.controllers").exists()
        if self.v2:
            self.cpu = self.memory = base / rel
            cpuacct = None
        else:
            self.cpu, self.memory = base / "cpu" / rel, base / "memory" / rel
            cpuacct = base / "cpuacct" / rel if (base / "cpuacct" / rel).is_dir() else None
        self.reader = CgroupCpuReader(self.cpu, cpuacct_path=cpuacct)
        self._last: CgroupCpuSample = self.reader.read()

    def _read(self, name: str) -> str | None:
        try:
            return (self.memory / name).read_text()
        except OSError:
            return None

    def _working_set(self) -> float | None:
        usage = self._read("memory.current" if self.v2 else "memory.usage_in_bytes")
        stat = self._read("memory.stat")
        try:
            used = int(usage.split()[0]) if usage else None
        except ValueError:
            return None
        inactive = _int_field(stat, "inactive_file" if self.v2 else "total_inactive_file") or 0
        return None if used is None else max(0, used - inactive) / GIB

    def _pressure(self) -> float | None:
        text = self._read("memory.pressure") if self.v2 else None
        for line in (text or "").splitlines():
            if line.startswith("some "):
                for word in line.split()[1:]:
                    k, _, v = word.partition("=")
                    if k == "avg10":
                        try:
                            return float(v)
                        except ValueError:
                            return None
        return None

    def __call__(self) -> Health:
        now = self.reader.read()
        try:
            ratio: float | None = cpu_delta(self._last, now).throttled_ratio
        except ValueError:
            ratio = None
        self._last = now
        oom = _int_field(self._read("memory.events" if self.v2 else "memory.oom_control"), "oom_kill")
        return Health(throttled_ratio=None if ratio is None or math.isnan(ratio) else ratio, oom_kills=oom,
                      memory_pressure=self._pressure(), working_set_gib=self._working_set())

