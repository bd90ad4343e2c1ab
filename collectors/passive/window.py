"""The pieces of one passive measurement window: the probe thread and the reductions.

:class:`~collectors.passive.target.PassiveWorkload` drives the window; this
module holds what it reduces the window with, each testable alone: the
target columns it keeps (:data:`PID_COLUMNS`, :data:`CGROUP_COLUMNS`), one
timeline row from a :class:`~collectors.metrics.MetricsSampler` sample
(:func:`target_row`), a column's window value (:func:`window_value`), the
probe thread (:class:`Prober`) and its metrics (:func:`probe_metrics`), and
the scrape deltas (:func:`scrape_metrics`).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from collectors.errors import CollectorError
from collectors.passive.http_probe import describe, probe

__all__ = [
    "CGROUP_COLUMNS",
    "GAUGES",
    "MAX_PROBES",
    "PID_COLUMNS",
    "PROBE_METRICS",
    "Prober",
    "Scraped",
    "probe_metrics",
    "scrape_metrics",
    "sum_counter",
    "target_row",
    "window_value",
]

MAX_PROBES = 100_000
_ERROR_PAUSE_S = 0.05  # least pause after a failed probe request

#: MetricsSampler ``target.<label>.<suffix>`` -> (short name, unit, scale)
PID_COLUMNS: dict[str, tuple[str, str, float]] = {
    "cpu_s_per_s": ("target_cpu_pct", "%", 100.0),
    "rss_bytes": ("target_rss_bytes", "bytes", 1.0),
    "threads": ("target_threads", "1", 1.0),
    "ctx_switches_per_s": ("target_ctx_switches_per_s", "1/s", 1.0),
    "read_bytes_per_s": ("target_read_bytes_per_s", "bytes/s", 1.0),
    "write_bytes_per_s": ("target_write_bytes_per_s", "bytes/s", 1.0),
}
CGROUP_COLUMNS: dict[str, tuple[str, str, float]] = {
    "cpu_s_per_s": ("target_cpu_pct", "%", 100.0),
    "throttled_pct": ("target_throttled_pct", "%", 1.0),
    "throttled_s_per_s": ("target_throttled_s_per_s", "s/s", 1.0),
    "threads": ("target_threads", "1", 1.0),
    "memory_bytes": ("target_memory_bytes", "bytes", 1.0),
    "read_bytes_per_s": ("target_read_bytes_per_s", "bytes/s", 1.0),
    "write_bytes_per_s": ("target_write_bytes_per_s", "bytes/s", 1.0),
}
PROBE_METRICS = (
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_avg_ms",
    "probe_requests", "probe_errors", "probe_error_rate",
)
#: target columns averaged as samples (the others are rates: time-weighted)
GAUGES = frozenset({"target_rss_bytes", "target_threads", "target_memory_bytes"})

#: a scrape: (monotonic time of the scrape, counter name -> value)
Scraped = tuple[float, dict[str, float]]


class Prober(threading.Thread):
    """One GET at a time (via :func:`probe` with ``count=1``) until stopped or the deadline.

    Successful latencies go to ``ok_ms``, failures count in ``errors`` (the
    last one in ``last_error``); an exception in the thread ends it and is
    kept in ``failure``, never lost.
    """

    def __init__(self, url: str, *, interval_s: float, timeout_s: float, deadline: float, t0: float,
                 allowed_hosts: tuple[str, ...] = ()) -> None:
        super().__init__(name="passive-probe", daemon=True)
        self.url, self.interval_s, self.timeout_s = url, interval_s, timeout_s
        self.allowed_hosts = allowed_hosts
        self.deadline, self.t0 = deadline, t0
        self.stop_event = threading.Event()
        self.ok_ms: list[float] = []
        self.errors = 0
        self.last_error: str | None = None
        self.failure: str | None = None

    def run(self) -> None:
        """Probe until :attr:`stop_event` is set or the deadline passes (at most :data:`MAX_PROBES`)."""
        try:
            for _ in range(MAX_PROBES):
                left = self.deadline - time.monotonic()
                if self.stop_event.is_set() or left <= 0:
                    break
                r = probe(self.url, count=1, duration_s=min(3600.0, max(left, 1e-3)), timeout_s=self.timeout_s,
                          allowed_hosts=self.allowed_hosts)
                if r.requests:
                    self.ok_ms.append(r.latency_p50_ms)
                elif r.errors:
                    self.errors += 1
                    self.last_error = r.last_error
                failed = not r.requests
                # also after an error, and never less than _ERROR_PAUSE_S then: no busy loop on a closed port
                self.stop_event.wait(max(self.interval_s, _ERROR_PAUSE_S) if failed else self.interval_s)
        except CollectorError as err:  # novatune's own message (the URL refused)
            self.failure = str(err)
        except Exception as err:  # noqa: BLE001 - reported in notes, never lost in a thread
            self.failure = describe(err)  # the class, never text a server sent


def target_row(sample: dict[str, float], columns: dict[str, tuple[str, str, float]]) -> dict[str, float]:
    """Sum ``target.<label>.<suffix>`` over targets into the short names (NaN unless every target has it)."""
    per: dict[str, dict[str, float]] = {}
    labels: set[str] = set()
    for key, value in sample.items():
        if not key.startswith("target."):
            continue
        label, _, suffix = key[len("target."):].rpartition(".")
        labels.add(label)
        if suffix in columns:
            per.setdefault(suffix, {})[label] = value
    row: dict[str, float] = {}
    for suffix, (name, _, scale) in columns.items():
        vals = per.get(suffix, {})
        row[name] = scale * sum(vals.values()) if vals and len(vals) == len(labels) else math.nan
    return row


def window_value(col: np.ndarray, weights: np.ndarray, *, gauge: bool) -> float:
    """Gauges: mean of the samples. Rates: time-weighted mean (each row covers the interval ending at it)."""
    ok = ~np.isnan(col)
    if gauge:
        return float(col[ok].mean()) if ok.any() else math.nan
    w = weights[ok]
    if not ok.any() or w.sum() <= 0:
        return math.nan
    return float((col[ok] * w).sum() / w.sum())


def sum_counter(values: dict[str, float], name: str) -> tuple[float, bool]:
    """Sum the samples named exactly ``name`` (any labels); else ``name + "_total"``."""
    for candidate in (name, name + "_total"):
        hits = [v for k, v in values.items() if k.partition("{")[0] == candidate]
        if hits:
            return float(sum(hits)), True
        if candidate.endswith("_total"):
            break
    return 0.0, False


def probe_metrics(prober: Prober, notes: list[str]) -> dict[str, float]:
    """The probe's figures over the window (percentiles of the answered requests); problems go to ``notes``."""
    if prober.is_alive():
        notes.append("probe thread did not finish in time; its last request is not counted")
    if prober.failure:
        notes.append(f"probe failed: {prober.failure}")
    lat = np.asarray(list(prober.ok_ms), dtype=float)
    ok, errors = int(lat.size), int(prober.errors)
    total = ok + errors
    if errors:
        notes.append(f"probe {prober.url}: {errors} of {total} request(s) failed; last error: "
                     f"{prober.last_error}")
    if total == 0:
        notes.append(f"probe {prober.url}: no request completed in the window")
    pct = [float(np.percentile(lat, q)) if lat.size else math.nan for q in (50, 95, 99)]
    return {
        "latency_p50_ms": pct[0], "latency_p95_ms": pct[1], "latency_p99_ms": pct[2],
        "latency_avg_ms": float(lat.mean()) if lat.size else math.nan,
        "probe_requests": float(ok), "probe_errors": float(errors),
        "probe_error_rate": errors / total if total else math.nan,
    }


