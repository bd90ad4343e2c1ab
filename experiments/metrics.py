"""The metrics a trial reports, which objectives and constraints may name."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["TRIAL_METRICS", "MetricDoc"]


class MetricDoc(NamedTuple):
    unit: str
    description: str


TRIAL_METRICS: dict[str, MetricDoc] = {
    "throughput_rps": MetricDoc("requests/s", "completed requests per second over the measurement window"),
    "latency_p50_ms": MetricDoc("ms", "median request latency seen by the load generator"),
    "latency_p95_ms": MetricDoc("ms", "95th-percentile request latency"),
    "latency_p99_ms": MetricDoc("ms", "99th-percentile request latency"),
    "error_rate": MetricDoc("ratio", "failed or timed-out requests / all requests"),
    "cost_usd_per_hour": MetricDoc("USD/h", "unit prices x effective sizing (vCPUs, GiB)"),
    "cost_usd_per_1k_requests": MetricDoc("USD", "cost_usd_per_hour / (throughput x 3.6)"),
    "effective_vcpus": MetricDoc("vCPU", "min(CPU quota, CPUs in the affinity mask, CPUs in the cpuset)"),
    "host_cpu_util_pct": MetricDoc("%", "host CPU utilisation, mean over the window"),
    "host_cpu_iowait_pct": MetricDoc("%", "host CPU time in iowait, mean over the window"),
    "cgroup_throttled_ratio": MetricDoc("ratio", "CFS periods throttled / periods, workload cgroup"),
}
