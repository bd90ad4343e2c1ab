"""Fleet-wide studies: each configuration measured on several hosts, its objective aggregated with its spread.

No coordinator: the trial is the meeting point, in the shared storage. The agent that asks a trial owns it
(its heartbeat keeps the trial alive), sets ``wanted`` (how many hosts should measure it), claims it for
its own host and measures it. Every agent, before it asks a new trial and while it waits as an owner,
looks for running trials that still want hosts and that it has not claimed (:func:`wanting_help`); it
claims one (``claim@HOST``), measures the same configuration on its host and writes what it measured
(``eval@HOST``). The owner tells Optuna once ``wanted`` hosts have written, or when its wait ends (a host
died or is slow): the objective is the mean over the hosts that measured it (:func:`aggregate`), the
per-host values are the trial's samples (one row per host, as repeats are for a local study) and its
``hosts`` attribute (each host's values, and the spread: min, max, standard deviation).

A host's measurement goes through its own journal, as every trial does: it is restored on that host,
whatever happens to the owner. An owner that dies leaves a trial the heartbeat check fails; measurements
written to it after that are refused by the storage and dropped.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from experiments.study.outcomes import TrialReport

__all__ = ["aggregate", "claims", "evaluation", "evaluations", "wanting_help"]


def claims(t: FrozenTrial) -> set[str]:
    """The hosts that claimed trial ``t`` (each measures it once)."""
    return {k.split("@", 1)[1] for k in t.user_attrs if k.startswith("claim@")}


def evaluations(t: FrozenTrial) -> dict[str, dict[str, Any]]:
    """host -> what it measured for trial ``t`` (``state``, ``values``, ``metrics``, ``reason``)."""
    return {k.split("@", 1)[1]: v for k, v in t.user_attrs.items() if k.startswith("eval@") and isinstance(v, dict)}


def wanting_help(study: optuna.Study, host: str) -> FrozenTrial | None:
    """The oldest running trial that wants more hosts than have claimed it and that ``host`` has not."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        wanted = t.user_attrs.get("wanted")
        if isinstance(wanted, int) and host not in claims(t) and len(claims(t)) < wanted:
            return t
    return None


def evaluation(tr: TrialReport, objectives: list[str]) -> dict[str, Any]:
    """What a host writes for a trial it measured (JSON: non-finite figures dropped)."""
    finite = {k: v for k, v in tr.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    return {"state": tr.state, "values": [finite.get(o) for o in objectives], "metrics": finite,
            "reason": tr.reason, "seconds": round(tr.seconds, 3)}


def aggregate(number: int, params: dict[str, Any], evals: dict[str, dict[str, Any]],
              objectives: list[str]) -> tuple[TrialReport, dict[str, Any]]:
    """The trial as Optuna is told it: the mean of every metric over the hosts whose measurement completed
    (samples: one row of objective values per host), and the ``hosts`` attribute (per host, spread)."""
    done = {h: e for h, e in evals.items()
            if e.get("state") == "complete" and all(isinstance(v, (int, float)) for v in e.get("values") or [None])}
    tr = TrialReport(number, params, "fail")
    summary: dict[str, Any] = {"measured": sorted(done), "failed": {h: e.get("reason") for h, e in evals.items()
                                                                    if h not in done}}
    if not done:
        tr.reason = "no host measured it: " + "; ".join(f"{h}: {r}" for h, r in summary["failed"].items())
        return tr, summary
    keys = set.intersection(*(set(e["metrics"]) for e in done.values()))
    tr.metrics = {k: statistics.fmean(float(e["metrics"][k]) for e in done.values()) for k in sorted(keys)}
    tr.samples = [[float(v) for v in e["values"]] for e in done.values()]
    tr.state = "complete"
    tr.seconds = max(float(e.get("seconds") or 0) for e in done.values())
    for i, o in enumerate(objectives):
        vals = [row[i] for row in tr.samples]
        summary[o] = {"per_host": {h: float(e["values"][i]) for h, e in done.items()}, "mean": statistics.fmean(vals),
                      "min": min(vals), "max": max(vals), "stdev": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    if summary["failed"]:
        tr.reason = f"measured on {len(done)} of {len(evals)} hosts"
    return tr, summary