def scrape_metrics(
    before: Scraped | None, after: Scraped | None, throughput_counter: str, error_counter: str | None,
    notes: list[str],
) -> dict[str, float]:
    """``throughput`` (and ``scrape_errors`` / ``error_rate``) from the counters scraped at both ends.

    NaN when a scrape failed or a counter went backwards (a note says so).
    """
    out = {"throughput": math.nan}
    if error_counter is not None:
        out["scrape_errors"] = math.nan
        out["error_rate"] = math.nan
    if before is None or after is None:
        return out
    seconds = after[0] - before[0]
    d_req = after[1][throughput_counter] - before[1][throughput_counter]
    if d_req < 0:
        notes.append(f"counter {throughput_counter} went backwards (target restarted?): throughput is NaN")
        return out
    out["throughput"] = d_req / seconds if seconds > 0 else math.nan
    if error_counter is not None:
        d_err = after[1][error_counter] - before[1][error_counter]
        if d_err < 0:
            notes.append(f"counter {error_counter} went backwards (target restarted?): error_rate is NaN")
            return out
        out["scrape_errors"] = d_err
        if d_req > 0:
            out["error_rate"] = min(1.0, d_err / d_req)
        else:
            out["error_rate"] = 0.0 if d_err == 0 else 1.0
            notes.append(f"counter {throughput_counter} did not move during the window (no traffic)")
    return out
