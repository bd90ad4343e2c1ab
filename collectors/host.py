"""Host-wide metrics sampled with psutil in a background thread.

:class:`HostSampler` samples CPU mode shares, load, memory, swap, context
switches, interrupts, disk and network I/O every ``interval_s`` and returns a
pandas DataFrame indexed by UTC timestamps, one column per entry of
:data:`METRICS`. Counters (cumulative since boot) become per-second rates over
the interval that ends at the row's timestamp; the first sample is the baseline
only, so a run of ``n`` samples yields ``n - 1`` rows.

A metric psutil cannot provide here (no disks, no ``/proc/diskstats``, a
permission problem) becomes NaN and is reported ONCE through the
``collectors.host`` logger, never per sample and never as a crash.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import psutil

from collectors.errors import CollectorError

__all__ = ["HostSampler", "MetricInfo", "METRICS"]

log = logging.getLogger(__name__)


class MetricInfo(NamedTuple):
    """What a column means: ``unit`` (``"%"``, ``"bytes"``, ``"bytes/s"``,
    ``"1/s"``, ``"1"``), ``kind`` (``"gauge"``: an instantaneous value;
    ``"rate"``: a counter turned into a per-second rate) and ``source`` (the
    psutil call it comes from)."""

    unit: str
    kind: str
    source: str


_CPU = "psutil.cpu_times"
_MEM = "psutil.virtual_memory"
METRICS: dict[str, MetricInfo] = {
    "cpu_user_pct": MetricInfo("%", "gauge", _CPU),
    "cpu_system_pct": MetricInfo("%", "gauge", _CPU),
    "cpu_iowait_pct": MetricInfo("%", "gauge", _CPU),
    "cpu_steal_pct": MetricInfo("%", "gauge", _CPU),
    "cpu_util_pct": MetricInfo("%", "gauge", _CPU),
    "load1": MetricInfo("1", "gauge", "psutil.getloadavg"),
    "mem_used_pct": MetricInfo("%", "gauge", _MEM),
    "mem_used_bytes": MetricInfo("bytes", "gauge", _MEM),
    "mem_available_bytes": MetricInfo("bytes", "gauge", _MEM),
    "mem_available_pct": MetricInfo("%", "gauge", _MEM),
    "mem_cached_bytes": MetricInfo("bytes", "gauge", _MEM),
    "mem_cached_pct": MetricInfo("%", "gauge", _MEM),
    "swap_used_bytes": MetricInfo("bytes", "gauge", "psutil.swap_memory"),
    "swap_used_pct": MetricInfo("%", "gauge", "psutil.swap_memory"),
    "ctx_switches_per_s": MetricInfo("1/s", "rate", "psutil.cpu_stats"),
    "interrupts_per_s": MetricInfo("1/s", "rate", "psutil.cpu_stats"),
    "disk_read_bytes_per_s": MetricInfo("bytes/s", "rate", "psutil.disk_io_counters"),
    "disk_write_bytes_per_s": MetricInfo("bytes/s", "rate", "psutil.disk_io_counters"),
    "disk_read_ops_per_s": MetricInfo("1/s", "rate", "psutil.disk_io_counters"),
    "disk_write_ops_per_s": MetricInfo("1/s", "rate", "psutil.disk_io_counters"),
    "net_recv_bytes_per_s": MetricInfo("bytes/s", "rate", "psutil.net_io_counters"),
    "net_sent_bytes_per_s": MetricInfo("bytes/s", "rate", "psutil.net_io_counters"),
}
_COLUMNS = tuple(METRICS)
_NAN = float("nan")
# psutil reads its procfs root from a module global; swapping it is serialised here
_PROCFS_LOCK = threading.Lock()


class _Raw(NamedTuple):
    """One raw reading: counters as psutil gives them (cumulative), gauges as-is."""

    mono: float
    wall_ns: int
    cpu: tuple[float, ...] | None  # user, system, iowait, steal, idle, total
    load1: float
    mem: tuple[float, ...]  # used_pct, used_b, avail_b, avail_pct, cached_b, cached_pct
    swap: tuple[float, float]
    ctx_intr: tuple[float, float] | None
    disk: tuple[float, float, float, float] | None
    net: tuple[float, float] | None


class HostSampler:
    """Sample host metrics every ``interval_s`` in a daemon thread.

    Args:
        interval_s: sampling period in seconds (> 0).
        proc_root: where procfs is mounted (default ``/proc``); tests point it
            at a recorded tree. psutil keeps this in a module global, so it is
            swapped in only for the duration of each sample, under a lock.

    Single use: :meth:`start` once, :meth:`stop` once.
    """

    def __init__(self, *, interval_s: float = 0.5, proc_root: str | os.PathLike[str] | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.proc_root = None if proc_root is None else str(Path(proc_root))
        self._rows: list[tuple[int, tuple[float, ...]]] = []
        self._prev: _Raw | None = None
        self._thread: threading.Thread | None = None
        self._stop_evt = threading.Event()
        self._reported: set[str] = set()
        self._failure: BaseException | None = None
        self._stopped = False

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Take the baseline sample and start the sampling thread.

        Raises:
            RuntimeError: already started (a sampler is single use).
            CollectorError: the baseline sample failed (e.g. no procfs at proc_root).
        """
        if self._thread is not None or self._stopped:
            raise RuntimeError("HostSampler already started (single use: create a new one)")
        self._prev = self._read()
        self._thread = threading.Thread(target=self._loop, name="novatune-host-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> pd.DataFrame:
        """Stop the thread (takes one last sample) and return the series.

        Returns:
            DataFrame indexed by UTC ``timestamp``, columns ``list(METRICS)``,
            float64; NaN where a metric is unavailable.

        Raises:
            RuntimeError: not started, or already stopped.
            CollectorError: the sampling thread failed (original error chained).
        """
        if self._thread is None or self._stopped:
            raise RuntimeError("HostSampler.stop() without a running sampler")
        self._stop_evt.set()
        self._thread.join()
        self._stopped = True
        if self._failure is not None:
            raise CollectorError(f"host sampling failed: {self._failure}") from self._failure
        return self._frame()

    def sample_once(self) -> None:
        """Take one sample now (in the calling thread); used by tests and by callers without a thread."""
        self._append(self._read())

    # ------------------------------------------------------------------ internals

    def _loop(self) -> None:
        next_t = time.monotonic() + self.interval_s
        try:
            while not self._stop_evt.wait(max(0.0, next_t - time.monotonic())):
                self._append(self._read())
                next_t += self.interval_s
                if next_t < time.monotonic():  # fell behind (suspended?): do not burst to catch up
                    next_t = time.monotonic() + self.interval_s
            # closing sample, unless the interval since the last one is too short to give meaningful rates
            if self._prev is None or time.monotonic() - self._prev.mono >= self.interval_s / 2:
                self._append(self._read())
        except BaseException as err:  # noqa: BLE001 - re-raised from stop()
            self._failure = err

    def _once(self, what: str, err: BaseException) -> None:
        if what not in self._reported:
            self._reported.add(what)
            log.warning("host metric source %s unavailable (%s); its columns are NaN", what, err)

    @contextmanager
    def _procfs(self) -> Iterator[None]:
        if self.proc_root is None:
            yield
            return
        with _PROCFS_LOCK:
            saved = psutil.PROCFS_PATH
            psutil.PROCFS_PATH = self.proc_root
            try:
                yield
            finally:
                psutil.PROCFS_PATH = saved

    def _try(self, what: str, fn: Callable[[], object]) -> object | None:
        try:
            return fn()
        except (OSError, psutil.Error, RuntimeError, ValueError, AttributeError) as err:
            self._once(what, err)
            return None

    def _read(self) -> _Raw:
        with self._procfs():
            cpu = self._try("cpu_times", psutil.cpu_times)
            load = self._try("getloadavg", psutil.getloadavg)
            vm = self._try("virtual_memory", psutil.virtual_memory)
            sw = self._try("swap_memory", psutil.swap_memory)
            st = self._try("cpu_stats", psutil.cpu_stats)
            dk = self._try("disk_io_counters", lambda: psutil.disk_io_counters(nowrap=True))
            nt = self._try("net_io_counters", lambda: psutil.net_io_counters(nowrap=True))
        if cpu is None and vm is None:
            raise CollectorError(f"no host metrics readable (procfs root {self.proc_root or '/proc'})")
        if dk is None and "disk_io_counters" not in self._reported:
            self._once("disk_io_counters", OSError("no disk statistics"))
        cpu_t = None
        if cpu is not None:
            total = float(sum(cpu))  # type: ignore[arg-type]
            cpu_t = (
                cpu.user + getattr(cpu, "nice", 0.0),  # type: ignore[attr-defined]
                cpu.system + getattr(cpu, "irq", 0.0) + getattr(cpu, "softirq", 0.0),  # type: ignore[attr-defined]
                getattr(cpu, "iowait", 0.0),
                getattr(cpu, "steal", 0.0),
                cpu.idle,  # type: ignore[attr-defined]
                total,
            )
        if vm is not None:
            tot = float(vm.total) or _NAN  # type: ignore[attr-defined]
            cached = float(getattr(vm, "cached", _NAN))
            mem = (  # same order as the mem_* entries of METRICS
                float(vm.percent),  # type: ignore[attr-defined]
                float(vm.used),  # type: ignore[attr-defined]
                float(vm.available),  # type: ignore[attr-defined]
                100.0 * vm.available / tot,  # type: ignore[attr-defined]
                cached,
                100.0 * cached / tot,
            )
        else:
            mem = (_NAN,) * 6
        return _Raw(
            mono=time.monotonic(),
            wall_ns=time.time_ns(),
            cpu=cpu_t,
            load1=float(load[0]) if load is not None else _NAN,  # type: ignore[index]
            mem=mem,
            swap=(float(sw.used), float(sw.percent)) if sw is not None else (_NAN, _NAN),  # type: ignore[attr-defined]
            ctx_intr=(float(st.ctx_switches), float(st.interrupts)) if st is not None else None,  # type: ignore[attr-defined]
            disk=(
                (float(dk.read_bytes), float(dk.write_bytes), float(dk.read_count), float(dk.write_count))  # type: ignore[attr-defined]
                if dk is not None
                else None
            ),
            net=(float(nt.bytes_recv), float(nt.bytes_sent)) if nt is not None else None,  # type: ignore[attr-defined]
        )

    @staticmethod
    def _rates(now: tuple[float, ...] | None, before: tuple[float, ...] | None, dt: float) -> tuple[float, ...]:
        if now is None or before is None:
            n = len(now or before or ())
            return (_NAN,) * n
        # a counter going backwards was reset: no rate for that interval
        return tuple((a - b) / dt if a >= b else _NAN for a, b in zip(now, before, strict=True))

    def _append(self, cur: _Raw) -> None:
        prev, self._prev = self._prev, cur
        if prev is None:
            return
        dt = cur.mono - prev.mono
        if dt <= 0:
            return
        if cur.cpu is not None and prev.cpu is not None and cur.cpu[5] > prev.cpu[5]:
            d = [max(0.0, a - b) for a, b in zip(cur.cpu, prev.cpu, strict=True)]
            # idle can step backwards on some (virtualised, NO_HZ) kernels: never let a share leave 0..100
            tot = max(d[5], sum(d[:5]))
            user, system, iowait, steal = (min(100.0, 100.0 * x / tot) for x in d[:4])
            util = min(100.0, max(0.0, 100.0 - 100.0 * (d[4] + d[2]) / tot))  # psutil: idle+iowait are not busy
            cpu = (user, system, iowait, steal, util)
        else:
            cpu = (_NAN,) * 5
        ctx = self._rates(cur.ctx_intr, prev.ctx_intr, dt) if cur.ctx_intr or prev.ctx_intr else (_NAN,) * 2
        disk = self._rates(cur.disk, prev.disk, dt) if cur.disk or prev.disk else (_NAN,) * 4
        net = self._rates(cur.net, prev.net, dt) if cur.net or prev.net else (_NAN,) * 2
        row = (*cpu, cur.load1, *cur.mem, *cur.swap, *ctx, *disk, *net)
        self._rows.append((cur.wall_ns, row))

    def _frame(self) -> pd.DataFrame:
        if not self._rows:
            values = np.empty((0, len(_COLUMNS)))
            stamps: list[int] = []
        else:
            stamps = [ts for ts, _ in self._rows]
            values = np.array([r for _, r in self._rows], dtype=float)
        index = pd.DatetimeIndex(pd.to_datetime(stamps, unit="ns", utc=True), name="timestamp")
        return pd.DataFrame(values, index=index, columns=list(_COLUMNS))
