"""``novatune rightsize replay``'s composition: read a trace, replay the recommender against the fixed
rules, and price each recommendation in the packaged instance catalog.

Output (the issue's contract, :func:`replay_report`)::

    {"recommendations": [{"vm_id", "cpu_cores", "mem_gib", "finding", "confidence", "instance_type",
                          "usd_per_month", "savings_usd_per_month"}, ...],
     "summary": {... see optimizer.rightsizing.replay.summarize ...}}

``instance_type`` is the cheapest x86_64, non-burstable catalog type with at least the recommended vCPUs
and memory (:func:`optimizer.rightsizing.offers.cheapest_holding`, as a plan prices it);
``usd_per_month`` its on-demand price over 730 hours; ``savings_usd_per_month`` the price of the cheapest
such type that holds the VM's current capacity minus that (None when the capacity is unknown or nothing
fits).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collectors.pricing import InstanceType, load_instance_types
from collectors.usage.traces import TraceError, read_bitbrains, read_trace
from optimizer.rightsizing.model import PROFILES, UsageSeries
from optimizer.rightsizing.offers import cheapest_holding
from optimizer.rightsizing.replay import VmReplay, replay

__all__ = ["HOURS_PER_MONTH", "load_series", "price_row", "replay_report"]

HOURS_PER_MONTH = 730.0


def load_series(path: str | os.PathLike[str], *, max_bytes: int) -> dict[str, UsageSeries]:
    """A CSV trace of the contract, or a Bitbrains directory (``<vm>.csv`` files), by VM.

    Raises:
        TraceError: see :func:`~collectors.usage.traces.read_trace` and :func:`~collectors.usage.traces.read_bitbrains`.
    """
    p = Path(path)
    if p.is_dir():
        return read_bitbrains(p, max_bytes=max_bytes)
    if not p.exists():
        raise TraceError(f"trace {p} does not exist; give a CSV file (vm_id, timestamp, cpu_used_cores, "
                         "mem_used_gib) or a Bitbrains directory")
    return read_trace(p, max_bytes=max_bytes)


def _monthly(t: InstanceType | None) -> float | None:
    return None if t is None else round(t.usd_per_hour * HOURS_PER_MONTH, 2)


def price_row(v: VmReplay, types: Mapping[str, InstanceType]) -> dict[str, Any]:
    """One recommendation row of the contract for ``v``."""
    rec = v.recommendation
    fit = cheapest_holding(types.values(), rec.cpu.target, rec.memory.target)
    usd = _monthly(fit)  # type: ignore[arg-type]
    cur_cpu, cur_mem = rec.cpu.current, rec.memory.current
    savings = None
    if cur_cpu is not None and cur_mem is not None and usd is not None:
        now = _monthly(cheapest_holding(types.values(), cur_cpu, cur_mem))  # type: ignore[arg-type]
        savings = None if now is None else round(now - usd, 2)
    return {
        "vm_id": v.target, "cpu_cores": round(rec.cpu.target, 4), "mem_gib": round(rec.memory.target, 4),
        "finding": rec.finding, "confidence": rec.confidence, "instance_type": fit.name if fit else None,
        "usd_per_month": usd, "savings_usd_per_month": savings,
    }


def replay_report(series: Mapping[str, UsageSeries], *, train_frac: float = 0.5, profile: str = "balanced",
                  types: Mapping[str, InstanceType] | None = None) -> dict[str, Any]:
    """Replay ``series`` (see :mod:`optimizer.rightsizing.replay`) and price the recommendations.

    Raises:
        TraceError: ``train_frac`` outside (0, 1) or an unknown profile (the message lists what is allowed).
        CollectorError: the instance catalog cannot be read.
    """
    if not 0.0 < train_frac < 1.0:
        raise TraceError(f"--train-frac {train_frac:g}: allowed strictly between 0 and 1 (e.g. 0.5)")
    if profile not in PROFILES:
        raise TraceError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    result = replay(series, train_frac=train_frac, profile=profile)
    catalog = load_instance_types() if types is None else types
    return {"recommendations": [price_row(v, catalog) for v in result.vms], "summary": result.summary()}
