"""fio: a bounded, time-based job with JSON output; IOPS and completion-latency percentiles."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from collectors.workloads.adapters._base import AdapterError, AdapterResult, check_count, check_duration

__all__ = ["FioAdapter", "parse_fio"]

TOOL = "fio"
_RW = ("read", "write", "randread", "randwrite", "rw", "randrw")
_PCT = {"latency_p50_ms": "50.000000", "latency_p95_ms": "95.000000", "latency_p99_ms": "99.000000"}


@dataclass(frozen=True, kw_only=True)
class FioAdapter:
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
