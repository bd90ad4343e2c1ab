"""The profiler's measured overhead on ``/metrics`` of ``novatune serve`` (registered by
:class:`experiments.service.exposition.ServiceMetrics`), from the newest window in the profile store:

* ``novatune_profiler_slowdown_ratio``: the estimated slowdown of the profiled process in that window
  (``meta.overhead["est_slowdown_pct"]`` / 100, :func:`collectors.profiler.budget.measure`);
* ``novatune_profiler_cpu_ratio``: py-spy's own CPU in that window, as a share of one core;
* ``novatune_profiler_budget_ratio``: the overhead budget that window was sampled under;
* ``novatune_profiler_window_end_timestamp_seconds``: when that window ended;
* ``novatune_profiler_store_up``: 1 when the store could be read on this scrape (or does not exist yet), else 0.

The four figures are absent while no window is stored (a scrape never creates the store). A scrape reads
the index and one profile; it never fails on the store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from experiments.settings import Paths

__all__ = ["ProfilerOverheadCollector"]

log = logging.getLogger(__name__)


class ProfilerOverheadCollector:
    """A prometheus_client custom collector of the newest stored profile window under ``paths``."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def _latest(self) -> tuple[dict[str, float], float] | None:
        from collectors.profiler.store import ProfileStore
        from collectors.profiler.storedb import DB_NAME

        if not (self.paths.profiles / DB_NAME).exists():
            return None
        store = ProfileStore(self.paths.profiles)
        rows = store.list(kind="window", limit=1)
        if not rows:
            return None
        return dict(store.get(rows[0].id).meta.overhead), rows[0].end

    def collect(self) -> Iterator[Metric]:
        slowdown = GaugeMetricFamily("novatune_profiler_slowdown_ratio", "estimated slowdown of the profiled "
                                     "process in the newest stored profile window (0.01 = 1 %)")
        cpu = GaugeMetricFamily("novatune_profiler_cpu_ratio",
                                "py-spy's CPU in the newest stored profile window, as a share of one core")
        budget = GaugeMetricFamily("novatune_profiler_budget_ratio",
                                   "the overhead budget the newest stored profile window was sampled under")
        end = GaugeMetricFamily("novatune_profiler_window_end_timestamp_seconds",
                                "when the newest stored profile window ended")
        up = GaugeMetricFamily("novatune_profiler_store_up",
                               "1 if the profile store could be read on this scrape (or does not exist yet), else 0")
        try:
            latest = self._latest()
        except Exception as err:  # noqa: BLE001 - a scrape never fails on the profile store
            log.warning("metrics: cannot read the profile store %s: %s", self.paths.profiles, err)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        if latest is not None:
            overhead, ended = latest
            for fam, key in ((slowdown, "est_slowdown_pct"), (cpu, "pyspy_cpu_pct"), (budget, "budget_pct")):
                value = overhead.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    fam.add_metric([], float(value) / 100.0)
            end.add_metric([], float(ended))
        yield from (up, slowdown, cpu, budget, end)
