"""``novatune bench run``: measure the suite in a cgroup of its own, store the run, log it to MLflow.

The run owns, for its duration only: a cgroup ``novatune-bench-<hex>`` (cpu and cpuacct; every process of
every benchmark joins it before exec; with ``cpu_quota`` its CPU quota is set there, which is how
``benchmarks/bench_compare_quality.py`` injects a known slowdown), a private scratch directory
``/tmp/novatune-bench-*`` (fio's file, stress-ng's report, the OLTP database) and, for ``net``, a pair of
network namespaces. Both the cgroup and the scratch directory are journaled before they exist, so
``novatune recover`` removes them after a ``kill -9``; on every other way out (an error, Ctrl-C) they are
removed here. Bench changes no knob: it only measures, and records the knobs' live values.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from experiments.bench import identity
from experiments.bench.runners import RUNNERS, Progress, RunEnv
from experiments.bench.store import new_run_id, save_run
from experiments.bench.suite import BENCHMARKS, BenchRefused, parse_only, suite
from experiments.settings import Paths

__all__ = ["BenchRunError", "check_quota", "run_suite"]

#: the environment variable that sets a CPU quota (in CPUs) when ``--cpu-quota`` is not given (tests, benchmarks)
QUOTA_ENV = "NOVATUNE_BENCH_CPU_QUOTA"
_PERIOD_US = 100_000


class BenchRunError(NovatuneError):
    """The benchmark's cgroup could not be made (not root, no cpu controller) (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


def check_quota(value: float | None) -> float | None:
    """``value`` (CPUs) if usable as a CPU quota: None (no quota), or 0.05 .. the number of CPUs.

    Raises:
        BenchRefused: out of that range.
    """
    if value is None:
        return None
    ncpu = os.cpu_count() or 1
    if not (isinstance(value, (int, float)) and 0.05 <= value <= ncpu):
        raise BenchRefused(f"--cpu-quota must be between 0.05 and {ncpu} CPUs, got {value!r}")
    return float(value)


