"""The service's Prometheus exposition: what ``GET /metrics`` serves (host metrics, tuner state, build info).

(Not the host sampler of :mod:`collectors`, nor the names of a trial's metrics in :mod:`experiments`:
this module is only what the service exposes.)

One :class:`ServiceMetrics` per app owns a private :class:`CollectorRegistry`
(never the process-global one) with these collectors:

- host metrics: ``collectors.prometheus.HostCollector`` over ONE
  :class:`~collectors.metrics.MetricsSampler` that lives as long as the app, so
  counters become rates over the interval between two scrapes. The sampler is
  primed when the app is built, so the first scrape already carries the rates;
  a scrape is one read of ``/proc`` and ``/sys`` (a few ms), nothing sleeps.
- tuner state (:class:`StudyStateCollector`), read from the Optuna study store
  on every scrape through one storage connection kept per app:

  ``novatune_study_info{study,state}``          1 per study; ``state`` is the
                                                runner's (running, completed,
                                                failed, interrupted, unknown)
  ``novatune_study_running{study}``             1 while the study's state is
                                                ``running``, else 0
  ``novatune_study_trials{study,state}``        trials per trial state
                                                (complete, fail, running,
                                                waiting, pruned); a gauge, as
                                                running/waiting go down
  ``novatune_study_best_value{study,objective,direction}``
                                                best value of each objective
                                                over COMPLETE feasible trials
                                                (absent while there is none),
                                                in the objective's own unit
  ``novatune_study_pareto_front_trials{study}`` feasible trials on the Pareto front (1 for a
                                                single objective; absent while none is feasible)
  ``novatune_study_store_up``                   1 when the store was read on
                                                this scrape (or does not exist
                                                yet), 0 when reading it failed
- the fleet's agents (:class:`~experiments.fleet.metrics.AgentCollector`, from the host registry
  in the study database, read-only): ``novatune_agent_last_seen_timestamp_seconds{host}``,
  ``novatune_agent_up{host}``, ``novatune_agent_info{host,state,kernel}``; left out (one warning
  logged) when the registry cannot be read.
- ``novatune_build_info{version}`` 1.
- the latest benchmark run (:mod:`experiments.bench.metrics`), the applied changes, their rollbacks and
  drift (:mod:`experiments.deploy.metrics`), the profiler's measured overhead
  (:mod:`experiments.profiling.metrics`).
- the standard ``process_*`` metrics of the serving process.

A study store that cannot be read never fails the scrape: host metrics are
still served, ``novatune_study_store_up`` is 0 and the error is logged.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator

import optuna
from optuna.trial import TrialState
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.metrics import MetricsSampler
from collectors.prometheus import PREFIX, HostCollector, render
from experiments.fleet.hosts import HostRegistry
from experiments.settings import Paths
from experiments.study.results import StudyView

__all__ = ["TRIAL_STATES", "BuildInfoCollector", "ServiceMetrics", "StudyStateCollector"]

log = logging.getLogger(__name__)

#: trial states counted per study (always emitted, 0 when none)
TRIAL_STATES: tuple[TrialState, ...] = (
    TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING, TrialState.PRUNED,
)


class StudyStateCollector:
    """Custom collector: tuner state of every study under ``paths`` (see module doc).

    Keeps one ``RDBStorage`` (opened when the store first exists, dropped after
    an error) so a scrape costs a few queries, not an engine set-up per study.
    Not thread safe: :class:`ServiceMetrics` serialises scrapes.
    """

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._storage: optuna.storages.RDBStorage | None = None
        self._last_error: str | None = None

    def _views(self) -> list[StudyView]:
        if not self.paths.has_studies:
            self._storage = None  # never create the store from a scrape
            return []
        if self._storage is None:
            self._storage = optuna.storages.RDBStorage(self.paths.optuna_url)
        storage = self._storage
        views = []
        for s in storage.get_all_studies():
            attrs = dict(s.user_attrs)
            directions = [d.name.lower() for d in s.directions]
            objectives = list(attrs.get("objectives") or [])
            objectives += [f"objective_{i}" for i in range(len(objectives), len(directions))]
            study_id = storage.get_study_id_from_name(s.study_name)
            views.append(
                StudyView(
                    name=s.study_name,
                    objectives=objectives,
                    directions=directions,
                    attrs=attrs,
                    trials=storage.get_all_trials(study_id, deepcopy=False),
                )
            )
        return views

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(f"{PREFIX}_study_info", "novatune study and its state (value always 1)",
                                 labels=["study", "state"])
        running = GaugeMetricFamily(f"{PREFIX}_study_running",
                                    "1 while the novatune study's state is running, else 0", labels=["study"])
        trials = GaugeMetricFamily(f"{PREFIX}_study_trials", "trials of the novatune study, by trial state",
                                   labels=["study", "state"])
        best = GaugeMetricFamily(
            f"{PREFIX}_study_best_value",
            "best value of each objective over the study's complete feasible trials (the objective's own unit)",
            labels=["study", "objective", "direction"],
        )
        front = GaugeMetricFamily(f"{PREFIX}_study_pareto_front_trials",
                                  "feasible complete trials on the novatune study's Pareto front", labels=["study"])
        up = GaugeMetricFamily(f"{PREFIX}_study_store_up",
                               "1 if the study store could be read on this scrape (or does not exist yet), else 0")
        try:
            views = self._views()
        except Exception as err:  # noqa: BLE001 - a scrape never fails on the study store: store_up 0, logged
            self._storage = None
            text = f"{type(err).__name__}: {err}"
            if text != self._last_error:
                log.warning("metrics: cannot read the study store %s: %s", self.paths.optuna_url, text)
            self._last_error = text
            up.add_metric([], 0.0)
            yield from (up, info, running, trials, best, front)
            return
        self._last_error = None
        up.add_metric([], 1.0)
        for v in views:
            state = str(v.attrs.get("state") or "unknown")
            info.add_metric([v.name, state], 1.0)
            running.add_metric([v.name], 1.0 if state == "running" else 0.0)
            counts = dict.fromkeys(TRIAL_STATES, 0)
            for t in v.trials:
                if t.state in counts:
                    counts[t.state] += 1
            for st, n in counts.items():
                trials.add_metric([v.name, st.name.lower()], float(n))
            feasible = [t for t in v.trials if v.is_feasible(t) and t.values is not None]
            for i, (objective, direction) in enumerate(zip(v.objectives, v.directions, strict=True)):
                vals = [t.values[i] for t in feasible if i < len(t.values) and math.isfinite(t.values[i])]
                if vals:
                    best.add_metric([v.name, objective, direction], max(vals) if direction == "maximize" else min(vals))
            size = _front_size(v)
            if size:
                front.add_metric([v.name], float(size))
        yield from (up, info, running, trials, best, front)


def _front_size(view: StudyView) -> int:
    """How many feasible trials are on the study's Pareto front (0 when it cannot be computed: logged)."""
    try:
        return len(view.pareto()[0].front)
    except (ValueError, TypeError) as err:
        log.warning("metrics: no Pareto front for study %s: %s", view.name, err)
        return 0


