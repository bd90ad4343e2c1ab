"""The metrics a trial reports, which objectives and constraints may name.

A trial reports what its workload measures (``Workload.metric_names()``, e.g.
``throughput``, ``latency_p95_ms``) plus what the trial loop derives for every
workload: cost, effective sizing, and reductions of the collector's time
series over the steady part of the window (:data:`RUNNER_METRICS`).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["RUNNER_METRICS", "SERIES_METRICS", "TRIAL_METRICS", "MetricDoc", "allowed_metrics"]


class MetricDoc(NamedTuple):
    unit: str
    description: str


#: trial metric -> candidate columns of the collector series, first present wins; ``{p}`` is the
#: label of the tuned pid tree, ``{c}`` the label of the workload's cgroup
SERIES_METRICS: dict[str, tuple[str, ...]] = {
    "host_cpu_util_pct": ("cpu.util_pct",),
    "host_cpu_iowait_pct": ("cpu.iowait_pct",),
    "host_ctx_switches_per_s": ("cpu.ctx_switches_per_s",),
    "host_mem_used_pct": ("mem.used_pct",),
    "host_psi_cpu_some_pct": ("psi.cpu.some.stall_pct",),
    "host_psi_memory_some_pct": ("psi.memory.some.stall_pct",),
    "host_psi_io_some_pct": ("psi.io.some.stall_pct",),
    "host_pgmajfault_per_s": ("vm.pgmajfault_per_s",),
    "host_tcp_retrans_pct": ("tcp.retrans_pct",),
    "target_cpu_cores": ("target.{p}.cpu_s_per_s", "target.{c}.cpu_s_per_s"),
    "target_threads": ("target.{p}.threads", "target.{c}.threads"),
    "target_rss_bytes": ("target.{p}.rss_bytes", "target.{c}.memory_bytes"),
    "target_ctx_switches_per_s": ("target.{p}.ctx_switches_per_s",),
    "target_io_bytes_per_s": ("target.{p}.read_bytes_per_s", "target.{c}.read_bytes_per_s"),
    "target_write_bytes_per_s": ("target.{p}.write_bytes_per_s", "target.{c}.write_bytes_per_s"),
    "target_memory_failcnt_per_s": ("target.{c}.memory_failcnt_per_s", "target.{c}.memory_max_events_per_s"),
    "target_throttled_pct": ("target.{c}.throttled_pct",),
}

RUNNER_METRICS: dict[str, MetricDoc] = {
    "cost_usd_per_hour": MetricDoc("USD/h", "unit prices x effective sizing (vCPUs, GiB)"),
    "cost_usd_per_1k_requests": MetricDoc("USD", "cost_usd_per_hour / (throughput x 3.6); ops-like throughput only"),
    "effective_vcpus": MetricDoc("vCPU", "min(CPU quota, CPUs in the affinity mask, CPUs in the cpuset)"),
    "host_cpu_util_pct": MetricDoc("%", "host CPU utilisation, mean over the steady window"),
    "host_cpu_iowait_pct": MetricDoc("%", "host CPU time in iowait, mean over the steady window"),
    "host_ctx_switches_per_s": MetricDoc("1/s", "host context switches per second, mean"),
    "host_mem_used_pct": MetricDoc("%", "host memory used (total - free - buffers - cached), mean"),
    "host_psi_cpu_some_pct": MetricDoc("%", "PSI: share of time some task stalled on CPU, mean"),
    "host_psi_memory_some_pct": MetricDoc("%", "PSI: share of time some task stalled on memory, mean"),
    "host_psi_io_some_pct": MetricDoc("%", "PSI: share of time some task stalled on IO, mean"),
    "host_pgmajfault_per_s": MetricDoc("1/s", "major page faults per second, mean"),
    "host_tcp_retrans_pct": MetricDoc("%", "TCP segments retransmitted / sent, mean"),
    "target_cpu_cores": MetricDoc("cores", "CPU seconds per second used by the tuned processes (cgroup or pid tree)"),
    "target_threads": MetricDoc("1", "threads of the tuned processes, mean"),
    "target_rss_bytes": MetricDoc("bytes",
                                  "resident memory of the tuned pid tree (else the cgroup's memory charged), mean"),
    "target_ctx_switches_per_s": MetricDoc("1/s", "context switches of the tuned pid tree per second, mean"),
    "target_io_bytes_per_s": MetricDoc("bytes/s", "storage bytes read by the tuned processes per second, mean"),
    "target_write_bytes_per_s": MetricDoc("bytes/s", "storage bytes written by the tuned processes per second, mean"),
    "target_memory_failcnt_per_s": MetricDoc(
        "1/s", "times per second the workload cgroup hit its memory limit (v1 failcnt, v2 max events), mean"),
    "target_throttled_pct": MetricDoc("%", "CFS periods throttled / periods of the workload cgroup, mean"),
    "cgroup_throttled_ratio": MetricDoc("ratio", "CFS periods throttled / periods, workload cgroup, whole window"),
    "window_stable": MetricDoc("1", "1 when a stable stretch of trial.steady.metric was found, else 0"),
    "window_samples": MetricDoc("1", "collector samples the trial was scored on (after warm-up and stability filter)"),
}

#: the built-in OLTP workload's metrics plus :data:`RUNNER_METRICS` (the quickstart's vocabulary)
TRIAL_METRICS: dict[str, MetricDoc] = {
    "throughput_rps": MetricDoc("requests/s", "completed requests per second over the measurement window"),
    "throughput": MetricDoc("per s", "the workload's main rate (requests/s for oltp)"),
    "latency_p50_ms": MetricDoc("ms", "median request latency seen by the load generator"),
    "latency_p95_ms": MetricDoc("ms", "95th-percentile request latency"),
    "latency_p99_ms": MetricDoc("ms", "99th-percentile request latency"),
    "errors": MetricDoc("count", "failed requests in the window"),
    "error_rate": MetricDoc("ratio", "failed or timed-out requests / all requests"),
    "throughput_cv": MetricDoc("ratio", "coefficient of variation of the per-second request rate"),
    **RUNNER_METRICS,
}


def allowed_metrics(workload_metrics: tuple[str, ...] | list[str]) -> list[str]:
    """What objectives and constraints may name for a workload reporting ``workload_metrics``."""
    return [*workload_metrics, *(m for m in RUNNER_METRICS if m not in workload_metrics)]
