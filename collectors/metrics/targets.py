"""Per-target metrics: a process tree (``pid<N>``) or a cgroup (``cgroup:<dir>``), v1 or v2.

See :mod:`collectors.metrics` for the names, the files read per cgroup version
and how a vanished target is reported. :func:`parse_target` turns what a user
gives (``--target``) into a :class:`Target`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from collectors.cgroupstats import CgroupCpuReader
from collectors.errors import CollectorError
from collectors.kernelfiles import parse_kv, psi_some_avg10
from collectors.metrics.snapshot import Snapshot, SourceIO

__all__ = ["Target", "TargetSources", "parse_target"]


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


class TargetSources:
    """The per-target sources, read through ``io``; a target that vanishes is a gap and skipped from then on."""

    def __init__(self, io: SourceIO) -> None:
        self.io = io
        self._gone: set[str] = set()
        self._cg_readers: dict[str, CgroupCpuReader] = {}
        self._clk_tck = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

    def read(self, s: Snapshot, targets: list[Target]) -> None:
        """Every target not gone yet into ``s``."""
        for t in targets:
            if t.label in self._gone:
                continue
            if t.pid is not None:
                self._pid_tree(s, t)
            else:
                self._cgroup(s, t)

    def _vanished(self, t: Target, reason: str) -> None:
        self._gone.add(t.label)
        self.io.gap(f"target.{t.label}", reason)

    def _tree(self, pid: int) -> list[int]:
        """``pid`` and its descendants (via task/*/children)."""
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            tids = self.io.listdir(f"proc/{p}/task")
            for tid in tids or ():
                text = self.io.read(f"proc/{p}/task/{tid}/children")
                if text:
                    todo.extend(int(c) for c in text.split())
        return out

    def _pid_tree(self, s: Snapshot, t: Target) -> None:
        assert t.pid is not None
        head = self.io.read(f"proc/{t.pid}/stat")
        if head is None:
            self._vanished(t, f"process {t.pid} exited (no /proc/{t.pid}/stat)")
            return
        cpu = rss = threads = ctx = rbytes = wbytes = 0.0
        have_io = True
        for i, pid in enumerate(self._tree(t.pid)):
            stat = head if i == 0 else self.io.read(f"proc/{pid}/stat")
            status = self.io.read(f"proc/{pid}/status")
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
            io = self.io.read(f"proc/{pid}/io", f"target.{t.label}.io")
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

    def _cgroup(self, s: Snapshot, t: Target) -> None:
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
            self.io.gap(f"{n}.cpu_s_per_s", self._usage_missing(reader, t))
        if cs.nr_periods is not None and cs.nr_throttled is not None:
            s.raw[f"{n}:periods"], s.raw[f"{n}:throttled"] = cs.nr_periods, cs.nr_throttled
            s.ratio(f"{n}.throttled_pct", f"{n}:throttled", f"{n}:periods", 100.0, "%", src,
                    "throttled periods / enforcement periods")
        else:
            self.io.gap(f"{n}.throttled_pct", f"{src}: no nr_periods/nr_throttled (cpu controller not enabled?)")
        if cs.throttled_ns is not None:
            s.rate(f"{n}.throttled_s_per_s", cs.throttled_ns, "s/s", src, "time throttled per second", scale=1e-9)
        else:
            field = "throttled_usec" if cs.version == 2 else "throttled_time"
            self.io.gap(f"{n}.throttled_s_per_s", f"{src}: no {field}")
        tasks = path / ("cgroup.threads" if cs.version == 2 else "tasks")
        try:
            count = len(self.io.text_abs(tasks).splitlines())
            s.gauge(f"{n}.threads", float(count), "1", str(tasks), "threads in the cgroup")
        except OSError as err:
            if not path.is_dir():
                self._vanished(t, f"cgroup {path} was removed")
                return
            self.io.gap(f"{n}.threads", f"{tasks}: {err.strerror or err}")
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

    def _cgroup_v2_memory_io(self, s: Snapshot, n: str, path: Path) -> None:
        mem = self.io.number(path / "memory.current", f"{n}.memory_bytes")
        if mem is not None:
            s.gauge(f"{n}.memory_bytes", mem, "bytes", str(path / "memory.current"), "memory charged")
        events = self.io.read_abs(path / "memory.events", f"{n}.memory_events")
        if events is not None:
            kv = parse_kv(events, float)
            src = str(path / "memory.events")
            for key, leaf, desc in (
                ("high", "memory_high_events_per_s", "times usage went over memory.high (reclaim throttling)"),
                ("max", "memory_max_events_per_s", "times usage hit memory.max (allocation had to reclaim or OOM)"),
                ("oom_kill", "oom_kills_per_s", "processes killed by the OOM killer in the cgroup"),
            ):
                if key in kv:
                    s.rate(f"{n}.{leaf}", kv[key], "1/s", src, desc)
                else:
                    self.io.gap(f"{n}.{leaf}", f"{src} has no {key}")
        psi = self.io.read_abs(path / "memory.pressure", f"{n}.memory_pressure_pct")
        if psi is not None:
            avg10 = psi_some_avg10(psi)
            if avg10 is None:
                self.io.gap(f"{n}.memory_pressure_pct", f"{path / 'memory.pressure'}: no 'some avg10='")
            else:
                s.gauge(f"{n}.memory_pressure_pct", avg10, "%", str(path / "memory.pressure"),
                        "PSI of the cgroup: some tasks stalled on memory, 10 s average")
        io = self.io.read_abs(path / "io.stat", f"{n}.io")
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
            self.io.gap(f"{n}.{controller}", f"no cgroup v1 {controller} hierarchy for this cgroup "
                                           f"(looked under {self.io.root / 'sys/fs/cgroup' / controller}); "
                                            f"{files} not read")
            return False
        if not d.is_dir():
            self.io.gap(f"{n}.{controller}", f"{d}: no such cgroup in the v1 {controller} hierarchy; {files} not read")
            return False
        return True

    def _cgroup_v1_memory(self, s: Snapshot, n: str, t: Target) -> None:
        d = t.memory
        if not self._v1_dir(n, d, "memory", "memory.usage_in_bytes, memory.failcnt, memory.oom_control"):
            return
        assert d is not None
        mem = self.io.number(d / "memory.usage_in_bytes", f"{n}.memory_bytes")
        if mem is not None:
            s.gauge(f"{n}.memory_bytes", mem, "bytes", str(d / "memory.usage_in_bytes"),
                    "memory charged (v1 usage_in_bytes: anon + page cache)")
        fails = self.io.number(d / "memory.failcnt", f"{n}.memory_failcnt_per_s")
        if fails is not None:
            s.rate(f"{n}.memory_failcnt_per_s", fails, "1/s", str(d / "memory.failcnt"),
                   "times usage hit memory.limit_in_bytes")
        oom = self.io.read_abs(d / "memory.oom_control", f"{n}.oom_kills_per_s")
        if oom is not None:
            kv = parse_kv(oom, float)
            if "oom_kill" in kv:
                s.rate(f"{n}.oom_kills_per_s", kv["oom_kill"], "1/s", str(d / "memory.oom_control"),
                       "processes killed by the OOM killer in the cgroup")
            else:
                self.io.gap(f"{n}.oom_kills_per_s", f"{d / 'memory.oom_control'} has no oom_kill (kernel < 4.13)")

    def _cgroup_v1_blkio(self, s: Snapshot, n: str, t: Target) -> None:
        d = t.blkio
        if not self._v1_dir(n, d, "blkio", "blkio.throttle.io_service_bytes"):
            return
        assert d is not None
        f = d / "blkio.throttle.io_service_bytes"
        text = self.io.read_abs(f, f"{n}.io")
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
