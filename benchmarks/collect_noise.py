"""Real measured noise: run built-in workloads here, window after window, and keep every window's metrics.

    python3 benchmarks/collect_noise.py [--windows 40] [--measure 5] [--warmup 1] [--only oltp,fio,...]
                                        [--out benchmarks/data/noise] [--budget-s 900]

Each workload is built through :func:`collectors.workloads.registry.build_workload` (as a study builds
it), started once, and measured ``--windows`` times with ``measure(warmup_s, measure_s)`` (what
``experiments.study.measure.Measurer.window`` calls); nothing is tuned, nothing on the host changes.
Every window's metrics go to ``<out>/<name>.csv`` (column ``window`` then the workload's metrics),
preceded by ``#`` comment lines with the command, the date, the machine and the load average; the
decision-quality simulation (``benchmarks/decision_quality.py``) resamples these windows.

The workloads (each in a temporary directory this script owns and removes): the built-in OLTP service,
stress-ng ``cpu`` (one worker), fio 4k random reads (buffered, psync, 64 MiB file in the temp dir)
and redis-benchmark (set/get, count-bound) against its own redis-server on a unix socket.
``--budget-s`` bounds the whole run: a workload whose turn comes after the budget is spent is skipped
with a note, and a workload stops early when its share of the budget is used.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.workloads.registry import build_workload

#: name -> the spec's ``workload`` section
WORKLOADS: dict[str, dict[str, Any]] = {
    "oltp": {"kind": "oltp", "workers": 2, "clients": 8},
    "stress_ng_cpu": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
    "fio_randread": {"kind": "fio", "rw": "randread", "bs": "4k", "size": "64M", "iodepth": 1,
                     "direct": False, "ioengine": "psync"},
    "redis": {"kind": "redis-benchmark", "requests": 40000, "clients": 10, "tests": ("set", "get")},
}

#: metrics not worth keeping (constant or bookkeeping)
_DROP = {"errors", "error_rate", "requests", "bogo_ops", "throughput_rps"}


def _machine() -> str:
    cpus = os.cpu_count()
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "?")
    except OSError:
        model = "?"
    mem = "?"
    try:
        kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")))
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{platform.node()} {platform.system()} {platform.release()}; {cpus} vCPU ({model}); {mem} RAM"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def collect(name: str, spec: Mapping[str, Any], *, windows: int, warmup_s: float, measure_s: float,
            deadline: float) -> tuple[list[dict[str, float]], str]:
    """Measure ``windows`` windows of the workload ``spec`` (fewer when ``deadline`` passes first).

    Returns the per-window metrics and the load average seen at the start. Raises: WorkloadError
    (the workload failed), CollectorError.
    """
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix=f"noise-{name}-") as tmp:
        wl = build_workload(dict(spec), Path(tmp) / "work")
        load = _loadavg()
        wl.prepare_paths()
        wl.start()
        try:
            for i in range(windows):
                if time.monotonic() > deadline:
                    print(f"  {name}: budget spent after {i} windows", flush=True)
                    break
                res = wl.measure(warmup_s=warmup_s, measure_s=measure_s)
                row = {k: float(v) for k, v in res.metrics.items() if k not in _DROP}
                rows.append(row)
                tp = row.get("throughput", math.nan)
                print(f"  {name} window {i + 1}/{windows}: throughput {tp:.1f}", flush=True)
        finally:
            wl.stop()
    return rows, load


def write_csv(path: Path, rows: list[dict[str, float]], header: list[str]) -> None:
    """``#`` comment lines, then ``window,<metrics...>`` and one line per window."""
    cols = sorted({k for r in rows for k in r}, key=lambda k: (k != "throughput", k))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        for line in header:
            fh.write(f"# {line}\n")
        w = csv.writer(fh)
        w.writerow(["window", *cols])
        for i, r in enumerate(rows):
            w.writerow([i, *(repr(r.get(c, math.nan)) for c in cols)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--measure", type=float, default=5.0, help="seconds measured per window")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per window (not counted)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {list(WORKLOADS)}")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "noise")
    ap.add_argument("--budget-s", type=float, default=900.0, help="bound on the whole run")
    ap.add_argument("--note", default="", help="what else ran on the machine (kept in each CSV header)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not 1 <= args.windows <= 1000 or not 1 <= args.measure <= 60:
        ap.error(f"unknown workload(s) {unknown}; known {list(WORKLOADS)}; windows 1..1000; measure 1..60 s")
    start = time.monotonic()
    cmd = "python3 benchmarks/collect_noise.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    for k, name in enumerate(names):
        share = (args.budget_s - (time.monotonic() - start)) / (len(names) - k)
        if share <= 0:
            print(f"{name}: skipped, the budget of {args.budget_s:.0f} s is spent", flush=True)
            continue
        print(f"{name}: {args.windows} windows of {args.warmup:g} s warm-up + {args.measure:g} s", flush=True)
        began = datetime.now(UTC).isoformat(timespec="seconds")
        rows, load = collect(name, WORKLOADS[name], windows=args.windows, warmup_s=args.warmup,
                             measure_s=args.measure, deadline=time.monotonic() + share)
        header = [f"command: {cmd}", f"workload: {WORKLOADS[name]}", f"started: {began}",
                  f"ended: {datetime.now(UTC).isoformat(timespec='seconds')}", f"machine: {_machine()}",
                  f"load average at start: {load}",
                  f"windows: {len(rows)} of warm-up {args.warmup:g} s + measure {args.measure:g} s, back to back"]
        if args.note:
            header.append(f"note: {args.note}")
        write_csv(args.out / f"{name}.csv", rows, header)
        print(f"{name}: {len(rows)} windows -> {args.out / (name + '.csv')}", flush=True)
    print(f"done in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
