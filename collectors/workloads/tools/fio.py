"""fio: the adapter (a bounded, time-based job with JSON output; IOPS and completion-latency
percentiles) and :class:`FioWorkload` (the holder process is tuned, fio runs copy its attributes).

:func:`check_fio_filename` decides which file fio may touch (through :mod:`collectors.safepath`);
:func:`lay_out` writes it to its size before fio gets it.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from collectors.safepath import PathRefused, SafeFile, WriteRoots
from collectors.workloads.tools.adapter import (
    AdapterBase,
    AdapterError,
    AdapterResult,
    check_count,
    check_duration,
)
from collectors.workloads.tools.workload import HolderWorkload, check_int, make_adapter, whole_seconds

__all__ = ["FioAdapter", "FioWorkload", "check_fio_filename", "lay_out", "parse_fio"]

TOOL = "fio"
_RW = ("read", "write", "randread", "randwrite", "rw", "randrw")
_ENGINES = ("psync", "sync", "pvsync", "pvsync2", "libaio", "io_uring", "posixaio", "mmap")
_MAX_SIZE = 64 << 30
_MAX_BS = 64 << 20
_LAYOUT_CHUNK = 1 << 20
_SIZE = re.compile(r"([0-9]+)([kmgt]?)(i?b?)", re.IGNORECASE)
_SIZE_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_LOOP_DEV = re.compile(r"/dev/loop[0-9]{1,4}")
_LOOP_MAJOR = 7
_PCT = {"latency_p50_ms": "50.000000", "latency_p95_ms": "95.000000", "latency_p99_ms": "99.000000"}


@dataclass(frozen=True, kw_only=True)
class FioAdapter(AdapterBase):
    """One fio job on ``filename`` (a scratch file fio creates with ``size``).

    ``runtime_s`` bounds the time (``--time_based``); ``size`` bounds the file.
    ``--group_reporting`` makes one job entry however many ``numjobs``.
    """

    filename: str
    rw: str = "randread"
    size: str = "32M"
    bs: str = "4k"
    runtime_s: float = 2.0
    numjobs: int = 1
    iodepth: int = 1
    ioengine: str = "psync"
    direct: bool = False
    fadvise_hint: bool = True
    fsync: int = 0
    tool: str = TOOL

    def max_runtime_s(self) -> float:
        return check_duration(TOOL, "runtime_s", self.runtime_s) + 30.0  # + file layout

    def command(self) -> list[str]:
        """The fio argument list.

        Raises:
            AdapterError: an option out of range.
        """
        runtime = check_duration(TOOL, "runtime_s", self.runtime_s)
        check_count(TOOL, "numjobs", self.numjobs, high=64)
        check_count(TOOL, "iodepth", self.iodepth, high=1024)
        check_int(TOOL, "fsync", self.fsync, 0, 1_000_000)
        if self.rw not in _RW:
            raise AdapterError(TOOL, f"rw must be one of {list(_RW)}, got {self.rw!r}")
        if not self.filename or ":" in self.filename:
            raise AdapterError(TOOL, f"filename must be a plain path, got {self.filename!r}")
        return [
            "fio",
            "--name=novatune",
            f"--filename={self.filename}",
            f"--rw={self.rw}",
            f"--size={self.size}",
            f"--bs={self.bs}",
            f"--ioengine={self.ioengine}",
            f"--iodepth={self.iodepth}",
            f"--numjobs={self.numjobs}",
            f"--direct={int(self.direct)}",
            f"--fadvise_hint={int(self.fadvise_hint)}",
            *([f"--fsync={self.fsync}"] if self.fsync else []),
            "--time_based",
            f"--runtime={runtime:g}",
            "--group_reporting",
            "--output-format=json",
        ]

    def parse(self, text: str) -> AdapterResult:
        return parse_fio(text)


def parse_fio(text: str) -> AdapterResult:
    """Parse ``fio --output-format=json`` output.

    Throughput is IOPS summed over directions (``ops/s``); ``extra`` has
    ``bytes_per_s``. Latency percentiles are completion latency (clat) of the
    direction with the most I/Os, worst over job entries.

    Raises:
        AdapterError: not fio JSON, or no job entry.
    """
    start = text.find("{")  # fio may print warnings before the JSON
    if start < 0:
        raise AdapterError(TOOL, f"no JSON object in output: {text.strip()[:200]!r}")
    try:
        obj = json.loads(text[start:])
    except json.JSONDecodeError as err:
        raise AdapterError(TOOL, f"output is not JSON ({err})") from err
    jobs = obj.get("jobs") if isinstance(obj, dict) else None
    if not isinstance(jobs, list) or not jobs:
        raise AdapterError(TOOL, "JSON has no 'jobs' list")
    iops = bw = 0.0
    errors = 0
    lat = {k: math.nan for k in _PCT}
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise AdapterError(TOOL, f"job entry {i} is not an object")
        dirs: dict[str, dict[str, Any]] = {}
        for d in ("read", "write", "trim"):
            sect = job.get(d)
            if isinstance(sect, dict):
                dirs[d] = sect
        if "read" not in dirs and "write" not in dirs:
            raise AdapterError(TOOL, f"job entry {i} has no read/write section")
        try:
            iops += sum(float(s["iops"]) for s in dirs.values())
            bw += sum(float(s["bw_bytes"]) for s in dirs.values())
            errors += 1 if int(job.get("error", 0)) else 0
            main = max(dirs.values(), key=lambda s: int(s.get("total_ios", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise AdapterError(TOOL, f"job entry {i} lacks or mangles {err}") from err
        pct = main.get("clat_ns", {}).get("percentile", {}) if isinstance(main.get("clat_ns"), dict) else {}
        for key, fio_key in _PCT.items():
            if fio_key in pct:
                val = float(pct[fio_key]) / 1e6
                lat[key] = val if math.isnan(lat[key]) else max(lat[key], val)
    return AdapterResult(
        tool=TOOL,
        throughput=iops,
        throughput_unit="ops/s",
        errors=errors,
        extra={"bytes_per_s": bw},
        raw=obj,
        **lat,
    )


# --------------------------------------------------------------------------- the workload


def _size_bytes(tool: str, name: str, value: Any, high: int) -> int:
    """``"4k"`` / ``"32M"`` / ``"1GiB"`` / ``4096`` -> bytes in [1, high]. Raises AdapterError."""
    if isinstance(value, bool):
        raise AdapterError(tool, f"{name} must be a size like '4k' or '32M', got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.fullmatch(str(value).strip()) if isinstance(value, str) else None
        if not m:
            raise AdapterError(tool, f"{name} must be a size like '4k', '32M' or '1G', got {value!r}")
        n = int(m.group(1)) * _SIZE_MULT[m.group(2).lower()]
    if not 1 <= n <= high:
        raise AdapterError(tool, f"{name} must be between 1 byte and {high >> 20} MiB, got {value!r}")
    return n


def check_fio_filename(filename: str | os.PathLike[str] | None, roots: WriteRoots | str | os.PathLike[str]) -> Path:
    """The path fio may use, or an AdapterError saying why it is refused; creates nothing.

    ``roots`` is a :class:`~collectors.safepath.WriteRoots` (or a workdir: that directory alone).
    ``None`` -> ``<workdir>/fio.dat``; a relative name is under the workdir. The file must lie in the
    run's workdir or under a configured allowed root (never in the protected data directory), be reached
    without a symlink, and be a regular file: devices (loop devices too), FIFOs, directories are refused,
    as is an existing file with more than one link or of another user. See :mod:`collectors.safepath`.
    """
    if not isinstance(roots, WriteRoots):
        roots = WriteRoots.of(roots)
    if filename is None:
        filename = "fio.dat"
    text = os.fspath(filename) if isinstance(filename, (str, os.PathLike)) else filename
    if not isinstance(text, str) or not text or ":" in text:
        raise AdapterError("fio", f"filename must be a plain path (no ':'), got {filename!r}")
    try:
        return roots.check(text)
    except PathRefused as err:
        raise AdapterError("fio", f"filename {text[:200]!r} refused: {err}") from None


def lay_out(target: SafeFile | LoopDeviceFile, size: int) -> None:
    """Write ``target`` up to ``size`` bytes (what fio's own layout does; fio is given the open file and
    cannot unlink and recreate it). Existing bytes are kept. Raises: AdapterError."""
    try:
        have = os.fstat(target.fd).st_size
        chunk = os.urandom(_LAYOUT_CHUNK)  # not zeros: a file system that compresses must still store them
        while have < size:
            n = os.pwrite(target.fd, chunk[: min(_LAYOUT_CHUNK, size - have)], have)
            if n <= 0:
                raise OSError(f"short write at byte {have}")
            have += n
        os.fsync(target.fd)
    except OSError as err:
        raise AdapterError("fio", f"cannot lay out {target.path} to {size} bytes: {err}") from err


@dataclass
class LoopDeviceFile:
    """A loop block device opened for fio (what :class:`SafeFile` is for a file): ``verify`` checks it is
    still the same loop device; the device is never deleted (``created`` is False)."""

    path: Path
    fd: int
    rdev: int
    created: bool = False

    @classmethod
    def open(cls, device: str) -> LoopDeviceFile:
        """Raises: AdapterError: not a loop block device (major 7)."""
        try:
            fd = os.open(device, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            raise AdapterError("fio", f"cannot open {device}: {err.strerror or err}") from None
        st = os.fstat(fd)
        if not stat.S_ISBLK(st.st_mode) or os.major(st.st_rdev) != _LOOP_MAJOR:
            os.close(fd)
            raise AdapterError("fio", f"{device} is not a loop block device")
        return cls(Path(device), fd, st.st_rdev)

    @property
    def proc_path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def verify(self) -> None:
        """Raises: PathRefused: the descriptor is closed or no longer this loop device."""
        try:
            st = os.fstat(self.fd)
        except OSError as err:
            raise PathRefused(f"{self.path}: cannot check the open device: {err.strerror or err}") from None
        if not stat.S_ISBLK(st.st_mode) or st.st_rdev != self.rdev:
            raise PathRefused(f"{self.path}: no longer the loop device it was")

    def unlink(self) -> None:
        raise PathRefused(f"{self.path}: a device is never deleted")

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class FioWorkload(HolderWorkload):
    """fio: one time-based job; the holder process is tuned and the fio runs copy its attributes.

    Options (defaults):

    * ``filename`` (None -> ``<workdir>/fio.dat``): the file fio reads/writes,
      in the workdir or under a root the operator allowed
      (``workload_allowed_paths``), never in novatune's data directory; a
      regular file only (devices, loop devices too, are refused), reached
      without symlinks, with one link and of the running user. novatune opens
      (or creates) it itself, writes it up to ``size`` and gives fio the open
      file (``/proc/self/fd/N``), checked again before every run; a file it
      created is deleted by :meth:`stop`, an existing one is left.
    * ``rw`` ("randread"): read, write, randread, randwrite, rw, randrw.
    * ``bs`` ("4k"): block size, up to 64M. ``size`` ("32M"): file size, up to 64G.
    * ``iodepth`` (1): 1..1024. ``numjobs`` (1): 1..64.
    * ``direct`` (False): O_DIRECT (not supported on tmpfs).
    * ``ioengine`` ("psync"): psync, sync, pvsync, pvsync2, libaio, io_uring, posixaio, mmap.
    * ``fadvise_hint`` (True): fio tells the kernel the access pattern (``posix_fadvise``; with mmap,
      ``madvise`` random or sequential). False runs like a program that gives no hint: with mmap, each page
      fault then reads the device's read-ahead window around the page (an mmap'd index without madvise).
    * ``fsync`` (0): fsync the file after every ``fsync`` writes (0: never), as a database or a log writer
      does: buffered writes then wait for the disk, so writeback (the dirty ratios, the device's queue and
      its writeback throttling) is part of what is measured. 0..1000000.

    One run per window: ``--ramp_time`` = warm-up (not counted), then
    ``measure_s`` rounded to whole seconds (at least 1; fio reads "1.5" as 1).

    Metrics: ``throughput`` (IOPS, ``ops/s``), ``latency_p50_ms``,
    ``latency_p95_ms``, ``latency_p99_ms`` (completion latency), ``errors``
    (jobs that ended with an error), ``bytes_per_s``. No timeline.
    """

    kind = "fio"
    OPTIONS: ClassVar[Mapping[str, Any]] = {
        "filename": None, "rw": "randread", "bs": "4k", "size": "32M", "iodepth": 1,
        "direct": False, "numjobs": 1, "ioengine": "psync", "fadvise_hint": True, "fsync": 0,
    }
    METRICS = ("throughput", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "errors", "bytes_per_s")
    BINARIES = ("fio",)

    def __init__(self, workdir: str | os.PathLike[str], **kw: Any) -> None:
        self._target: SafeFile | LoopDeviceFile | None = None
        self._device: str | None = None
        super().__init__(workdir, **kw)

    def use_device(self, device: str) -> None:
        """Run on ``device`` (``/dev/loopN``, the study's own loop device) instead of a file: the caller
        made it; no spec option can name a device. Call before :meth:`start`.

        Raises:
            AdapterError: not a ``/dev/loopN`` loop block device, or the workload has started.
        """
        if self._target is not None:
            raise AdapterError("fio", "the device must be given before the workload starts")
        if _LOOP_DEV.fullmatch(device) is None:
            raise AdapterError("fio", f"only a /dev/loopN device may be given, got {device!r}")
        self._device = device

    def _validate(self) -> None:
        o = self.options
        if o["rw"] not in _RW:
            raise AdapterError("fio", f"rw must be one of {list(_RW)}, got {o['rw']!r}")
        _size_bytes("fio", "bs", o["bs"], _MAX_BS)
        _size_bytes("fio", "size", o["size"], _MAX_SIZE)
        check_int("fio", "iodepth", o["iodepth"], 1, 1024)
        check_int("fio", "numjobs", o["numjobs"], 1, 64)
        check_int("fio", "fsync", o["fsync"], 0, 1_000_000)
        for flag in ("direct", "fadvise_hint"):
            if not isinstance(o[flag], bool):
                raise AdapterError("fio", f"{flag} must be true or false, got {o[flag]!r}")
        if o["ioengine"] not in _ENGINES:
            raise AdapterError("fio", f"ioengine must be one of {list(_ENGINES)}, got {o['ioengine']!r}")
        path = check_fio_filename(o["filename"], self.roots)
        self._adapter(1.0, filename=str(path)).command()

    def _prepare_own_paths(self) -> None:
        """Open (or create) fio's file safely and keep it open until :meth:`stop`."""
        if self._target is None and self._device is not None:
            self._target = LoopDeviceFile.open(self._device)
        if self._target is None:
            name = check_fio_filename(self.options["filename"], self.roots)
            self._target = self.roots.open_file(name)

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        assert self._target is not None
        lay_out(self._target, _size_bytes("fio", "size", self.options["size"], _MAX_SIZE))
        super()._start_tuned(preexec_fn)

    def _release_paths(self) -> None:
        """Delete the file if this run created it, close it. Idempotent."""
        target, self._target = self._target, None
        if target is not None:
            if target.created:
                target.unlink()
            target.close()

    def _adapter(self, runtime_s: float, filename: str | None = None) -> FioAdapter:
        o = self.options
        if filename is None:  # a run: the open file, checked again right before fio gets it
            if self._target is None:
                raise AdapterError("fio", "the file is not open (start() opens it)")
            try:
                self._target.verify()
            except PathRefused as err:
                raise AdapterError("fio", f"refused before the run: {err}") from None
            filename = self._target.proc_path
        return make_adapter(
            "fio", FioAdapter, filename=filename, rw=o["rw"], size=str(o["size"]), bs=str(o["bs"]),
            runtime_s=runtime_s, numjobs=o["numjobs"], iodepth=o["iodepth"], ioengine=o["ioengine"],
            direct=o["direct"], fadvise_hint=o["fadvise_hint"], fsync=o["fsync"],
        )

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        secs = whole_seconds(measure_s)
        notes = [] if secs == measure_s else [f"fio runs whole seconds: measure_s={measure_s:g} ran {secs} s"]
        ramp_ms = round(warmup_s * 1000)
        extra = (f"--ramp_time={ramp_ms}ms",) if ramp_ms > 0 else ()
        adapter = self._adapter(float(secs))
        assert self._target is not None
        result = self._run(adapter, extra_args=extra, timeout_s=adapter.max_runtime_s() + warmup_s + 30.0,
                           pass_fds=(self._target.fd,))
        return result, None, notes
