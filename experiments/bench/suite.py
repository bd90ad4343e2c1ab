"""The benchmarks of ``novatune bench run``: what each measures, in which unit and direction, and the suites.

Each benchmark belongs to a *group* (``cpu``, ``memory``, ``io``, ``net``, ``oltp``): a group is run by one
runner of :mod:`experiments.bench.runners` (one set-up, e.g. one namespace pair or one OLTP server, for
all of its benchmarks) and is what ``--only`` selects. A suite sets the number of windows (repeats) and
their length; every benchmark of a run gets that many per-window values.
"""

from __future__ import annotations

from dataclasses import dataclass

from collectors.errors import NovatuneError

__all__ = ["BENCHMARKS", "GROUPS", "SUITES", "BenchRefused", "Benchmark", "Suite", "parse_only", "suite"]


class BenchRefused(NovatuneError, ValueError):
    """A ``bench`` request that cannot be run as given (unknown suite or group, bad quota) (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True)
class Benchmark:
    """One stored figure: ``name``, its ``group``, ``metric`` (what the figure is), ``unit``, ``direction``
    (``maximize`` / ``minimize``) and ``min_effect``: the smallest relative change ``bench compare`` calls a
    regression (at least :data:`optimizer.benchcompare.DEFAULT_MIN_EFFECT`; more for a benchmark whose
    run-to-run noise is larger, measured by ``benchmarks/bench_compare_quality.py``)."""

    name: str
    group: str
    metric: str
    unit: str
    direction: str
    min_effect: float = 0.05


@dataclass(frozen=True)
class Suite:
    """``windows`` repeats of ``window_s`` seconds per benchmark, after ``warmup_s`` discarded."""

    name: str
    windows: int
    window_s: float
    warmup_s: float


#: the bars (``min_effect``) follow one rule: 4 x the largest between-run spread (SD of the log medians of reruns
#: of one configuration) over the recordings of ``benchmarks/bench_compare_quality.py`` on this kind of VM
#: (benchmarks/data/bench_quality/, docs/bench.md), rounded up to 5 %: on a VM the speed of a CPU second
#: drifts with the host's load. CPU taken away from a benchmark (a quota, a competing load) is found from 5 %
#: by its CPU share (``cpu_share``, :func:`optimizer.benchcompare.with_cpu_share`), not by these bars.
#: every benchmark, in the order a run measures them
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("cpu", "cpu", "stress-ng cpu stressor, one worker per CPU", "bogo-ops/s", "maximize", 0.30),
    Benchmark("memory_triad", "memory", "STREAM-like triad a = b + s*c (numpy, 3 x 128 MiB)", "GB/s", "maximize",
              0.35),
    Benchmark("io_randread", "io", "fio 4 KiB random reads, O_DIRECT, queue depth 1", "IOPS", "maximize", 0.40),
    Benchmark("io_seqread", "io", "fio 1 MiB sequential reads, O_DIRECT", "MB/s", "maximize", 0.40),
    Benchmark("net_tcp", "net", "iperf3 TCP over a veth pair between two network namespaces", "Gbit/s",
              "maximize", 0.25),
    Benchmark("oltp_throughput", "oltp", "the built-in OLTP service: requests per second", "req/s", "maximize", 0.30),
    Benchmark("oltp_p95", "oltp", "the built-in OLTP service: 95th percentile latency", "ms", "minimize", 0.65),
)
#: the groups, in run order
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(b.group for b in BENCHMARKS))
#: quick: the whole suite in about 60-90 s; full: longer windows, more of them
SUITES: dict[str, Suite] = {
    "quick": Suite("quick", windows=5, window_s=2.0, warmup_s=1.0),
    "full": Suite("full", windows=10, window_s=5.0, warmup_s=2.0),
}


def suite(name: str) -> Suite:
    """The suite ``name``. Raises: BenchRefused: unknown (the message lists the suites)."""
    if name not in SUITES:
        raise BenchRefused(f"unknown suite {name!r}; allowed: {', '.join(SUITES)}")
    return SUITES[name]


def parse_only(text: str | None) -> tuple[str, ...]:
    """``"cpu,memory"`` -> the groups in run order; None or empty -> every group.

    Raises:
        BenchRefused: an unknown group (the message lists the groups).
    """
    if not text or not text.strip():
        return GROUPS
    asked = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in asked if w not in GROUPS]
    if bad:
        raise BenchRefused(f"unknown benchmark group(s) {', '.join(map(repr, bad))}; allowed: {', '.join(GROUPS)}")
    return tuple(g for g in GROUPS if g in asked)
