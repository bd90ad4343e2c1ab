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
from optimizer.benchcompare import DEFAULT_MIN_EFFECT, DEFAULT_NOISE_FACTOR, compare_samples

__all__ = ["EXIT_REGRESSION", "compare_docs", "compare_runs"]

#: the exit code of ``bench compare`` when a regression is found (as ``apply --validate`` exits 3 when a
#: change is not kept: the command worked, and its answer is "no")
EXIT_REGRESSION = 3


def compare_docs(base: dict[str, Any], run: dict[str, Any], *, min_effect: float | None = None,
                 noise_factor: float = DEFAULT_NOISE_FACTOR) -> dict[str, Any]:
    """The comparison of two stored run documents (see the module docstring); strict JSON (None for an unknown
    figure). ``min_effect`` overrides every benchmark's own bar (the quality benchmark's analysis)."""
    diffs = identity.differences(base, run)
    hardware = [d for d in diffs if d.startswith(("machine ", "kernel "))]
    rows: dict[str, Any] = {}
    for name, b in base["benchmarks"].items():
        r = run["benchmarks"].get(name)
        if r is None:
            continue
        bar = min_effect if min_effect is not None else max(float(b.get("min_effect") or DEFAULT_MIN_EFFECT),
                                                            float(r.get("min_effect") or 0.0))
        v = compare_samples([x for x in b.get("values") or [] if x is not None],
                            [x for x in r.get("values") or [] if x is not None],
                            direction=str(b.get("direction", "maximize")), min_effect=bar, noise_factor=noise_factor)
        rows[name] = {"unit": b.get("unit"), "metric": b.get("metric"), **v.as_dict()}
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
