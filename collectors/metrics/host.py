"""Host-wide metrics: CPU, load, pressure, memory, VM events, disks, network, TCP.

Each method reads one source under the sampler's root (``/proc/stat``,
``/proc/loadavg``, ``/proc/pressure/*``, ``/proc/meminfo``, ``/proc/vmstat``,
``/proc/diskstats``, ``/proc/net/dev``, ``/proc/net/snmp``,
``/proc/net/tcp`` + ``tcp6``) into a :class:`~collectors.metrics.snapshot.Snapshot`;
see :mod:`collectors.metrics` for the names, units and kinds.
"""

from __future__ import annotations

from collectors.kernelfiles import parse_meminfo
from collectors.metrics.snapshot import DT, SAFE_NAME, Snapshot, SourceIO

__all__ = ["HostSources"]

_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_TCP_STATES = {
    "01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1", "05": "fin_wait2",
    "06": "time_wait", "07": "close", "08": "close_wait", "09": "last_ack", "0A": "listen", "0B": "closing",
}
_VMSTAT = {  # vmstat field -> description
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
_MEMINFO = {  # metric -> meminfo key ; used = total - free - buffers - cached
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


class HostSources:
    """The host-wide sources, read through ``io``.

    Args:
        io: the sampler's reader (and its gaps).
        tcp_states_every_s: re-read ``/proc/net/tcp`` and ``tcp6`` at most this often (0 = every sample).
    """

    def __init__(self, io: SourceIO, *, tcp_states_every_s: float) -> None:
        self.io = io
        self.tcp_states_every_s = tcp_states_every_s
        self._tcp_cache: tuple[float, dict[str, float]] | None = None

    def read(self, s: Snapshot) -> None:
        """Every host source into ``s``; a source that cannot be read is a gap, never an error."""
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

    def _stat(self, s: Snapshot) -> None:
        text = self.io.read("proc/stat", "proc.stat")
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

    def _loadavg(self, s: Snapshot) -> None:
        text = self.io.read("proc/loadavg", "load")
        if text is None:
            return
        parts = text.split()
        for i, w in enumerate(("1m", "5m", "15m")):
            s.gauge(f"load.{w}", float(parts[i]), "1", "/proc/loadavg", f"load average over {w}")

    def _psi(self, s: Snapshot, res: str) -> None:
        text = self.io.read(f"proc/pressure/{res}", f"psi.{res}")
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

    def _meminfo(self, s: Snapshot) -> None:
        text = self.io.read("proc/meminfo", "mem")
        if text is None:
            return
        kb = {k: float(v) for k, v in parse_meminfo(text).items()}
        src = "/proc/meminfo"
        for name, key in _MEMINFO.items():
            if key in kb:
                s.gauge(name, kb[key], "bytes", src, key)
            else:
                self.io.gap(name, f"/proc/meminfo has no {key}")
        if all(k in kb for k in ("MemTotal", "MemFree", "Buffers", "Cached")):
            used = kb["MemTotal"] - kb["MemFree"] - kb["Buffers"] - kb["Cached"] - kb.get("SReclaimable", 0.0)
            s.gauge("mem.used_bytes", used, "bytes", src, "total - free - buffers - cache (as free(1))")
            if kb["MemTotal"] > 0:
                s.gauge("mem.used_pct", 100.0 * used / kb["MemTotal"], "%", src, "used / total")
        if "SwapTotal" in kb and "SwapFree" in kb:
            s.gauge("swap.used_bytes", kb["SwapTotal"] - kb["SwapFree"], "bytes", src, "swap in use")

    def _vmstat(self, s: Snapshot) -> None:
        text = self.io.read("proc/vmstat", "vm")
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
                self.io.gap(f"vm.{key}_per_s", f"/proc/vmstat has no {key}")

    def _diskstats(self, s: Snapshot) -> None:
        text = self.io.read("proc/diskstats", "disk")
        if text is None:
            return
        src = "/proc/diskstats"
        for line in text.splitlines():
            p = line.split()
            if len(p) < 14:
                continue
            dev = p[2]
            f = [float(v) for v in p[3:14]]
            if not any(f) or not SAFE_NAME.match(dev):
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
            s.ratio(f"{d}.queue_depth", f"{d}:weighted", DT, 1e-3, "1", src,
                    "average IOs in queue (weighted ms / elapsed)")
            s.ratio(f"{d}.util_pct", f"{d}:ticks", DT, 0.1, "%", src, "share of time the device was busy")
            s.gauge(f"{d}.in_flight", f[8], "1", src, "IOs in flight now")

    def _netdev(self, s: Snapshot) -> None:
        text = self.io.read("proc/net/dev", "net")
        if text is None:
            return
        for line in text.splitlines()[2:]:
            name, _, rest = line.partition(":")
            iface = name.strip()
            vals = rest.split()
            if not iface or len(vals) < 12 or not SAFE_NAME.match(iface):
                continue
            for fname, v in zip(_NETDEV_FIELDS, vals):
                if fname is not None:
                    unit = "bytes/s" if fname.endswith("bytes") else "1/s"
                    s.rate(f"net.{iface}.{fname}_per_s", float(v), unit, "/proc/net/dev", fname.replace("_", " "))

    def _snmp(self, s: Snapshot) -> None:
        text = self.io.read("proc/net/snmp", "tcp.snmp")
        if text is None:
            return
        lines = [ln.split() for ln in text.splitlines() if ln.startswith("Tcp:")]
        if len(lines) < 2:
            self.io.gap("tcp.snmp", "/proc/net/snmp has no Tcp section")
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

    def _tcp_states(self, s: Snapshot) -> None:
        cached = self._tcp_cache
        if cached is not None and s.t - cached[0] < self.tcp_states_every_s:
            for st, n in cached[1].items():
                s.gauge(f"tcp.conn.{st}", n, "1", "/proc/net/tcp+tcp6", f"TCP connections in {st.upper()}")
            return
        counts = dict.fromkeys(_TCP_STATES.values(), 0)
        seen = False
        for rel in ("proc/net/tcp", "proc/net/tcp6"):
            text = self.io.read(rel, rel.replace("proc/net/", "tcp.states."))
            if text is None:
                continue
            seen = True
            for line in text.splitlines()[1:]:
                parts = line.split(None, 4)
                if len(parts) >= 4:
                    state = _TCP_STATES.get(parts[3].upper())
                    if state:
                        counts[state] += 1
        if seen:
            self._tcp_cache = (s.t, {st: float(n) for st, n in counts.items()})
            for st, n in counts.items():
                s.gauge(f"tcp.conn.{st}", float(n), "1", "/proc/net/tcp+tcp6", f"TCP connections in {st.upper()}")
