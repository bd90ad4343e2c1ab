"""``bench compare``: two stored runs, benchmark by benchmark, through :mod:`optimizer.benchcompare`.

The report (:func:`compare_runs`) names both runs, says whether they ran on the same machine and kernel
(a comparison across either is made anyway, with ``comparable`` False and the differences listed), and
per benchmark measured in both gives the verdict (regression / improvement / no change), the relative
change of the median with its interval, the threshold and the reason. ``regressions`` lists the
benchmarks found worse: the CLI exits :data:`EXIT_REGRESSION` when it is not empty.
"""

from __future__ import annotations

from typing import Any

from experiments.bench import identity
from experiments.bench.store import json_safe, load_run, newest_id
from experiments.settings import Paths
from optimizer.benchcompare import (
    DEFAULT_MIN_EFFECT,
    DEFAULT_NOISE_FACTOR,
    DEFAULT_SHARE_MIN_EFFECT,
    compare_samples,
    with_cpu_share,
)

__all__ = ["EXIT_REGRESSION", "compare_docs", "compare_runs"]

#: the exit code of ``bench compare`` when a regression is found (as ``apply --validate`` exits 3 when a
#: change is not kept: the command worked, and its answer is "no")
EXIT_REGRESSION = 3


def _finite(values: Any) -> list[float]:
    return [x for x in values or [] if x is not None]


def compare_docs(base: dict[str, Any], run: dict[str, Any], *, min_effect: float | None = None,
                 noise_factor: float = DEFAULT_NOISE_FACTOR,
                 share_min_effect: float = DEFAULT_SHARE_MIN_EFFECT) -> dict[str, Any]:
    """The comparison of two stored run documents (see the module docstring); strict JSON (None for an unknown
    figure). ``min_effect`` overrides every benchmark's own bar, ``share_min_effect`` the bar of the CPU share
    (the quality benchmark's analysis)."""
    diffs = identity.differences(base, run)
    hardware = [d for d in diffs if d.startswith(("machine ", "kernel "))]
    rows: dict[str, Any] = {}
    for name, b in base["benchmarks"].items():
        r = run["benchmarks"].get(name)
        if r is None:
            continue
        bar = min_effect if min_effect is not None else max(float(b.get("min_effect") or DEFAULT_MIN_EFFECT),
                                                            float(r.get("min_effect") or 0.0))
        v = compare_samples(_finite(b.get("values")), _finite(r.get("values")),
                            direction=str(b.get("direction", "maximize")), min_effect=bar, noise_factor=noise_factor)
        share = None
        if b.get("cpu_share") and r.get("cpu_share"):  # runs stored before shares were recorded have none
            v, s = with_cpu_share(v, _finite(b["cpu_share"]), _finite(r["cpu_share"]), min_effect=share_min_effect,
                                  noise_factor=noise_factor)
            share = {k: getattr(s, k) for k in ("base_median", "run_median", "change", "change_ci", "threshold",
                                                 "verdict", "reason")}
        rows[name] = {"unit": b.get("unit"), "metric": b.get("metric"), **v.as_dict(), "cpu_share": share}
    regressions = [n for n, v in rows.items() if v["verdict"] == "regression"]
    return json_safe({
        "base": base["id"], "run": run["id"], "base_time": base.get("time"), "run_time": run.get("time"),
        "comparable": not hardware, "differences": diffs,
        "only_in_base": sorted(set(base["benchmarks"]) - set(run["benchmarks"])),
        "only_in_run": sorted(set(run["benchmarks"]) - set(base["benchmarks"])),
        "benchmarks": rows, "regressions": regressions,
        "improvements": [n for n, v in rows.items() if v["verdict"] == "improvement"],
        "verdict": "regression" if regressions else "no regression",
    })


def compare_runs(paths: Paths, base_id: str, run_id: str | None = None) -> dict[str, Any]:
    """Compare run ``run_id`` (default: the newest stored run other than the base) with ``base_id``.

    Raises:
        BenchNotFound: either id is unknown, or there is no other run to compare with.
        BenchStoreError: a run cannot be read.
    """
    base = load_run(paths, base_id)
    rid = run_id if run_id is not None else newest_id(paths, other_than=base["id"])
    return compare_docs(base, load_run(paths, rid))