def _quota_from_env() -> float | None:
    raw = os.environ.get(QUOTA_ENV, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise BenchRefused(f"{QUOTA_ENV}={raw!r} is not a number of CPUs") from None


def host_busy_s() -> float | None:
    """Seconds of CPU the whole machine spent busy so far (``/proc/stat``: user, nice, system, irq, softirq,
    steal); None when unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _usage_reader(cg: Any) -> Callable[[], float | None]:
    """Seconds of CPU the cgroup's processes used so far (``cpuacct.usage``; None when unreadable)."""
    acct = cg.dir_for("cpuacct")

    def read() -> float | None:
        try:
            return int(cg.root.read(f"{acct}/cpuacct.usage").strip()) / 1e9 if acct else None
        except (NovatuneError, OSError, ValueError):
            return None

    return read


@contextmanager
def _owned(paths: Paths, run_id: str, quota: float | None
           ) -> Iterator[tuple[Path, Callable[[], None], Callable[[], float | None], Any]]:
    """The run's scratch directory and cgroup (journaled, removed on the way out); yields (scratch, preexec,
    the cgroup's CPU seconds so far, the run's journal)."""
    from actuators.cgroup import WorkloadCgroup
    from actuators.errors import ActuatorError
    from actuators.journal import Journal

    journal = Journal(paths.ensure().journal)
    with journal.run(run_id):
        scratch = Path(tempfile.mkdtemp(prefix="novatune-bench-"))
        journal.record_scratch(run_id, scratch)
        cg = None
        try:
            try:
                cg = WorkloadCgroup.create(f"bench-{secrets.token_hex(4)}", journal=journal, run_id=run_id,
                                           controllers=("cpu", "cpuacct"))
            except (ActuatorError, OSError) as err:
                raise BenchRunError(f"cannot make the benchmark's cgroup (bench runs as root): {err}") from err
            cpu_dir = cg.dir_for("cpu")
            if quota is not None and cpu_dir is not None:
                cg.root.write(f"{cpu_dir}/cpu.cfs_period_us", str(_PERIOD_US))
                cg.root.write(f"{cpu_dir}/cpu.cfs_quota_us", str(int(quota * _PERIOD_US)))
            procs = [str(p) for p in cg.procs_files]

            def preexec() -> None:
                for f in procs:
                    with open(f, "w") as fh:
                        fh.write(str(os.getpid()))

            yield scratch, preexec, _usage_reader(cg), journal
        finally:
            try:
                if cg is not None:
                    cg.remove()
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
                journal.release_scratch(run_id, scratch)


def _document(run_id: str, started: datetime, suite_name: str, groups: tuple[str, ...], quota: float | None,
              values: dict[str, list[float]], elapsed_s: float, cpu_used: dict[str, float],
              others: dict[str, float], shares: dict[str, list[float]]) -> dict[str, Any]:
    s = suite(suite_name)
    benches: dict[str, Any] = {}
    for b in BENCHMARKS:
        if b.group not in groups:
            continue
        vals = values.get(b.name, [])
        benches[b.name] = {
            "group": b.group, "metric": b.metric, "unit": b.unit, "direction": b.direction,
            "min_effect": b.min_effect, "values": vals,
            "median": statistics.median(vals) if vals else None,
        }
        if shares.get(b.name):
            benches[b.name]["cpu_share"] = shares[b.name]
    return {
        "id": run_id, "time": started.isoformat(timespec="seconds"), "elapsed_s": round(elapsed_s, 1),
        "suite": {"name": s.name, "windows": s.windows, "window_s": s.window_s, "warmup_s": s.warmup_s},
        "groups": list(groups), "cpu_quota": quota, "cpu_used": cpu_used,
        "others_cpu": others,
        "machine": identity.machine(), "kernel": identity.kernel(), "knobs": identity.knob_snapshot(),
        "benchmarks": benches,
    }


def run_suite(paths: Paths, *, suite_name: str = "quick", only: str | None = None, cpu_quota: float | None = None,
              progress: Progress | None = None, track: bool = True) -> dict[str, Any]:
    """Run the suite (``only``: a comma-separated list of groups), store it, log it to MLflow (``track``);
    returns the stored document (see docs/bench.md for its fields).

    ``cpu_quota`` (CPUs; default from ``$NOVATUNE_BENCH_CPU_QUOTA``) caps the benchmark's cgroup. The document's
    ``cpu_used`` gives, per group, the CPUs its processes used on average (cgroup CPU time / wall time), and
    ``others_cpu`` the CPUs everything else on the machine used meanwhile (``/proc/stat`` busy time less
    ``cpu_used``): how busy the machine was with other work while this group measured.

    Raises:
        BenchRefused: an unknown suite or group, a quota out of range.
        BenchRunError: the cgroup could not be made.
        WorkloadError, AdapterError, NetnsError: a benchmark failed (nothing is stored).
        BenchStoreError: the run could not be stored.
    """
    s = suite(suite_name)
    groups = parse_only(only)
    quota = check_quota(cpu_quota if cpu_quota is not None else _quota_from_env())
    run_id = new_run_id()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    values: dict[str, list[float]] = {}
    cpu_used: dict[str, float] = {}
    others: dict[str, float] = {}
    shares: dict[str, list[float]] = {}
    with _owned(paths, run_id, quota) as (scratch, preexec, usage, journal):
        for group in groups:
            env = RunEnv(suite=s, scratch=scratch, preexec=preexec, progress=progress or (lambda n, i, v: None),
                         own_netns=lambda name: journal.record_netns(run_id, name),
                         disown_netns=lambda name: journal.release_netns(run_id, name), usage=usage)
            u0, h0, w0 = usage(), host_busy_s(), time.monotonic()
            values.update(RUNNERS[group](env))
            shares.update(env.shares)
            u1, h1, w1 = usage(), host_busy_s(), time.monotonic()
            if u0 is not None and u1 is not None and w1 > w0:
                cpu_used[group] = round((u1 - u0) / (w1 - w0), 3)
                if h0 is not None and h1 is not None:
                    others[group] = round(max(0.0, (h1 - h0) / (w1 - w0) - cpu_used[group]), 3)
    doc = _document(run_id, started, s.name, groups, quota, values, time.monotonic() - t0, cpu_used, others,
                    shares)
    save_run(paths, doc)
    if track:
        from experiments.bench.tracking import log_run

        doc["mlflow"] = log_run(paths, doc)
        save_run(paths, doc)
    return doc
