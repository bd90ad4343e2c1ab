"""Measurement reduction: one window -> metrics, several repeats -> medians, sizing -> cost.

:class:`Measurer` runs one measurement window of the workload while the
collector samples its series, scores the series over the steady part of the
window, reduces a trial's repeats to medians with confidence intervals, prices
the sizing the trial applied and says by how much a constraint is violated.
"""

from __future__ import annotations

import math
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from collectors.cgroupstats import cpu_delta
from collectors.errors import WorkloadError
from collectors.kernelfiles import parse_cpu_list
from collectors.recorder import Recorder
from collectors.timeseries import steady_window
from experiments.study.metric_names import SERIES_METRICS
from experiments.study.prepare import StudyPlan
from experiments.study.setup import RunContext

if TYPE_CHECKING:
    from experiments.study.profiling import TrialProfiler
from optimizer.cost import Sizing, cost_per_1k_requests, hourly_cost
from optimizer.stats import estimate

__all__ = ["Measurer", "violation"]

_OPS_UNITS = ("req/s", "requests/s", "ops/s", "tx/s", "tps", "op/s")


def violation(plan: StudyPlan, metric: str, metrics: dict[str, float]) -> float:
    """How far ``metrics`` violate the spec's constraint on ``metric`` (<= 0: met; inf: not measured)."""
    c = plan.spec.constraints[metric]
    v = metrics.get(metric, math.nan)
    if not math.isfinite(v):
        return math.inf
    if c.max is not None:
        return v - c.max
    assert c.min is not None  # the spec requires one of min and max
    return c.min - v


