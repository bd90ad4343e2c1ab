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

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from collectors.cgroupstats import CgroupCpuReader
from collectors.errors import CollectorError

__all__ = ["KINDS", "MetricInfo", "MetricsSampler", "Target", "parse_target"]

log = logging.getLogger(__name__)

KINDS = ("gauge", "counter")
_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_TCP_STATES = {
    "01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1", "05": "fin_wait2",
    "06": "time_wait", "07": "close", "08": "close_wait", "09": "last_ack", "0A": "listen", "0B": "closing",
}
_VMSTAT = {  # vmstat field -> (metric suffix, description)
    "pgmajfault": "major page faults",
    "pgfault": "page faults (minor + major)",
    "pswpin": "pages swapped in",
    "pswpout": "pages swapped out",
    "thp_fault_alloc": "THP allocated on fault",
    "thp_fault_fallback": "THP fault fell back to small pages",
    "thp_collapse_alloc": "THP collapsed by khugepaged",
    "thp_split_page": "THP split",
    "compact_stall": "direct compaction stalls",
    "compact_success": "successful compactions",
    "compact_fail": "failed compactions",
    "numa_hit": "NUMA allocations on the intended node",
    "numa_miss": "NUMA allocations on another node",
    "numa_foreign": "NUMA allocations intended here, placed elsewhere",
}
_MEMINFO = {  # metric -> (meminfo keys summed, sign) ; used = total - free - buffers - cached
    "mem.total_bytes": "MemTotal",
    "mem.free_bytes": "MemFree",
    "mem.available_bytes": "MemAvailable",
    "mem.buffers_bytes": "Buffers",
    "mem.cached_bytes": "Cached",
    "mem.dirty_bytes": "Dirty",
    "swap.total_bytes": "SwapTotal",
    "swap.free_bytes": "SwapFree",
}
_NETDEV_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", None, None, None, None,
                  "tx_bytes", "tx_packets", "tx_errs", "tx_drop")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:@+-]+$")
_DT = "@dt"  # denominator key meaning "elapsed seconds"


@dataclass(frozen=True)
class MetricInfo:
    """One metric: ``unit`` (``"%"``, ``"bytes"``, ``"1/s"``, ``"bytes/s"``, ``"ms"``, ``"1"``, ...),
    ``kind`` (``"gauge"`` | ``"counter"``, see module doc) and ``source`` (the file under the root)."""

    name: str
    unit: str
    kind: str
    source: str
    description: str = ""


@dataclass(frozen=True)
class Target:
    """A pid tree (``pid`` set) or a cgroup directory (``cgroup`` set, absolute, under the root)."""

    label: str
    pid: int | None = None
    cgroup: Path | None = None
    cpuacct: Path | None = None  # v1: the matching cpuacct directory when mounted apart from cpu
    # v1 only: the cgroup at the same relative path in the ``memory`` / ``blkio`` hierarchy (``cgroup``
    # itself when co-mounted; may not exist: a gap then). None: v2, or that hierarchy is not mounted.
    memory: Path | None = None
    blkio: Path | None = None


@dataclass
class _Snap:
    """One read of everything: gauges, raw cumulative counters, and derived-metric recipes."""

    t: float
    gauges: dict[str, float] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    # metric name -> (numerator raw key, denominator raw key or _DT, scale)
    derived: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    infos: dict[str, MetricInfo] = field(default_factory=dict)

    def gauge(self, name: str, value: float, unit: str, source: str, desc: str = "") -> None:
        self.gauges[name] = float(value)
        self.infos[name] = MetricInfo(name, unit, "gauge", source, desc)

    def rate(self, name: str, value: float, unit: str, source: str, desc: str = "", *, scale: float = 1.0) -> None:
        """A counter reported as ``scale * d(value) / dt``."""
        self.raw[name] = float(value)
        self.derived[name] = (name, _DT, scale)
        self.infos[name] = MetricInfo(name, unit, "counter", source, desc)

    def ratio(self, name: str, num: str, den: str, scale: float, unit: str, source: str, desc: str = "") -> None:
        """``scale * d(raw[num]) / d(raw[den])`` (``den`` may be ``_DT``); raw keys set by the caller."""
        self.derived[name] = (num, den, scale)
        self.infos[name] = MetricInfo(name, unit, "counter", source, desc)


