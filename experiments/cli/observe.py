"""``novatune observe``: record the usage history of a running target, or import one.

Three modes, one per invocation:

* **live**: ``--pid PID | --cgroup PATH | --systemd UNIT`` (an allowed target: ``allowed_targets``) sampled every
  ``--interval`` seconds (default: the setting ``observe_interval_s``) into the data directory's usage store
  until ``--duration`` passed, the target vanished, or Ctrl-C (the samples stored are kept; a summary is printed);
* **CSV**: ``--import-csv TRACE.csv`` (the trace contract of ``rightsize replay``: one target per ``vm_id``);
* **Prometheus**: ``--prometheus URL --query-cpu Q --query-mem Q --target NAME [--start --end --step]``: a CPU-cores
  query and a memory-bytes query, one series each (see :mod:`collectors.usage.promimport`).

``--json`` prints the summary as JSON. Errors are one line and exit 2 (a refused target, a missing cgroup, a
Prometheus that does not answer, a bad query with Prometheus's text).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from experiments.cli._common import JsonOpt, UserError, ctrl_c_ends, err, out, paths, print_json, settings

if TYPE_CHECKING:
    from collectors.usage.history import UsageStore
    from collectors.usage.sampler import UsageSample
    from optimizer.rightsizing.model import UsageSeries

__all__ = ["observe_cmd", "parse_time", "target_spec"]

_V1 = ("cpu", "cpuacct", "memory", "cpuset", "blkio", "pids", "freezer", "devices")


def usage_store() -> UsageStore:
    """The data directory's usage store, with the settings' retention."""
    from collectors.usage.history import UsageStore

    return UsageStore(paths().ensure().usage_db, retention_days=settings().usage_retention_days)


def target_spec(pid: int | None, cgroup: str | None, systemd: str | None) -> str:
    """The target spec of the live options (exactly one given).

    Raises:
        UserError: none or several given, or a cgroup path that is neither ``/PATH`` nor under ``/sys/fs/cgroup``.
    """
    given = [x for x in (pid, cgroup, systemd) if x is not None]
    if len(given) != 1:
        raise UserError("give one target: --pid PID, --cgroup PATH or --systemd UNIT (or --import-csv / --prometheus)")
    if pid is not None:
        return f"pid:{pid}"
    if systemd is not None:
        return f"unit:{systemd}" if systemd.endswith((".service", ".scope")) else f"unit:{systemd}.service"
    assert cgroup is not None
    path = cgroup.rstrip("/") or "/"
    if path.startswith("/sys/fs/cgroup"):  # a directory: the path inside its hierarchy
        parts = [p for p in path[len("/sys/fs/cgroup"):].split("/") if p]
        if parts and parts[0] in _V1 or parts[:1] == ["unified"]:
            parts = parts[1:]
        path = "/" + "/".join(parts)
    return f"cgroup:{path}"


def parse_time(text: str | None, *, default: float) -> float:
    """Unix seconds or ISO 8601 (UTC when no zone) -> Unix seconds; ``default`` when not given.

    Raises:
        UserError: neither form.
    """
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{text!r} is not a time: give Unix seconds or ISO 8601 (2026-01-31T12:00:00Z)") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _show(name: str, s: UsageSample) -> None:
    def g(x: float, unit: str) -> str:
        return "-" if math.isnan(x) else f"{x:.3f}{unit}"

    err.print(f"{escape(name)}: cpu {g(s.cpu_cores, '')}/{g(s.cpu_capacity, '')} cores, mem {g(s.mem_gib, '')}/"
              f"{g(s.mem_capacity, '')} GiB, throttled {g(s.throttled_ratio, '')}" +
              (f", {s.oom_kills} OOM kill(s)" if s.oom_kills else ""))


def _live(spec: str, interval: float | None, duration: float | None, as_json: bool) -> dict[str, Any]:
    from collectors.passive.allowed import PassivePolicy
    from collectors.usage.observe import Observer
    from collectors.usage.target import resolve_target

    s = settings()
    if duration is not None and not (0 < duration <= 366 * 86400):
        raise UserError(f"--duration must be seconds in (0, 31622400], got {duration}")
    target = resolve_target(spec, policy=PassivePolicy.of(s.allowed_targets, s.allowed_probe_hosts))
    store = usage_store()
    stop = threading.Event()
    obs = Observer([target], store, interval_s=interval if interval is not None else s.observe_interval_s, stop=stop,
                   on_sample=None if as_json else _show)
    if not as_json:
        err.print(f"observing {escape(target.name)} every {obs.interval_s:g} s into {escape(str(store.path))} "
                  "(Ctrl-C ends)")
    with ctrl_c_ends(stop):
        summary = obs.run(duration_s=duration)
    return {"mode": "observe", "target": target.name, "store": str(store.path), **summary.to_dict()}


def _import_csv(path: Path) -> dict[str, Any]:
    from experiments.rightsizing.replay import load_series

    series: dict[str, UsageSeries] = load_series(path, max_bytes=settings().trace_max_bytes)
    store = usage_store()
    stored = {name: store.import_series(s, source="csv") for name, s in series.items()}
    return {"mode": "import-csv", "file": str(path), "store": str(store.path), "stored": stored,
            "samples": sum(stored.values())}


def _import_prometheus(url: str, query_cpu: str | None, query_mem: str | None, target: str | None,
                       start: str | None, end: str | None, step: float) -> dict[str, Any]:
    from collectors.usage.promimport import import_prometheus

    if not query_cpu or not query_mem or not target:
        raise UserError("--prometheus needs --query-cpu Q (CPU cores used), --query-mem Q (memory bytes) and "
                        "--target NAME (the name the history is stored under)")
    t_end = parse_time(end, default=time.time())
    t_start = parse_time(start, default=t_end - 86400)
    s = settings()
    series = import_prometheus(url, target=target, query_cpu=query_cpu, query_mem=query_mem, start=t_start,
                               end=t_end, step=step, allowed_hosts=tuple(s.allowed_probe_hosts))
    store = usage_store()
    n = store.import_series(series, source="prometheus")
    return {"mode": "import-prometheus", "url": url, "store": str(store.path), "stored": {target: n}, "samples": n,
            "start_s": t_start, "end_s": t_end, "step_s": step}


def observe_cmd(
    pid: Annotated[int | None, typer.Option("--pid", "-p", help="a running process (an allowed target)")] = None,
    cgroup: Annotated[str | None, typer.Option("--cgroup", help="a cgroup: /PATH as /proc/PID/cgroup shows it, "
                                                                "or its directory under /sys/fs/cgroup")] = None,
    systemd: Annotated[str | None, typer.Option("--systemd", help="a systemd unit (NAME or NAME.service)")] = None,
    interval: Annotated[float | None, typer.Option("--interval", help="seconds between samples (default: the "
                                                                      "setting observe_interval_s)")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="stop after this many seconds (default: "
                                                                      "until Ctrl-C)")] = None,
    import_csv: Annotated[Path | None, typer.Option("--import-csv", help="import a usage trace (CSV: vm_id, "
                                                                         "timestamp, cpu_used_cores, mem_used_gib)")
                          ] = None,
    prometheus: Annotated[str | None, typer.Option("--prometheus", help="import from this Prometheus (base URL)")
                          ] = None,
    query_cpu: Annotated[str | None, typer.Option("--query-cpu", help="PromQL giving CPU cores used")] = None,
    query_mem: Annotated[str | None, typer.Option("--query-mem", help="PromQL giving memory bytes used")] = None,
    target: Annotated[str | None, typer.Option("--target", help="name to store a Prometheus import under")] = None,
    start: Annotated[str | None, typer.Option("--start", help="Unix s or ISO 8601 (default: 24 h before --end)")
                     ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Unix s or ISO 8601 (default: now)")] = None,
    step: Annotated[float, typer.Option("--step", help="seconds between imported points")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Record a running target's CPU and memory usage (and throttling, PSI, OOM kills) for right-sizing, or import
    a usage history from a CSV trace or Prometheus."""
    live = any(x is not None for x in (pid, cgroup, systemd))
    modes = [m for m, on in (("a live target", live), ("--import-csv", import_csv is not None),
                             ("--prometheus", prometheus is not None)) if on]
    if len(modes) != 1:
        raise UserError("give one of: a live target (--pid PID | --cgroup PATH | --systemd UNIT), --import-csv "
                        f"TRACE.csv, or --prometheus URL (got {', '.join(modes) or 'none'})")
    if import_csv is not None:
        result = _import_csv(import_csv)
    elif prometheus is not None:
        result = _import_prometheus(prometheus, query_cpu, query_mem, target, start, end, step)
    else:
        result = _live(target_spec(pid, cgroup, systemd), interval, duration, as_json)
    if as_json:
        print_json(result)
        return
    for name, n in result["stored"].items():
        out.print(f"{escape(name)}: {n} samples stored")
    for name, why in result.get("gone", {}).items():
        out.print(f"{escape(name)}: no longer observed: {escape(why)}")
    out.print(f"{result['samples']} samples stored in {escape(result['store'])}", soft_wrap=True)