class Measurer:
    """Measures trials of one run (its workload, collector and cgroup reader)."""

    def __init__(self, plan: StudyPlan, ctx: RunContext, *, profiler: TrialProfiler | None = None) -> None:
        self.plan = plan
        self.ctx = ctx
        #: samples the tuned processes in each window when the spec has a ``profile:`` section
        self.profiler = profiler

    def window(self, rep: int, series: list[pd.DataFrame], timelines: list[pd.DataFrame],
               units: dict[str, str]) -> dict[str, float]:
        """One measurement window (warm-up, then measure) with the collector sampling alongside.

        Appends the window's series and the workload's timeline (tagged with ``rep``) and the units the
        workload reports. Raises WorkloadError (a target vanished, the tool failed), CollectorError.
        """
        t = self.plan.spec.trial
        ctx = self.ctx
        assert ctx.workload is not None and ctx.collector is not None
        recorder = Recorder(ctx.collector, interval_s=t.sample_interval_s)
        before = ctx.reader.read() if ctx.reader is not None else None
        profiling: AbstractContextManager[None] = nullcontext()
        if self.profiler is not None:
            profiling = self.profiler.window(ctx.workload.pids(), warmup_s=t.warmup_s, measure_s=t.measure_s)
        neighbour: AbstractContextManager[dict[str, float]] = nullcontext({})
        if ctx.neighbour is not None:  # the batch job runs alongside the service's window
            neighbour = ctx.neighbour.window(warmup_s=t.warmup_s, measure_s=t.measure_s)
        recorder.start()
        try:
            with profiling, neighbour as nb_metrics:
                res = ctx.workload.measure(warmup_s=t.warmup_s, measure_s=t.measure_s)
        finally:
            frame = recorder.stop()
        after = ctx.reader.read() if ctx.reader is not None else None
        if frame.attrs.get("vanished"):
            raise WorkloadError("target vanished during the window: " + "; ".join(frame.attrs["vanished"].values()))
        m = {k: float(v) for k, v in res.metrics.items()} | nb_metrics
        for key, value in self.series_metrics(frame).items():
            m.setdefault(key, value)  # what the workload measured itself wins
        if before is not None and after is not None:
            m["cgroup_throttled_ratio"] = cpu_delta(before, after).throttled_ratio
        units.update(res.units)
        frame = frame.copy()
        frame["repeat"] = rep
        series.append(frame)
        if res.timeline is not None and len(res.timeline):
            tl = res.timeline.copy()
            tl["repeat"] = rep
            timelines.append(tl)
        return m

    def series_metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        """Means of the series metrics over the steady part of the window (see ``trial.steady``)."""
        t = self.plan.spec.trial
        targets = self.ctx.targets
        labels = {k: targets[k].label if k in targets else "-" for k in ("p", "c")}
        cols: dict[str, str] = {}
        for name, candidates in SERIES_METRICS.items():
            found = [c.format(**labels) for c in candidates if c.format(**labels) in frame]
            if found:
                cols[name] = found[0]
        if t.steady is not None and t.steady.metric in cols:
            window = steady_window(frame, cols[t.steady.metric], warmup_s=t.warmup_s,
                                   window_s=t.steady.window_s, max_cv=t.steady.max_cv)
            out = {"window_stable": 1.0 if window.attrs.get("stable") else 0.0}
        else:
            started = frame.attrs.get("started")
            window = frame
            if started is not None and len(frame):
                trimmed = frame[frame.index >= started + pd.Timedelta(seconds=t.warmup_s)]
                window = trimmed if len(trimmed) else frame  # a count-bound run can end before warmup_s
            out = {}
        out["window_samples"] = float(len(window))
        for name, col in cols.items():
            if col in window:
                vals = window[col].to_numpy(dtype=float)
                vals = vals[np.isfinite(vals)]
                if vals.size:
                    out[name] = float(vals.mean())
        return out

    def reduce(self, per_repeat: list[dict[str, float]], params: dict[str, Any], *,
               throughput_unit: str = "") -> dict[str, float]:
        """Medians over the repeats (``<metric>_ci_low/_ci_high`` when there are several), the effective
        vCPUs of the sizing ``params`` applied, and its cost."""
        out: dict[str, float] = {}
        for key in per_repeat[0]:
            samples = [r[key] for r in per_repeat if key in r and math.isfinite(r[key])]
            if not samples:
                out[key] = math.nan
                continue
            est = estimate(samples)
            out[key] = est.median
            if est.n > 1:
                out[f"{key}_ci_low"], out[f"{key}_ci_high"] = est.ci_low, est.ci_high
        out.update(self._cost(out, params, throughput_unit))
        return out

    def _cost(self, metrics: dict[str, float], params: dict[str, Any], throughput_unit: str) -> dict[str, float]:
        ncpu = float(os.cpu_count() or 1)
        vcpus = min(float(params.get("sizing.vcpus", ncpu)), float(params.get("affinity.cpus", ncpu)))
        if "sizing.cpuset_cpus" in params:
            vcpus = min(vcpus, float(len(parse_cpu_list(str(params["sizing.cpuset_cpus"])))))
        memory_gib = float(params.get("sizing.memory_gib", self.plan.spec.cost.memory_gib))
        prices = self.plan.prices
        usd = hourly_cost(Sizing(vcpus=vcpus, memory_gib=memory_gib),
                          cpu_usd_per_vcpu_hour=prices.cpu_usd_per_vcpu_hour,
                          memory_usd_per_gib_hour=prices.memory_usd_per_gib_hour)
        out = {"effective_vcpus": vcpus, "cost_usd_per_hour": usd}
        ops_like = throughput_unit in _OPS_UNITS
        rate = metrics.get("throughput_rps", metrics.get("throughput", math.nan) if ops_like else math.nan)
        if math.isfinite(rate):
            out["cost_usd_per_1k_requests"] = cost_per_1k_requests(usd, rate)
        return out

    @staticmethod
    def save_series(workdir: Path, number: int, series: list[pd.DataFrame], timelines: list[pd.DataFrame], *,
                    stem: str | None = None) -> None:
        """Persist a trial's collector series and workload timeline (CSV; units in ``series-units.csv``) as
        ``trials/<stem>-series.csv`` and ``-workload.csv`` (``stem`` default ``trial-NNN``)."""
        base = workdir / "trials"
        stem = stem or f"trial-{number:03d}"
        if series:
            frame = pd.concat(series)
            frame.to_csv(base / f"{stem}-series.csv", index_label="time")
            units = workdir / "series-units.csv"
            if not units.exists():
                pd.Series(series[0].attrs.get("units", {}), name="unit").rename_axis("metric").to_csv(units)
        if timelines:
            pd.concat(timelines).to_csv(base / f"{stem}-workload.csv")
