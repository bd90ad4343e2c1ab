"""The latest benchmark run on ``/metrics`` of ``novatune serve`` (registered by
:class:`experiments.service.exposition.ServiceMetrics`).

* ``novatune_bench_median{benchmark, unit, direction}``: the median of the latest run's windows;
* ``novatune_bench_run_info{id, suite, hostname, kernel}`` 1, and ``novatune_bench_run_timestamp_seconds``;
* ``novatune_bench_store_up``: 1 when the runs could be read on this scrape (or none is stored), else 0.

A scrape reads one file (the newest run); it never fails on the store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from experiments.settings import Paths

__all__ = ["BenchCollector"]

log = logging.getLogger(__name__)
PREFIX = "novatune_bench"


class BenchCollector:
    """A prometheus_client custom collector of the latest stored benchmark run under ``paths``."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def collect(self) -> Iterator[Metric]:
        from experiments.bench.store import latest

        median = GaugeMetricFamily(f"{PREFIX}_median", "median over the windows of each benchmark of the latest "
                                   "novatune bench run (the benchmark's own unit)",
                                   labels=["benchmark", "unit", "direction"])
        info = GaugeMetricFamily(f"{PREFIX}_run_info", "the latest novatune bench run (value always 1)",
                                 labels=["id", "suite", "hostname", "kernel"])
        stamp = GaugeMetricFamily(f"{PREFIX}_run_timestamp_seconds", "when the latest novatune bench run started")
        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 if the benchmark runs could be read on this scrape, else 0")
        try:
            doc = latest(self.paths)
        except Exception as err:  # noqa: BLE001 - a scrape never fails on the bench store
            log.warning("metrics: cannot read the benchmark runs: %s", err)
            up.add_metric([], 0.0)
            yield from (up, median, info, stamp)
            return
        up.add_metric([], 1.0)
        if doc is not None:
            for name, b in doc["benchmarks"].items():
                m = b.get("median")
                if isinstance(m, (int, float)) and math.isfinite(m):
                    median.add_metric([name, str(b.get("unit", "")), str(b.get("direction", ""))], float(m))
            info.add_metric([doc["id"], str((doc.get("suite") or {}).get("name", "")),
                             str((doc.get("machine") or {}).get("hostname", "")),
                             str((doc.get("kernel") or {}).get("release", ""))], 1.0)
            try:
                stamp.add_metric([], datetime.fromisoformat(str(doc.get("time"))).timestamp())
            except ValueError:
                pass
        yield from (up, median, info, stamp)