class BuildInfoCollector:
    """``novatune_build_info{version} 1``."""

    def __init__(self, version: str) -> None:
        self.version = version

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(f"{PREFIX}_build_info", "novatune build information (value always 1)",
                                labels=["version"])
        fam.add_metric([self.version], 1.0)
        yield fam


class ServiceMetrics:
    """The per-app registry behind ``/metrics``; :meth:`render` is safe to call from several threads.

    Args:
        paths: the data directory whose study store is exposed.
        version: the package version for ``novatune_build_info``.
        sampler: host sampler (default: a new ``MetricsSampler()`` on ``/``); primed here.
        process: also expose the standard ``process_*`` metrics of this process.
        hosts: the fleet's host registry (default: the study database's, opened read-only).
        dead_after_s: the setting ``fleet_dead_after_s``, or a function giving it at each scrape.
    """

    def __init__(self, paths: Paths, *, version: str, sampler: MetricsSampler | None = None,
                 process: bool = True, hosts: HostRegistry | None = None,
                 dead_after_s: float | Callable[[], float] = 60.0) -> None:
        self.sampler = sampler if sampler is not None else MetricsSampler()
        self.sampler.sample()  # prime the counters: the first scrape already has rates
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HostCollector(self.sampler))
        self.registry.register(StudyStateCollector(paths))
        self.registry.register(BuildInfoCollector(version))
        from experiments.bench.metrics import BenchCollector

        self.registry.register(BenchCollector(paths))
        from experiments.fleet.metrics import AgentCollector

        registry = hosts if hosts is not None else HostRegistry(paths.optuna_url, migrate=False)
        limit = dead_after_s
        self.registry.register(AgentCollector(registry, limit if callable(limit) else lambda: float(limit)))
        # applied changes, rollbacks and drift; the profiler's overhead (what deploy/prometheus alerts on)
        from experiments.deploy.metrics import ChangesCollector
        from experiments.profiling.metrics import ProfilerOverheadCollector

        self.registry.register(ChangesCollector(paths))
        self.registry.register(ProfilerOverheadCollector(paths))
        if process:
            ProcessCollector(registry=self.registry)
        self._lock = threading.Lock()

    def render(self) -> bytes:
        """One scrape: the text exposition (``prometheus_client.CONTENT_TYPE_LATEST``)."""
        with self._lock:  # the sampler's rate state is per scrape; never two at once
            return render(self.registry)
