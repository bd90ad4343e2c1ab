"""IO facts: every whole block device under a root, its queue settings and its observed pattern.

:func:`read` fills :class:`optimizer.advisors.io.IoFacts` (the advisor's plain data; collectors may
import the pure optimizer) from ``sys/block/<dev>`` and ``proc/diskstats`` through the one safe reader
(:class:`collectors.rootfs.RootReader`), so a fixture tree works like ``/``. Partitions are not
listed (``/sys/block`` holds whole devices only); ``ram*`` and ``dm-*`` are left out unless asked.

The pattern comes from ``/proc/diskstats``: cumulative since boot (the interval is ``/proc/uptime``)
and, with ``sample_s > 0``, the difference of two reads ``sample_s`` apart. Nothing here raises on a
machine that lacks a file: what could not be read is a gap.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import replace

from collectors.errors import CollectorError
from collectors.kernelfiles import bracketed, selector_words
from collectors.rootfs import RootReader
from optimizer.advisors.io import BlockFacts, IoFacts, IoPattern

__all__ = ["MAX_SAMPLE_S", "device_kind", "parse_diskstats", "read"]

#: the longest sampling interval :func:`read` accepts
MAX_SAMPLE_S = 600.0
_DISKSTATS = "proc/diskstats"
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PREFIXES = (("nvme", "nvme"), ("vd", "virtio"), ("xvd", "virtio"), ("sd", "scsi"), ("hd", "scsi"),
             ("loop", "loop"), ("zram", "zram"), ("md", "md"), ("mmcblk", "mmc"))
_SKIPPED = ("ram", "dm-")
#: (name -> counters): reads, read merges, read sectors, writes, write merges, write sectors,
#: in flight, io ticks ms, time in queue ms
Counters = tuple[int, int, int, int, int, int, int, int, int]


def device_kind(name: str, driver: str | None = None) -> str:
    """The kind of a block device from its name (and its driver link's name): one of
    :data:`optimizer.advisors.io.KINDS`."""
    if driver and "virtio" in driver:
        return "virtio"
    if driver and driver.startswith("nvme"):
        return "nvme"
    for prefix, kind in _PREFIXES:
        if name.startswith(prefix):
            return kind
    return "other"


def parse_diskstats(text: str) -> dict[str, Counters]:
    """``/proc/diskstats`` -> name -> counters (lines with fewer than 14 fields are skipped).

    Raises:
        ValueError: a counter is not an integer.
    """
    out: dict[str, Counters] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 14:
            continue
        v = [int(x) for x in f[3:14]]
        # reads, rmerges, rsectors, (rticks), writes, wmerges, wsectors, (wticks), inflight, ioticks, queue
        out[f[2]] = (v[0], v[1], v[2], v[4], v[5], v[6], v[8], v[9], v[10])
    return out


def _pattern(c: Counters, interval_s: float, source: str, *, sampled: bool) -> IoPattern:
    return IoPattern(interval_s=interval_s, reads=c[0], read_merges=c[1], read_sectors=c[2], writes=c[3],
                     write_merges=c[4], write_sectors=c[5], in_flight=c[6], io_ticks_ms=c[7],
                     time_in_queue_ms=c[8], source=source, sampled=sampled)


def _delta(a: Counters, b: Counters) -> Counters:
    d = [max(0, y - x) for x, y in zip(a, b, strict=True)]
    d[6] = b[6]  # in flight is a level, not a counter
    return (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8])


class _Files:
    """Reads through a :class:`RootReader`, recording each failure once as a gap."""

    def __init__(self, fs: RootReader) -> None:
        self.fs = fs
        self.gaps: list[str] = []

    def text(self, rel: str, *, optional: bool = False) -> str | None:
        try:
            return self.fs.read_bytes(rel).decode("utf-8", "replace").strip()
        except OSError as e:
            if not (optional and isinstance(e, FileNotFoundError)):
                self.gaps.append(f"{rel}: {e.strerror or type(e).__name__}")
        except self.fs.unsafe_error as e:
            self.gaps.append(f"{rel}: {e}")
        return None

    def integer(self, rel: str, *, optional: bool = False) -> int | None:
        raw = self.text(rel, optional=optional)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            self.gaps.append(f"{rel}: unparsable {raw[:40]!r}")
            return None

    def listdir(self, rel: str) -> list[str] | None:
        try:
            return self.fs.listdir(rel, strict=True)
        except OSError as e:
            self.gaps.append(f"{rel}: {e.strerror or type(e).__name__}")
        except self.fs.unsafe_error as e:
            self.gaps.append(f"{rel}: {e}")
        return None

    def diskstats(self) -> dict[str, Counters]:
        raw = self.text(_DISKSTATS)
        try:
            return {} if raw is None else parse_diskstats(raw)
        except ValueError as e:
            self.gaps.append(f"{_DISKSTATS}: unparsable ({e})")
            return {}


def _device(f: _Files, name: str) -> BlockFacts:
    d = f"sys/block/{name}"
    try:
        link = f.fs.readlink(f"{d}/device/driver")
    except (OSError, f.fs.unsafe_error):
        link = None
    sched = f.text(f"{d}/queue/scheduler", optional=True)
    rot = f.integer(f"{d}/queue/rotational")
    mq = f.listdir(f"{d}/mq") if f.fs.is_dir(f"{d}/mq") else None
    return BlockFacts(
        name=name, kind=device_kind(name, None if link is None else os.path.basename(link)),
        rotational=None if rot is None else bool(rot),
        scheduler=None if sched is None else bracketed(sched),
        schedulers=() if sched is None else selector_words(sched),
        read_ahead_kb=f.integer(f"{d}/queue/read_ahead_kb"),
        nr_requests=f.integer(f"{d}/queue/nr_requests", optional=True),
        hw_queues=None if mq is None else sum(q.isdigit() for q in mq),
    )


def read(*, root: str | os.PathLike[str] = "/", sample_s: float = 0.0, include: tuple[str, ...] = (),
         sleep: Callable[[float], None] = time.sleep) -> IoFacts:
    """The IO facts under ``root`` (a fixture tree or ``/``).

    Args:
        root: the directory holding ``proc/`` and ``sys/``.
        sample_s: when > 0, also sample ``/proc/diskstats`` over this many seconds (at most
            :data:`MAX_SAMPLE_S`).
        include: device name prefixes normally left out (``("dm-",)``, ``("ram",)``).
        sleep: waits between the two reads of a sample (tests pass one that changes the tree).

    Raises:
        CollectorError: ``root`` is not a directory, or ``sample_s`` is negative or too long.
    """
    if not 0.0 <= sample_s <= MAX_SAMPLE_S:
        raise CollectorError(f"sample_s must be within 0..{MAX_SAMPLE_S:g} s, got {sample_s}")
    fs = RootReader(root)
    if not fs.root.is_dir():
        raise CollectorError(f"IO facts root {root}: not a directory")
    f = _Files(fs)
    names = [n for n in f.listdir("sys/block") or []
             if _NAME.fullmatch(n) and (not n.startswith(_SKIPPED) or n.startswith(include or ("\0",)))]
    devices = [_device(f, n) for n in names]
    before = f.diskstats()
    t0 = time.monotonic()
    uptime = _uptime(f)
    after: dict[str, Counters] = {}
    if sample_s > 0:
        sleep(sample_s)
        after = f.diskstats()
    elapsed = max(time.monotonic() - t0, sample_s)
    out = []
    for dev in devices:
        boot = before.get(dev.name)
        since = None if boot is None or uptime is None else _pattern(
            boot, uptime, f"{_DISKSTATS} since boot ({uptime:.0f} s)", sampled=False)
        sampled = None
        if boot is not None and dev.name in after:
            sampled = _pattern(_delta(boot, after[dev.name]), elapsed, f"{_DISKSTATS} over {elapsed:.1f} s",
                               sampled=True)
        out.append(replace(dev, since_boot=since, sampled=sampled))
    return IoFacts(root=str(fs.root), devices=tuple(out), sample_s=sample_s, gaps=tuple(f.gaps))


def _uptime(f: _Files) -> float | None:
    raw = f.text("proc/uptime")
    if not raw:
        return None
    try:
        return float(raw.split()[0])
    except ValueError:
        f.gaps.append(f"proc/uptime: unparsable {raw[:40]!r}")
        return None