def parse_target(spec: str | int, *, root: str | os.PathLike[str] = "/") -> Target:
    """Turn ``"1234"`` / ``1234`` (a pid tree) or a cgroup directory into a :class:`Target`.

    A cgroup may be given as an absolute path (taken under ``root``) or relative
    to ``<root>/sys/fs/cgroup`` (also tried under the v1 ``cpu`` hierarchy).

    Raises:
        CollectorError: no such process, not a cgroup directory, or ``..`` in the path.
    """
    rootp = Path(root)
    text = str(spec).strip()
    if text.isdigit():
        pid = int(text)
        if pid <= 0 or not (rootp / "proc" / str(pid) / "stat").exists():
            raise CollectorError(f"--target {text}: no process with pid {pid}")
        return Target(label=f"pid{pid}", pid=pid)
    if not text or "\0" in text or ".." in Path(text).parts:
        raise CollectorError(f"--target {text!r}: expected a pid or a cgroup directory (no '..')")
    rel = text.lstrip("/")
    candidates = [rootp / rel] if text.startswith("/") else []
    candidates += [rootp / "sys/fs/cgroup" / rel, rootp / "sys/fs/cgroup/cpu" / rel]
    for c in candidates:
        if c.is_dir() and (c / "cgroup.procs").exists():
            label = f"cgroup:{text}"
            if (c / "cgroup.controllers").exists():
                return Target(label=label, cgroup=c)  # v2: one directory holds every controller
            acct = _v1_peer(rootp, c, "cpuacct")
            if acct is not None and ((c / "cpuacct.usage").exists() or not acct.is_dir()):
                acct = None  # co-mounted with cpu, or no such cgroup there: read c's own files
            return Target(label=label, cgroup=c, cpuacct=acct,
                          memory=_v1_peer(rootp, c, "memory"), blkio=_v1_peer(rootp, c, "blkio"))
    raise CollectorError(
        f"--target {text!r}: not a pid and not a cgroup directory (looked for cgroup.procs in "
        + ", ".join(str(c) for c in candidates) + ")"
    )


def _v1_peer(rootp: Path, cgroup: Path, controller: str) -> Path | None:
    """The cgroup at ``cgroup``'s relative path in the v1 hierarchy of ``controller``.

    ``cgroup`` itself when its hierarchy carries ``controller`` (co-mounted, e.g.
    ``cpu,cpuacct``); None when ``cgroup`` is not under ``<root>/sys/fs/cgroup/<hierarchy>``
    or no hierarchy for ``controller`` is mounted there. The result may not exist.
    """
    base = rootp / "sys/fs/cgroup"
    if not cgroup.is_relative_to(base) or cgroup == base:
        return None
    hierarchy, *rest = cgroup.relative_to(base).parts
    if controller in hierarchy.split(","):
        return cgroup
    mount = base / controller  # also the usual symlink to a co-mounted "cpu,cpuacct"
    return mount.joinpath(*rest) if mount.is_dir() else None


