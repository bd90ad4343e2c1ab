"""CPU usage and throttling of one cgroup (v1 ``cpu``/``cpuacct`` or v2), for per-trial reports.

Usage::

    reader = CgroupCpuReader("/sys/fs/cgroup/cpu/novatune-run")   # or a v2 directory
    before = reader.read()
    ...                                                           # the trial runs
    delta = cpu_delta(before, reader.read())
    delta.throttled_ratio, delta.cpu_vcpus, delta.throttled_s

Files read:

* v1: ``cpu.stat`` (``nr_periods``, ``nr_throttled``, ``throttled_time`` in ns)
  and ``cpuacct.usage`` (ns) — from the same directory when the controllers are
  co-mounted, or from ``cpuacct_path`` when ``cpuacct`` is mounted apart.
* v2 (a directory with ``cgroup.controllers``): ``cpu.stat`` (``usage_usec``,
  ``user_usec``, ``system_usec``, ``nr_periods``, ``nr_throttled``,
  ``throttled_usec``).

A missing or unreadable file or field becomes ``None`` in the sample and is
reported ONCE per reader through the ``collectors.cgroupstats`` logger; reading
never raises once the reader exists (the cgroup may vanish mid-trial).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from collectors.errors import CollectorError
from collectors.kernelfiles import parse_kv
from collectors.rootfs import RootReader

__all__ = ["CgroupCpuReader", "CgroupCpuSample", "CgroupCpuDelta", "cpu_delta", "read_cpu_stats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CgroupCpuSample:
    """Cumulative counters of one cgroup at ``monotonic_s``; ``None`` = not available here."""

    monotonic_s: float
    version: int
    usage_ns: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_ns: int | None


@dataclass(frozen=True)
class CgroupCpuDelta:
    """What happened between two samples. NaN where a counter is unavailable.

    ``cpu_vcpus`` is the average number of CPUs used (usage / wall time);
    ``throttled_ratio`` is throttled periods / enforcement periods (0 when no
    period elapsed, e.g. no quota set).
    """

    wall_s: float
    cpu_s: float
    cpu_vcpus: float
    periods: float
    throttled_periods: float
    throttled_ratio: float
    throttled_s: float


class CgroupCpuReader:
    """Read CPU counters of the cgroup directory ``path``.

    Args:
        path: the cgroup directory (v1 ``cpu`` hierarchy, or v2).
        cpuacct_path: v1 only: the matching directory in the ``cpuacct``
            hierarchy when it is mounted apart from ``cpu``.

    Raises:
        CollectorError: ``path`` is not a directory.
    """

    def __init__(self, path: str | os.PathLike[str], *, cpuacct_path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CollectorError(f"cgroup directory {self.path} does not exist")
        self.version = 2 if (self.path / "cgroup.controllers").exists() else 1
        self.cpuacct_path = Path(cpuacct_path) if cpuacct_path is not None else self.path
        self._reported: set[str] = set()

    def _once(self, what: str, detail: object) -> None:
        if what not in self._reported:
            self._reported.add(what)
            log.warning("cgroup %s: %s unavailable (%s); reported as missing", self.path, what, detail)

    def _read_text(self, fs: RootReader, name: str) -> str | None:
        try:
            return fs.read_bytes(name).decode()
        except OSError as err:
            self._once(name, err.strerror or err)
            return None
        except fs.unsafe_error as err:
            self._once(name, err)
            return None

    def _field(self, stats: dict[str, int] | None, key: str, *, scale: int = 1) -> int | None:
        if stats is None:
            return None
        if key not in stats:
            self._once(f"cpu.stat field {key}", "not in cpu.stat")
            return None
        return stats[key] * scale

    def read(self) -> CgroupCpuSample:
        """Read the counters now. Never raises for missing files (see module doc)."""
        now = time.monotonic()
        # each directory is the root of its own reader (resolved at every read: a file never resolves outside it)
        text = self._read_text(RootReader(self.path), "cpu.stat")
        stats = parse_kv(text, int) if text is not None else None
        if self.version == 2:
            return CgroupCpuSample(
                monotonic_s=now,
                version=2,
                usage_ns=self._field(stats, "usage_usec", scale=1000),
                nr_periods=self._field(stats, "nr_periods"),
                nr_throttled=self._field(stats, "nr_throttled"),
                throttled_ns=self._field(stats, "throttled_usec", scale=1000),
            )
        usage_text = self._read_text(RootReader(self.cpuacct_path), "cpuacct.usage")
        usage: int | None = None
        if usage_text is not None:
            try:
                usage = int(usage_text.strip())
            except ValueError:
                self._once("cpuacct.usage", f"unparsable content {usage_text[:40]!r}")
        return CgroupCpuSample(
            monotonic_s=now,
            version=1,
            usage_ns=usage,
            nr_periods=self._field(stats, "nr_periods"),
            nr_throttled=self._field(stats, "nr_throttled"),
            throttled_ns=self._field(stats, "throttled_time"),
        )


def _d(after: int | None, before: int | None) -> float:
    if after is None or before is None or after < before:
        return math.nan
    return float(after - before)


def cpu_delta(before: CgroupCpuSample, after: CgroupCpuSample) -> CgroupCpuDelta:
    """Usage and throttling between two samples of the same cgroup.

    Raises:
        ValueError: ``after`` is not later than ``before``.
    """
    wall = after.monotonic_s - before.monotonic_s
    if wall <= 0:
        raise ValueError("cpu_delta: 'after' must be read after 'before'")
    cpu_s = _d(after.usage_ns, before.usage_ns) / 1e9
    periods = _d(after.nr_periods, before.nr_periods)
    throttled = _d(after.nr_throttled, before.nr_throttled)
    if math.isnan(periods) or math.isnan(throttled):
        ratio = math.nan
    else:
        ratio = throttled / periods if periods > 0 else 0.0
    return CgroupCpuDelta(
        wall_s=wall,
        cpu_s=cpu_s,
        cpu_vcpus=cpu_s / wall,
        periods=periods,
        throttled_periods=throttled,
        throttled_ratio=ratio,
        throttled_s=_d(after.throttled_ns, before.throttled_ns) / 1e9,
    )


def read_cpu_stats(
    path: str | os.PathLike[str], *, cpuacct_path: str | os.PathLike[str] | None = None
) -> CgroupCpuSample:
    """One-shot read of the cgroup at ``path`` (see :class:`CgroupCpuReader`).

    Fields the cgroup does not provide are ``None`` (reported once per call).

    Raises:
        CollectorError: ``path`` is not a directory.
    """
    return CgroupCpuReader(path, cpuacct_path=cpuacct_path).read()
