"""Drift: has the workload or its performance changed since the reference measurement?

Two questions on per-window figures, both answered by :func:`optimizer.decision.decide` (bootstrap
interval of the relative median change, Mann–Whitney, Cliff's delta), so a change must be beyond the
noise, with confidence, to count:

* ``fell``: an objective is worse than ``drop_limit`` (e.g. -10 %) since the reference (one-sided);
* ``drifted``: a workload characteristic (offered load / throughput, the target's CPU use, the host's
  CPU use), the latency or an objective moved more than ``drift_limit`` in either direction (two guards
  per metric). The latency counts because a closed-loop load on a saturated service shows more load as
  longer queues (latency), not as more throughput.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optimizer.decision import Guard, decide

__all__ = ["CHARACTERISTICS", "check_drift"]

#: what characterises the workload, when measured: its load (a closed-loop load generator's throughput
#: is its offered load), the CPU the tuned processes use, the host's CPU use, and its latency (queueing)
CHARACTERISTICS = ("throughput_rps", "throughput", "target_cpu_cores", "host_cpu_util_pct", "latency_p95_ms")


def _both(ref: Mapping[str, Sequence[float]], now: Mapping[str, Sequence[float]], m: str) -> bool:
    return m in ref and m in now


def check_drift(reference: Mapping[str, Sequence[float]], now: Mapping[str, Sequence[float]], *,
                objectives: Mapping[str, str], drop_limit: float, drift_limit: float) -> dict[str, Any]:
    """``{"drifted", "fell", "reason", "changed": [...], "performance": [...]}`` (figures as dicts).

    ``objectives``: metric -> ``maximize`` | ``minimize``. Metrics missing on either side are skipped.
    """
    perf = [Guard(m, d, drop_limit) for m, d in objectives.items() if _both(reference, now, m)]  # type: ignore[arg-type]
    fell, perf_rows = False, []
    if perf:
        dp = decide(reference, now, perf)
        fell = dp.decision == "roll_back"
        perf_rows = [_row(v) for v in dp.metrics]
    limit = -min(drift_limit, 0.99)
    names = [m for m in dict.fromkeys([*CHARACTERISTICS, *objectives]) if _both(reference, now, m)]
    two = [Guard(m, d, limit) for m in names for d in ("maximize", "minimize")]
    changed = []
    if two:
        dc = decide(reference, now, two)
        seen = set()
        for v in dc.metrics:
            if v.verdict == "worse" and v.metric not in seen:
                seen.add(v.metric)
                rel = v.change if v.direction == "maximize" else -v.change
                changed.append({"metric": v.metric, "before": v.before, "after": v.after, "change": rel,
                                "p_value": v.p_value})
    reasons = []
    if fell:
        worse = [r for r in perf_rows if r["verdict"] == "worse"]
        reasons.append("performance fell beyond the limit: " + ", ".join(
            f"{r['metric']} {r['change']:+.1%} (CI {r['change_ci'][0]:+.1%}..{r['change_ci'][1]:+.1%})" for r in worse))
    if changed:
        reasons.append("changed beyond the noise: " + ", ".join(
            f"{c['metric']} {c['before']:.4g} -> {c['after']:.4g} ({c['change']:+.1%})" for c in changed))
    return {"drifted": bool(changed) or fell, "fell": fell,
            "reason": "; ".join(reasons) or "no change beyond the noise",
            "changed": changed, "performance": perf_rows}


def _row(v: Any) -> dict[str, Any]:
    return {"metric": v.metric, "before": v.before, "before_ci": list(v.before_ci), "after": v.after,
            "after_ci": list(v.after_ci), "change": v.change, "change_ci": list(v.change_ci),
            "p_value": v.p_value, "verdict": v.verdict}
