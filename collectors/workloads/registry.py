"""The workload registry: a spec's ``workload`` section -> a :class:`collectors.workloads.base.Workload`.

Kinds (:data:`WORKLOADS`): ``oltp`` (built-in, the quickstart's), the real
tools ``fio``, ``pgbench``, ``redis-benchmark``, ``wrk``, ``iperf3``,
``stress-ng`` (:data:`TOOL_WORKLOADS`; each with the server it needs, started
by the study on 127.0.0.1), and ``passive`` (something already running).
Building a workload validates its options and starts nothing, so a spec is
checked before any knob moves.

The section is a pydantic model (``experiments.spec``'s workload specs) or a
plain mapping; either way its ``kind`` (``oltp`` when absent) picks the class
and every other field is a constructor option. Nothing here depends on
``experiments``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from collectors.errors import WorkloadError
from collectors.passive.allowed import PassivePolicy
from collectors.passive.target import PassiveWorkload
from collectors.workloads.base import COMMON_METRICS, Workload
from collectors.workloads.oltp import OltpService
from collectors.workloads.tools.fio import FioWorkload
from collectors.workloads.tools.iperf3 import Iperf3Workload
from collectors.workloads.tools.pgbench import PgbenchWorkload
from collectors.workloads.tools.redis_benchmark import RedisBenchmarkWorkload
from collectors.workloads.tools.stress_ng import StressNgWorkload
from collectors.workloads.tools.workload import ToolWorkload
from collectors.workloads.tools.wrk import WrkWorkload

__all__ = ["TOOL_WORKLOADS", "WORKLOADS", "build_workload", "workload_metric_docs"]

#: tool name -> workload class (constructor: ``cls(workdir, **options)``)
TOOL_WORKLOADS: dict[str, type[ToolWorkload]] = {
    "fio": FioWorkload,
    "pgbench": PgbenchWorkload,
    "redis-benchmark": RedisBenchmarkWorkload,
    "wrk": WrkWorkload,
    "iperf3": Iperf3Workload,
    "stress-ng": StressNgWorkload,
}

#: every workload kind -> its class (``passive`` takes no workdir: ``PassiveWorkload(**options)``)
WORKLOADS: dict[str, type[Workload]] = {"oltp": OltpService, "passive": PassiveWorkload, **TOOL_WORKLOADS}


def build_workload(
    spec: BaseModel | Mapping[str, Any], workdir: Path, *, policy: PassivePolicy | None = None,
    allowed_roots: Sequence[str | os.PathLike[str]] = (), protected: Sequence[str | os.PathLike[str]] = (),
) -> Workload:
    """The workload ``spec`` describes, validated, not started.

    Args:
        spec: the ``workload`` section: a pydantic model or a mapping with an
            optional ``kind`` (default ``oltp``) and the kind's options.
        workdir: the workload's scratch directory (not created here).
        policy: a passive workload's allowed targets and probe hosts (the operator's settings; default:
            the strict policy, which allows no target). Never taken from ``spec``.
        allowed_roots: directories besides the workdir a path option (fio's
            ``filename``) may name: the operator's ``workload_allowed_paths``.
        protected: never a target of a path option, even under an allowed root
            (novatune's data directory). See :mod:`collectors.safepath`.

    Raises:
        WorkloadError / CollectorError: an unknown kind, or an option the
            workload refuses (the message names it and what is allowed).
        ValueError / TypeError: an OLTP option out of range or of a wrong type.
    """
    opts = dict(spec.model_dump() if isinstance(spec, BaseModel) else spec)
    kind = opts.pop("kind", "oltp")
    if kind == "oltp":
        return OltpService(workdir, **opts)
    if kind == "passive":
        opts.pop("policy", None)
        return PassiveWorkload(**opts, policy=policy)
    if kind not in TOOL_WORKLOADS:
        raise WorkloadError(f"unknown workload kind {kind!r}; known: oltp, passive, {', '.join(TOOL_WORKLOADS)}")
    return TOOL_WORKLOADS[kind](workdir, allowed_roots=allowed_roots, protected=protected, **opts)


def workload_metric_docs(workload: Workload) -> dict[str, tuple[str, str]]:
    """``{metric: (unit, description)}`` for what ``workload`` reports."""
    out = {}
    for name in workload.metric_names():
        out[name] = COMMON_METRICS.get(name, ("", f"reported by the {workload.kind} workload"))
    return out
