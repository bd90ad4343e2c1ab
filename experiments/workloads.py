"""The workload registry: a spec's ``workload`` section -> a :class:`collectors.workloads.base.Workload`.

Kinds: ``oltp`` (built-in, the quickstart's), the real tools ``fio``,
``pgbench``, ``redis-benchmark``, ``wrk``, ``iperf3``, ``stress-ng`` (each
with the server it needs, started by the study on 127.0.0.1), and ``passive``
(something already running). Building a workload validates its options and
starts nothing, so a spec is checked before any knob moves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from collectors.errors import CollectorError, WorkloadError
from collectors.workloads.base import COMMON_METRICS, Measurement, Workload
from collectors.workloads.oltp import OltpWorkload

__all__ = ["OltpService", "build_workload", "workload_metric_docs"]

_OLTP_METRICS = ("throughput", "throughput_rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                 "errors", "error_rate", "throughput_cv")


class OltpService:
    """:class:`OltpWorkload` behind the :class:`Workload` protocol (``kind: oltp``).

    Reports ``throughput`` and its historical name ``throughput_rps`` (requests/s,
    the same number), latency percentiles, ``errors``, ``error_rate`` and
    ``throughput_cv``: the coefficient of variation of the per-second request
    rate over the measurement window (how steady the window was).
    """

    kind = "oltp"

    def __init__(self, workdir: Path, *, workers: int = 2, clients: int = 8) -> None:
        self.inner = OltpWorkload(workdir, workers=workers, clients=clients)

    def metric_names(self) -> tuple[str, ...]:
        return _OLTP_METRICS

    def start(self, *, preexec_fn: Callable[[], None] | None = None) -> list[int]:
        return self.inner.start(preexec_fn=preexec_fn)

    def pids(self) -> list[int]:
        return self.inner.pids()

    def measure(self, *, warmup_s: float, measure_s: float) -> Measurement:
        res = self.inner.measure(warmup_s=warmup_s, measure_s=measure_s)
        total = res.requests + res.errors
        tl = res.timeline
        cv = math.nan
        if tl is not None and len(tl) and "rps" in tl:
            rps = tl.loc[tl["phase"] == "measure", "rps"].astype(float)
            if len(rps) >= 2 and rps.mean() > 0:
                cv = float(rps.std(ddof=1) / rps.mean())
        metrics = {
            "throughput": res.throughput_rps,
            "throughput_rps": res.throughput_rps,
            "latency_p50_ms": res.latency_p50_ms,
            "latency_p95_ms": res.latency_p95_ms,
            "latency_p99_ms": res.latency_p99_ms,
            "errors": float(res.errors),
            "error_rate": res.errors / total if total else 1.0,
            "throughput_cv": cv,
        }
        notes = (f"request cap reached: {res.requests} requests",) if res.capped else ()
        return Measurement(metrics, {"throughput": "req/s", "throughput_rps": "req/s"}, tl, notes)

    def stop(self) -> None:
        self.inner.stop()


def _options(spec: BaseModel) -> dict[str, Any]:
    return {k: v for k, v in spec.model_dump().items() if k != "kind"}


def build_workload(spec: BaseModel, workdir: Path) -> Workload:
    """The workload ``spec`` describes, validated, not started.

    Raises:
        WorkloadError / CollectorError: an option the workload refuses (the
            message names it and what is allowed).
    """
    kind = getattr(spec, "kind", "oltp")
    opts = _options(spec)
    if kind == "oltp":
        return OltpService(workdir, **opts)
    if kind == "passive":
        from collectors.passive.target import PassiveWorkload

        return PassiveWorkload(**opts)
    from collectors.workloads.tools import TOOL_WORKLOADS

    if kind not in TOOL_WORKLOADS:
        raise WorkloadError(f"unknown workload kind {kind!r}; known: oltp, passive, {', '.join(TOOL_WORKLOADS)}")
    return TOOL_WORKLOADS[kind](workdir, **opts)


def workload_metric_docs(workload: Workload) -> dict[str, tuple[str, str]]:
    """``{metric: (unit, description)}`` for what ``workload`` reports."""
    out = {}
    for name in workload.metric_names():
        out[name] = COMMON_METRICS.get(name, ("", f"reported by the {workload.kind} workload"))
    return out


WORKLOAD_ERRORS = (WorkloadError, CollectorError)