class MetricsSampler:
    """Sample the metric registry (see module doc) from ``root``.

    Args:
        root: where ``proc/`` and ``sys/`` live (default ``/``).
        targets: pids (int or digit strings), cgroup directories, or :class:`Target`.
        clock: seconds, monotonic (tests inject one).
        tcp_states_every_s: re-read ``/proc/net/tcp`` and ``tcp6`` (a walk over
            every socket, ~1 ms here and growing with the connection count) at
            most this often; in between the last counts are reported. 0 = every sample.

    Raises:
        CollectorError: a target does not exist when the sampler is built.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] = "/",
        targets: Iterable[str | int | Target] = (),
        clock: Callable[[], float] = time.monotonic,
        tcp_states_every_s: float = 10.0,
    ) -> None:
        self.root = Path(root)
        self._base = str(self.root).rstrip("/") + "/"
        self.tcp_states_every_s = tcp_states_every_s
        self._tcp_cache: tuple[float, dict[str, float]] | None = None
        self.targets = [t if isinstance(t, Target) else parse_target(t, root=self.root) for t in targets]
        self._clock = clock
        self.gaps: dict[str, str] = {}
        self._prev: _Snap | None = None
        self._last: _Snap | None = None
        self._gone: set[str] = set()
        self._cg_readers: dict[str, CgroupCpuReader] = {}
        self._clk_tck = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

    # ------------------------------------------------------------ plumbing
    def _gap(self, name: str, reason: str) -> None:
        if name not in self.gaps:
            self.gaps[name] = reason
            log.warning("metrics: %s unavailable: %s (reported once)", name, reason)

    def _read(self, rel: str, gap: str | None = None) -> str | None:
        try:
            fd = os.open(self._base + rel, os.O_RDONLY)
            try:
                chunks = [os.read(fd, 1 << 16)]
                while len(chunks[-1]) == 1 << 16:
                    chunks.append(os.read(fd, 1 << 16))
            finally:
                os.close(fd)
            return b"".join(chunks).decode("ascii", "replace")
        except OSError as err:
            if gap is not None:
                self._gap(gap, f"/{rel}: {err.strerror or err}")
            return None

    # ------------------------------------------------------------ public
    def sample(self) -> dict[str, float]:
        """Read every source now; return gauges, plus counter-derived metrics from the 2nd call on."""
        snap = self._snapshot()
        out = dict(snap.gauges)
        prev = self._prev
        if prev is not None:
            dt = snap.t - prev.t
            for name, (num, den, scale) in snap.derived.items():
                if num not in prev.raw or num not in snap.raw:
                    continue
                dn = snap.raw[num] - prev.raw[num]
                if den == _DT:
                    dd = dt
                elif den in prev.raw and den in snap.raw:
                    dd = snap.raw[den] - prev.raw[den]
                else:
                    continue
                if dn < 0 or dd < 0:
                    continue  # counter reset or wrap
                out[name] = scale * dn / dd if dd > 0 else 0.0
        self._prev = snap
        self._last = snap
        return out

    def metrics(self) -> list[MetricInfo]:
        """Every metric this sampler reports here (reads the sources once if never sampled)."""
        if self._last is None:
            self._last = self._snapshot()
        return list(self._last.infos.values())

    # ------------------------------------------------------------ sources
    def _snapshot(self) -> _Snap:
        s = _Snap(t=self._clock())
        self._stat(s)
        self._loadavg(s)
        for res in ("cpu", "memory", "io"):
            self._psi(s, res)
        self._meminfo(s)
        self._vmstat(s)
        self._diskstats(s)
        self._netdev(s)
        self._snmp(s)
        self._tcp_states(s)
        for t in self.targets:
            if t.label in self._gone:
                continue
            if t.pid is not None:
                self._pid_tree(s, t)
            else:
                self._cgroup(s, t)
        return s

    def _stat(self, s: _Snap) -> None:
        text = self._read("proc/stat", "proc.stat")
        if text is None:
            return
        src = "/proc/stat"
        for line in text.splitlines():
            parts = line.split()
            if not parts:
                continue
            key = parts[0]
            if key.startswith("cpu"):
                vals = [float(v) for v in parts[1:9]]
                vals += [0.0] * (8 - len(vals))
                prefix = "cpu" if key == "cpu" else f"cpu.{key[3:]}"
                who = "all CPUs" if key == "cpu" else f"CPU {key[3:]}"
                total = sum(vals)  # guest time is already inside user/nice
                s.raw[f"{prefix}:total"] = total
                for mode, v in zip(_CPU_MODES, vals):
                    s.raw[f"{prefix}:{mode}"] = v
                    s.ratio(f"{prefix}.{mode}_pct", f"{prefix}:{mode}", f"{prefix}:total", 100.0, "%", src,
                            f"share of {who} time in {mode}")
                s.raw[f"{prefix}:busy"] = total - vals[3] - vals[4]
                s.ratio(f"{prefix}.util_pct", f"{prefix}:busy", f"{prefix}:total", 100.0, "%", src,
                        f"{who} busy (not idle, not iowait)")
            elif key == "ctxt":
                s.rate("cpu.ctx_switches_per_s", float(parts[1]), "1/s", src, "context switches")
            elif key == "intr":
                s.rate("cpu.interrupts_per_s", float(parts[1]), "1/s", src, "interrupts")
            elif key == "processes":
                s.rate("cpu.forks_per_s", float(parts[1]), "1/s", src, "processes created")
            elif key == "procs_running":
                s.gauge("cpu.procs_running", float(parts[1]), "1", src, "runnable tasks")
            elif key == "procs_blocked":
                s.gauge("cpu.procs_blocked", float(parts[1]), "1", src, "tasks blocked on IO")

    def _loadavg(self, s: _Snap) -> None:
        text = self._read("proc/loadavg", "load")
        if text is None:
            return
        parts = text.split()
        for i, w in enumerate(("1m", "5m", "15m")):
            s.gauge(f"load.{w}", float(parts[i]), "1", "/proc/loadavg", f"load average over {w}")

    def _psi(self, s: _Snap, res: str) -> None:
        text = self._read(f"proc/pressure/{res}", f"psi.{res}")
        if text is None:
            return
        src = f"/proc/pressure/{res}"
        for line in text.splitlines():
            parts = line.split()
            if not parts or parts[0] not in ("some", "full"):
                continue
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            name = f"psi.{res}.{parts[0]}"
            s.gauge(f"{name}.avg10", float(kv["avg10"]), "%", src, f"{parts[0]} tasks stalled on {res}, 10 s average")
            s.rate(f"{name}.stall_pct", float(kv["total"]), "%", src,
                   f"share of time {parts[0]} tasks stalled on {res} over the interval (from total)", scale=1e-4)

    def _meminfo(self, s: _Snap) -> None:
        text = self._read("proc/meminfo", "mem")
        if text is None:
            return
        kb: dict[str, float] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                kb[parts[0].rstrip(":")] = float(parts[1]) * (1024 if len(parts) > 2 else 1)
        src = "/proc/meminfo"
        for name, key in _MEMINFO.items():
            if key in kb:
                s.gauge(name, kb[key], "bytes", src, key)
            else:
                self._gap(name, f"/proc/meminfo has no {key}")
        if all(k in kb for k in ("MemTotal", "MemFree", "Buffers", "Cached")):
            used = kb["MemTotal"] - kb["MemFree"] - kb["Buffers"] - kb["Cached"] - kb.get("SReclaimable", 0.0)
            s.gauge("mem.used_bytes", used, "bytes", src, "total - free - buffers - cache (as free(1))")
            if kb["MemTotal"] > 0:
                s.gauge("mem.used_pct", 100.0 * used / kb["MemTotal"], "%", src, "used / total")
        if "SwapTotal" in kb and "SwapFree" in kb:
            s.gauge("swap.used_bytes", kb["SwapTotal"] - kb["SwapFree"], "bytes", src, "swap in use")

    def _vmstat(self, s: _Snap) -> None:
        text = self._read("proc/vmstat", "vm")
        if text is None:
            return
        vals = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                vals[parts[0]] = parts[1]
        for key, desc in _VMSTAT.items():
            if key in vals:
                s.rate(f"vm.{key}_per_s", float(vals[key]), "1/s", "/proc/vmstat", desc)
            else:
                self._gap(f"vm.{key}_per_s", f"/proc/vmstat has no {key}")

    def _diskstats(self, s: _Snap) -> None:
        text = self._read("proc/diskstats", "disk")
        if text is None:
            return
        src = "/proc/diskstats"
        for line in text.splitlines():
            p = line.split()
            if len(p) < 14:
                continue
            dev = p[2]
            f = [float(v) for v in p[3:14]]
            if not any(f) or not _SAFE_NAME.match(dev):
                continue  # never-used devices (idle ram/loop) are noise
            d = f"disk.{dev}"
            r, rms, w, wms = f[0], f[3], f[4], f[7]
            s.rate(f"{d}.read_iops", r, "1/s", src, "reads completed")
            s.rate(f"{d}.write_iops", w, "1/s", src, "writes completed")
            s.rate(f"{d}.read_bytes_per_s", f[2], "bytes/s", src, "bytes read", scale=512.0)
            s.rate(f"{d}.write_bytes_per_s", f[6], "bytes/s", src, "bytes written", scale=512.0)
            s.raw[f"{d}:ios"], s.raw[f"{d}:io_ms"] = r + w, rms + wms
            s.raw[f"{d}:reads"], s.raw[f"{d}:read_ms"] = r, rms
            s.raw[f"{d}:writes"], s.raw[f"{d}:write_ms"] = w, wms
            s.raw[f"{d}:ticks"], s.raw[f"{d}:weighted"] = f[9], f[10]
            s.ratio(f"{d}.await_ms", f"{d}:io_ms", f"{d}:ios", 1.0, "ms", src, "average time per IO (0 with no IO)")
            s.ratio(f"{d}.read_await_ms", f"{d}:read_ms", f"{d}:reads", 1.0, "ms", src, "average time per read")
            s.ratio(f"{d}.write_await_ms", f"{d}:write_ms", f"{d}:writes", 1.0, "ms", src, "average time per write")
            s.ratio(f"{d}.queue_depth", f"{d}:weighted", _DT, 1e-3, "1", src, "average IOs in queue (weighted ms / elapsed)")
            s.ratio(f"{d}.util_pct", f"{d}:ticks", _DT, 0.1, "%", src, "share of time the device was busy")
            s.gauge(f"{d}.in_flight", f[8], "1", src, "IOs in flight now")

    def _netdev(self, s: _Snap) -> None:
        text = self._read("proc/net/dev", "net")
        if text is None:
            return
        for line in text.splitlines()[2:]:
            name, _, rest = line.partition(":")
            iface = name.strip()
            vals = rest.split()
            if not iface or len(vals) < 12 or not _SAFE_NAME.match(iface):
                continue
            for fname, v in zip(_NETDEV_FIELDS, vals):
                if fname is not None:
                    unit = "bytes/s" if fname.endswith("bytes") else "1/s"
                    s.rate(f"net.{iface}.{fname}_per_s", float(v), unit, "/proc/net/dev", fname.replace("_", " "))

    def _snmp(self, s: _Snap) -> None:
        text = self._read("proc/net/snmp", "tcp.snmp")
        if text is None:
            return
        lines = [ln.split() for ln in text.splitlines() if ln.startswith("Tcp:")]
        if len(lines) < 2:
            self._gap("tcp.snmp", "/proc/net/snmp has no Tcp section")
            return
        tcp = dict(zip(lines[0][1:], lines[1][1:]))
        src = "/proc/net/snmp"
        for key, name, desc in (("RetransSegs", "tcp.retrans_segs_per_s", "TCP segments retransmitted"),
                                ("OutSegs", "tcp.out_segs_per_s", "TCP segments sent"),
                                ("InErrs", "tcp.in_errs_per_s", "TCP segments received in error"),
                                ("ActiveOpens", "tcp.active_opens_per_s", "outgoing connections opened")):
            if key in tcp:
                s.rate(name, float(tcp[key]), "1/s", src, desc)
        if "RetransSegs" in tcp and "OutSegs" in tcp:
            s.ratio("tcp.retrans_pct", "tcp.retrans_segs_per_s", "tcp.out_segs_per_s", 100.0, "%", src,
                    "retransmitted / sent segments")

    def _tcp_states(self, s: _Snap) -> None:
        cached = self._tcp_cache
        if cached is not None and s.t - cached[0] < self.tcp_states_every_s:
            for st, n in cached[1].items():
                s.gauge(f"tcp.conn.{st}", n, "1", "/proc/net/tcp+tcp6", f"TCP connections in {st.upper()}")
            return
        counts = dict.fromkeys(_TCP_STATES.values(), 0)
        seen = False
        for rel in ("proc/net/tcp", "proc/net/tcp6"):
            text = self._read(rel, rel.replace("proc/net/", "tcp.states."))
            if text is None:
                continue
            seen = True
            for line in text.splitlines()[1:]:
                parts = line.split(None, 4)
                if len(parts) >= 4:
                    st = _TCP_STATES.get(parts[3].upper())
                    if st:
                        counts[st] += 1
        if seen:
            self._tcp_cache = (s.t, {st: float(n) for st, n in counts.items()})
            for st, n in counts.items():
                s.gauge(f"tcp.conn.{st}", float(n), "1", "/proc/net/tcp+tcp6", f"TCP connections in {st.upper()}")

    # ------------------------------------------------------------ targets
    def _vanished(self, t: Target, reason: str) -> None:
        self._gone.add(t.label)
        self._gap(f"target.{t.label}", reason)

    def _tree(self, pid: int) -> list[int]:
        """``pid`` and its descendants (via task/*/children)."""
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                tids = os.listdir(f"{self._base}proc/{p}/task")
            except OSError:
                continue
            for tid in tids:
                text = self._read(f"proc/{p}/task/{tid}/children")
                if text:
                    todo.extend(int(c) for c in text.split())
        return out

    def _pid_tree(self, s: _Snap, t: Target) -> None:
        assert t.pid is not None
        head = self._read(f"proc/{t.pid}/stat")
        if head is None:
            self._vanished(t, f"process {t.pid} exited (no /proc/{t.pid}/stat)")
            return
        cpu = rss = threads = ctx = rbytes = wbytes = 0.0
        have_io = True
        for i, pid in enumerate(self._tree(t.pid)):
            stat = head if i == 0 else self._read(f"proc/{pid}/stat")
            status = self._read(f"proc/{pid}/status")
            if stat is None or status is None:
                continue  # a descendant exited between listing and reading
            fields = stat[stat.rfind(")") + 2:].split()
            cpu += (float(fields[11]) + float(fields[12])) / self._clk_tck  # utime, stime
            for line in status.splitlines():
                k, _, v = line.partition(":")
                if k == "VmRSS":
                    rss += float(v.split()[0]) * 1024
                elif k == "Threads":
                    threads += float(v)
                elif k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    ctx += float(v)
            io = self._read(f"proc/{pid}/io", f"target.{t.label}.io")
            if io is None:
                have_io = False
            else:
                for line in io.splitlines():
                    k, _, v = line.partition(":")
                    if k == "read_bytes":
                        rbytes += float(v)
                    elif k == "write_bytes":
                        wbytes += float(v)
        n, who = f"target.{t.label}", f"pid {t.pid} and descendants"
        s.rate(f"{n}.cpu_s_per_s", cpu, "s/s", f"/proc/{t.pid}/stat", f"CPU seconds per second, {who}")
        s.gauge(f"{n}.rss_bytes", rss, "bytes", f"/proc/{t.pid}/status", f"resident memory, {who}")
        s.gauge(f"{n}.threads", threads, "1", f"/proc/{t.pid}/status", f"threads, {who}")
        s.rate(f"{n}.ctx_switches_per_s", ctx, "1/s", f"/proc/{t.pid}/status", f"context switches, {who}")
        if have_io:
            s.rate(f"{n}.read_bytes_per_s", rbytes, "bytes/s", f"/proc/{t.pid}/io", f"storage bytes read, {who}")
            s.rate(f"{n}.write_bytes_per_s", wbytes, "bytes/s", f"/proc/{t.pid}/io", f"storage bytes written, {who}")

    def _cgroup(self, s: _Snap, t: Target) -> None:
        assert t.cgroup is not None
        path = t.cgroup
        if not path.is_dir():
            self._vanished(t, f"cgroup {path} was removed")
            return
        reader = self._cg_readers.get(t.label)
        if reader is None:
            reader = self._cg_readers[t.label] = CgroupCpuReader(path, cpuacct_path=t.cpuacct)
        cs = reader.read()
        n, src = f"target.{t.label}", str(path / "cpu.stat")
        if cs.usage_ns is not None:
            usage_src = src if cs.version == 2 else str(reader.cpuacct_path / "cpuacct.usage")
            s.rate(f"{n}.cpu_s_per_s", cs.usage_ns, "s/s", usage_src, "CPU seconds per second", scale=1e-9)
        else:  # CgroupCpuReader only logs this: make it a gap here
            self._gap(f"{n}.cpu_s_per_s", self._usage_missing(reader, t))
        if cs.nr_periods is not None and cs.nr_throttled is not None:
            s.raw[f"{n}:periods"], s.raw[f"{n}:throttled"] = cs.nr_periods, cs.nr_throttled
            s.ratio(f"{n}.throttled_pct", f"{n}:throttled", f"{n}:periods", 100.0, "%", src,
                    "throttled periods / enforcement periods")
        else:
            self._gap(f"{n}.throttled_pct", f"{src}: no nr_periods/nr_throttled (cpu controller not enabled?)")
        if cs.throttled_ns is not None:
            s.rate(f"{n}.throttled_s_per_s", cs.throttled_ns, "s/s", src, "time throttled per second", scale=1e-9)
        else:
            field = "throttled_usec" if cs.version == 2 else "throttled_time"
            self._gap(f"{n}.throttled_s_per_s", f"{src}: no {field}")
        tasks = path / ("cgroup.threads" if cs.version == 2 else "tasks")
        try:
            with open(tasks, encoding="ascii") as f:
                s.gauge(f"{n}.threads", float(sum(1 for _ in f)), "1", str(tasks), "threads in the cgroup")
        except OSError as err:
            if not path.is_dir():
                self._vanished(t, f"cgroup {path} was removed")
                return
            self._gap(f"{n}.threads", f"{tasks}: {err.strerror or err}")
        if cs.version == 2:
            self._cgroup_v2_memory_io(s, n, path)
        else:
            self._cgroup_v1_memory(s, n, t)
            self._cgroup_v1_blkio(s, n, t)

    def _usage_missing(self, reader: CgroupCpuReader, t: Target) -> str:
        """Why a cgroup has no CPU usage counter (for the gap)."""
        if reader.version == 2:
            return f"{reader.path / 'cpu.stat'}: no usage_usec"
        usage = reader.cpuacct_path / "cpuacct.usage"
        try:
            os.stat(usage)
            why = "unreadable or not a number"
        except OSError as err:
            why = str(err.strerror or err)
        hint = "" if t.cpuacct is not None else " (and no cgroup at the same path in a separate cpuacct hierarchy)"
        return f"{usage}: {why}{hint}"

    def _cgroup_v2_memory_io(self, s: _Snap, n: str, path: Path) -> None:
        mem = self._number(path / "memory.current", f"{n}.memory_bytes")
        if mem is not None:
            s.gauge(f"{n}.memory_bytes", mem, "bytes", str(path / "memory.current"), "memory charged")
        events = self._read_abs(path / "memory.events", f"{n}.memory_events")
        if events is not None:
            kv = _kv(events)
            src = str(path / "memory.events")
            for key, leaf, desc in (
                ("high", "memory_high_events_per_s", "times usage went over memory.high (reclaim throttling)"),
                ("max", "memory_max_events_per_s", "times usage hit memory.max (allocation had to reclaim or OOM)"),
                ("oom_kill", "oom_kills_per_s", "processes killed by the OOM killer in the cgroup"),
            ):
                if key in kv:
                    s.rate(f"{n}.{leaf}", kv[key], "1/s", src, desc)
                else:
                    self._gap(f"{n}.{leaf}", f"{src} has no {key}")
        psi = self._read_abs(path / "memory.pressure", f"{n}.memory_pressure_pct")
        if psi is not None:
            avg10 = _psi_some_avg10(psi)
            if avg10 is None:
                self._gap(f"{n}.memory_pressure_pct", f"{path / 'memory.pressure'}: no 'some avg10='")
            else:
                s.gauge(f"{n}.memory_pressure_pct", avg10, "%", str(path / "memory.pressure"),
                        "PSI of the cgroup: some tasks stalled on memory, 10 s average")
        io = self._read_abs(path / "io.stat", f"{n}.io")
        if io is not None:
            rb = wb = 0.0
            for line in io.splitlines():
                for kv_text in line.split()[1:]:
                    k, _, v = kv_text.partition("=")
                    rb += float(v) if k == "rbytes" else 0.0
                    wb += float(v) if k == "wbytes" else 0.0
            s.rate(f"{n}.read_bytes_per_s", rb, "bytes/s", str(path / "io.stat"), "bytes read")
            s.rate(f"{n}.write_bytes_per_s", wb, "bytes/s", str(path / "io.stat"), "bytes written")

    def _v1_dir(self, n: str, d: Path | None, controller: str, files: str) -> bool:
        """Whether the v1 ``controller`` peer directory is there; else a gap ``<n>.<controller>`` (once)."""
        if d is None:
            self._gap(f"{n}.{controller}", f"no cgroup v1 {controller} hierarchy for this cgroup "
                                           f"(looked under {self.root / 'sys/fs/cgroup' / controller}); "
                                           f"{files} not read")
            return False
        if not d.is_dir():
            self._gap(f"{n}.{controller}", f"{d}: no such cgroup in the v1 {controller} hierarchy; {files} not read")
            return False
        return True

    def _cgroup_v1_memory(self, s: _Snap, n: str, t: Target) -> None:
        d = t.memory
        if not self._v1_dir(n, d, "memory", "memory.usage_in_bytes, memory.failcnt, memory.oom_control"):
            return
        assert d is not None
        mem = self._number(d / "memory.usage_in_bytes", f"{n}.memory_bytes")
        if mem is not None:
            s.gauge(f"{n}.memory_bytes", mem, "bytes", str(d / "memory.usage_in_bytes"),
                    "memory charged (v1 usage_in_bytes: anon + page cache)")
        fails = self._number(d / "memory.failcnt", f"{n}.memory_failcnt_per_s")
        if fails is not None:
            s.rate(f"{n}.memory_failcnt_per_s", fails, "1/s", str(d / "memory.failcnt"),
                   "times usage hit memory.limit_in_bytes")
        oom = self._read_abs(d / "memory.oom_control", f"{n}.oom_kills_per_s")
        if oom is not None:
            kv = _kv(oom)
            if "oom_kill" in kv:
                s.rate(f"{n}.oom_kills_per_s", kv["oom_kill"], "1/s", str(d / "memory.oom_control"),
                       "processes killed by the OOM killer in the cgroup")
            else:
                self._gap(f"{n}.oom_kills_per_s", f"{d / 'memory.oom_control'} has no oom_kill (kernel < 4.13)")

    def _cgroup_v1_blkio(self, s: _Snap, n: str, t: Target) -> None:
        d = t.blkio
        if not self._v1_dir(n, d, "blkio", "blkio.throttle.io_service_bytes"):
            return
        assert d is not None
        f = d / "blkio.throttle.io_service_bytes"
        text = self._read_abs(f, f"{n}.io")
        if text is None:
            return
        rb = wb = 0.0
        for line in text.splitlines():
            parts = line.split()  # "MAJ:MIN Read|Write|Sync|Async|Discard|Total N", last line "Total N"
            if len(parts) == 3 and parts[1] in ("Read", "Write") and parts[2].isdigit():
                rb += float(parts[2]) if parts[1] == "Read" else 0.0
                wb += float(parts[2]) if parts[1] == "Write" else 0.0
        note = " (v1 blkio throttle accounting, see module doc)"
        s.rate(f"{n}.read_bytes_per_s", rb, "bytes/s", str(f), "bytes read" + note)
        s.rate(f"{n}.write_bytes_per_s", wb, "bytes/s", str(f), "bytes written" + note)

    def _number(self, path: Path, gap: str) -> float | None:
        text = self._read_abs(path, gap)
        if text is None:
            return None
        try:
            return float(text.strip())
        except ValueError:
            self._gap(gap, f"{path}: not a number ({text[:40]!r})")
            return None

    def _read_abs(self, path: Path, gap: str) -> str | None:
        try:
            return path.read_text()
        except OSError as err:
            self._gap(gap, f"{path}: {err.strerror or err}")
            return None


def _kv(text: str) -> dict[str, float]:
    """``key value`` lines (memory.events, memory.oom_control) -> {key: value}; other lines skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def _psi_some_avg10(text: str) -> float | None:
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "some":
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            try:
                return float(kv["avg10"])
            except (KeyError, ValueError):
                return None
    return None
