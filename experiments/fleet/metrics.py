"""The fleet's agents on ``/metrics`` of ``novatune serve`` (registered by
:class:`experiments.service.exposition.ServiceMetrics`), read from the host registry on every scrape:

* ``novatune_agent_last_seen_timestamp_seconds{host}``: the agent's last heartbeat (its own clock);
* ``novatune_agent_up{host}``: 1 while the agent is alive (heartbeat within ``fleet_dead_after_s``, not
  stopped), else 0;
* ``novatune_agent_info{host, state, kernel}`` 1: what it does now (``idle``, ``trial``, ``stopped``) and
  its kernel release.

The registry is opened read-only (``migrate=False``): a scrape never creates the table, and a database
without it gives the families with no sample. A registry that cannot be read never fails the scrape: the
three families are left out and one warning is logged (again only when the error changes or after the
registry was read again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from experiments.fleet.hosts import HostRegistry

__all__ = ["AgentCollector"]

log = logging.getLogger(__name__)
PREFIX = "novatune_agent"


class AgentCollector:
    """A prometheus_client custom collector of the agents in ``hosts``; ``dead_after_s`` gives the setting
    ``fleet_dead_after_s`` at each scrape (it may change while the service runs)."""

    def __init__(self, hosts: HostRegistry, dead_after_s: Callable[[], float]) -> None:
        self.hosts = hosts
        self.dead_after_s = dead_after_s
        self._last_error: str | None = None

    def collect(self) -> Iterator[Metric]:
        try:
            found = self.hosts.list()
        except Exception as err:  # noqa: BLE001 - a scrape never fails on the host registry: families left out
            text = f"{type(err).__name__}: {err}"
            if text != self._last_error:
                log.warning("metrics: cannot read the host registry (the novatune_agent_* families are left "
                            "out): %s", text)
            self._last_error = text
            return
        self._last_error = None
        now, dead_after = time.time(), self.dead_after_s()
        seen = GaugeMetricFamily(f"{PREFIX}_last_seen_timestamp_seconds",
                                 "when the novatune agent last heartbeat (seconds since the epoch, its own clock)",
                                 labels=["host"])
        up = GaugeMetricFamily(f"{PREFIX}_up", "1 while the novatune agent heartbeats (within fleet_dead_after_s) "
                               "and has not stopped, else 0", labels=["host"])
        info = GaugeMetricFamily(f"{PREFIX}_info", "the novatune agent's state and kernel (value always 1)",
                                 labels=["host", "state", "kernel"])
        for h in found:
            seen.add_metric([h.id], h.last_seen)
            up.add_metric([h.id], 1.0 if h.alive(now, dead_after) else 0.0)
            info.add_metric([h.id, h.state, str(h.facts.get("kernel") or "")], 1.0)
        yield from (seen, up, info)
