"""Applied changes, their rollbacks and drift on ``/metrics`` of ``novatune serve`` (registered by
:class:`experiments.service.exposition.ServiceMetrics`); what the alerts of ``deploy/prometheus`` watch.

Everything is read from the stored records on each scrape, so the figures survive a restart of the service:

* ``novatune_changes_rolled_back_total{reason}``: changes put back, by why (every reason always emitted, 0
  when none, so ``increase()`` sees the first one):

  ``requested``                 an application undone by ``novatune rollback`` / ``POST /tuning/rollback``
  ``forced``                    the same, with ``--force`` over knobs that had drifted
  ``autotune``                  an application of the continuous tuner that it undid itself (performance
                                fell, or a newer step superseded it)
  ``validation_failed``         a validated apply rolled back: a guard was worse than its limit, or the
                                validation was stopped or failed
  ``validation_inconclusive``   a validated apply rolled back: nothing shown within the longest window

* ``novatune_applications{state}``: applications in the journal by state (applied, rolled_back, failed,
  applying);
* ``novatune_drift_knobs``: knobs of the applied applications whose live value is not the applied one (or
  cannot be read): :func:`experiments.deploy.applications.status`, what ``novatune status`` shows. Only read,
  never written;
* ``novatune_changes_store_up``: 1 when the journal and the validations could be read on this scrape, else 0
  (the three families above are then absent).

A scrape never fails on these records: it is logged and ``novatune_changes_store_up`` is 0.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from experiments.settings import Paths

if TYPE_CHECKING:
    from actuators import Catalog

__all__ = ["APPLICATION_STATES", "ROLLBACK_REASONS", "ChangesCollector", "rolled_back_counts"]

log = logging.getLogger(__name__)

#: the ``reason`` label values of ``novatune_changes_rolled_back_total`` (see the module doc)
ROLLBACK_REASONS = ("requested", "forced", "autotune", "validation_failed", "validation_inconclusive")
#: the states an application recorded in the journal can be in
APPLICATION_STATES = ("applied", "rolled_back", "failed", "applying")


def rolled_back_counts(paths: Paths) -> tuple[Counter[str], Counter[str]]:
    """``(rollbacks by reason, applications by state)`` from the journal and the validation reports.

    Raises:
        OSError, ValueError: a record cannot be read.
    """
    from actuators import Journal
    from experiments.deploy.applications import read_applications
    from experiments.validate.store import list_reports

    reasons: Counter[str] = Counter(dict.fromkeys(ROLLBACK_REASONS, 0))
    states: Counter[str] = Counter(dict.fromkeys(APPLICATION_STATES, 0))
    apps = read_applications(Journal(paths.journal).records()) if paths.journal.exists() else {}
    for app in apps.values():
        states[app.state] += 1
        if app.state != "rolled_back":
            continue
        if app.source.startswith("autotune "):
            reasons["autotune"] += 1
        elif "forced" in (app.note or ""):
            reasons["forced"] += 1
        else:
            reasons["requested"] += 1
    for report in list_reports(paths):
        if report.decision == "rolled_back":
            reasons["validation_failed"] += 1
        elif report.decision == "inconclusive":
            reasons["validation_inconclusive"] += 1
    return reasons, states


class ChangesCollector:
    """A prometheus_client custom collector of the changes recorded under ``paths`` (see the module doc);
    ``catalog``: where the live values are read (default: this machine's, as ``novatune status``)."""

    def __init__(self, paths: Paths, *, catalog: Catalog | None = None) -> None:
        self.paths = paths
        self.catalog = catalog
        self._last_error: str | None = None

    def _drift(self) -> int:
        from experiments.deploy.applications import status

        if not self.paths.journal.exists():
            return 0
        return len(status(self.paths, catalog=self.catalog)["drift"])

    def collect(self) -> Iterator[Metric]:
        rolled = CounterMetricFamily("novatune_changes_rolled_back", "changes novatune put back after applying "
                                     "them, by reason (from the journal and the validation reports)",
                                     labels=["reason"])
        apps = GaugeMetricFamily("novatune_applications", "configurations applied to stay, by state",
                                 labels=["state"])
        drift = GaugeMetricFamily("novatune_drift_knobs", "knobs of the applied configurations whose live value "
                                  "is not the applied one (or cannot be read)")
        up = GaugeMetricFamily("novatune_changes_store_up",
                               "1 if the journal and the validation reports could be read on this scrape, else 0")
        try:
            reasons, states = rolled_back_counts(self.paths)
            drifted = self._drift()
        except Exception as err:  # noqa: BLE001 - a scrape never fails on the records: store_up 0, logged
            text = f"{type(err).__name__}: {err}"
            if text != self._last_error:
                log.warning("metrics: cannot read the applied changes under %s: %s", self.paths.home, text)
            self._last_error = text
            up.add_metric([], 0.0)
            yield up
            return
        self._last_error = None
        up.add_metric([], 1.0)
        for reason in ROLLBACK_REASONS:
            rolled.add_metric([reason], float(reasons[reason]))
        for state in APPLICATION_STATES:
            apps.add_metric([state], float(states[state]))
        drift.add_metric([], float(drifted))
        yield from (up, rolled, apps, drift)
