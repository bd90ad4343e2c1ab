"""Named host and per-target metrics read straight from ``/proc`` and ``/sys``.

Usage::

    sampler = MetricsSampler(targets=[1234, "/sys/fs/cgroup/cpu/novatune-run"])
    sampler.sample()          # primes: gauges only, rates need a second sample
    time.sleep(1)
    values = sampler.sample() # {"cpu.user_pct": 3.1, "disk.vda.read_iops": 12.0, ...}
    sampler.metrics()         # [MetricInfo(name, unit, kind, source, description), ...]
    sampler.gaps              # {"psi.cpu": "/proc/pressure/cpu: No such file ...", ...}

Kinds: ``"gauge"`` is the value read now; ``"counter"`` is derived from
cumulative counters over the interval between two ``sample()`` calls (a
per-second rate, or a ratio of two deltas such as CPU mode %, disk latency,
queue depth, utilisation). The FIRST ``sample()`` only primes the counters and
returns gauges only; every later call returns every metric. A counter that went
backwards (wrap, reset) yields no value for that interval.

Names are dotted: ``cpu.<mode>_pct`` (all CPUs) and ``cpu.<n>.<mode>_pct``,
``load.1m``, ``psi.<res>.<some|full>.avg10``, ``mem.*``, ``vm.*``,
``disk.<dev>.*``, ``net.<iface>.*``, ``tcp.*``, ``target.<label>.*`` where
label is ``pid<N>`` (the process and its descendants) or ``cgroup:<dir>``.

Per-target cgroup metrics (``target.cgroup:<dir>.*``):

* both versions: ``cpu_s_per_s``, ``throttled_pct``, ``throttled_s_per_s``,
  ``threads``, ``memory_bytes`` (gauge), ``read_bytes_per_s``,
  ``write_bytes_per_s``, ``oom_kills_per_s``;
* v2 (one directory): ``memory.current``, ``io.stat`` (rbytes/wbytes summed over
  devices), ``memory.events`` -> ``memory_high_events_per_s``,
  ``memory_max_events_per_s``, ``oom_kills_per_s``; ``memory.pressure`` (the
  cgroup's PSI) ``some avg10`` -> ``memory_pressure_pct`` (gauge);
* v1 (each controller its own hierarchy): CPU from ``cpu``/``cpuacct``; the
  cgroup at the same relative path in the ``memory`` hierarchy gives
  ``memory.usage_in_bytes`` -> ``memory_bytes``, ``memory.failcnt`` ->
  ``memory_failcnt_per_s`` (times the limit was hit) and ``memory.oom_control``
  ``oom_kill`` -> ``oom_kills_per_s`` (kernels >= 4.13); the one in the
  ``blkio`` hierarchy gives ``blkio.throttle.io_service_bytes`` (Read / Write
  summed over devices, ``Total`` not added) -> ``read/write_bytes_per_s``.
  Those throttle counters are kept by the block throttling layer: on recent
  kernels (seen on 6.18 with no ``blkio.throttle.*`` limit set anywhere) they
  stay 0, so 0 there means "not counted" as much as "no IO". A peer directory
  that does not exist is one gap (``target.<label>.memory`` / ``.blkio``).

Missing or unreadable files and fields are reported ONCE (a warning on the
``collectors.metrics`` logger and an entry in :attr:`MetricsSampler.gaps`),
never per sample and never as an exception. A target pid or cgroup that
vanishes is reported in ``gaps`` under ``target.<label>`` and skipped from then
on. The root (default ``/``) is swappable: tests feed recorded trees.
"""

from __future__ import annotations

from collectors.metrics.sampler import MetricsSampler
from collectors.metrics.snapshot import KINDS, MetricInfo
from collectors.metrics.targets import Target, parse_target

__all__ = ["KINDS", "MetricInfo", "MetricsSampler", "Target", "parse_target"]
