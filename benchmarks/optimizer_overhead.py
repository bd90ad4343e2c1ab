"""Optimizer overhead: the wall time of one ask + tell once a study holds N trials.

    python3 benchmarks/optimizer_overhead.py [--trials 500] [--samplers tpe,gp,auto,nsga2,random]

A study (SQLite storage, as novatune's studies) over a novatune-like mixed space (6 numeric knobs, one
categorical, two objectives, one constraint through ``trial.set_constraint``) is filled with N
completed trials by random sampling, told directly (no workload); then the
sampler under test times ``--probe`` ask + tell pairs on that study (after
one first pair, reported apart: it also loads the sampler's libraries). It prints the median and p95 per
ask + tell per sampler and checks the issue's targets: <= 100 ms with TPE, <= 1 s with GP (GP needs
PyTorch: ``pip install 'novatune[gp]'``; skipped with a note without it).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.samplers import build_sampler
from optimizer.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    LessThan,
    SearchSpace,
)

TARGET_S = {"tpe": 0.100, "gp": 1.0}
SPACE = SearchSpace(
    (
        FloatParam("sizing.vcpus", 0.2, 2.0),
        IntParam("affinity.cpus", 1, 2),
        IntParam("vm.dirty_ratio", 10, 40),
        IntParam("vm.dirty_background_ratio", 2, 20),
        IntParam("vm.swappiness", 1, 100),
        IntParam("block.vda.read_ahead_kb", 16, 4096, log=True),
        CategoricalParam("thp.enabled", ("always", "madvise", "never")),
    ),
    (LessThan("vm.dirty_background_ratio", "vm.dirty_ratio"),),
)


def objective(p: dict, rng: np.random.Generator) -> tuple[float, float, float]:
    thr = 1000 * min(p["sizing.vcpus"], p["affinity.cpus"]) * (1.0 - abs(p["vm.swappiness"] - 30) / 400)
    thr *= 1.05 if p["thp.enabled"] == "madvise" else 1.0
    cost = 0.02 * min(p["sizing.vcpus"], p["affinity.cpus"]) + 0.003
    p95 = 5 + 40 / max(0.2, p["sizing.vcpus"]) + rng.normal(0, 1)
    return thr * (1 + rng.normal(0, 0.05)), cost, p95 - 50


def _step(study: optuna.Study, rng: np.random.Generator) -> float:
    t0 = time.perf_counter()
    trial = study.ask()
    params = SPACE.suggest(trial)
    thr, cost, viol = objective(params, rng)
    trial.set_constraint("latency_p95_ms", viol)
    study.tell(trial, [thr, cost])
    return time.perf_counter() - t0


def run(name: str, n: int, probe: int, seed: int, storage: str | None) -> list[float] | str:
    """Fill ``n`` trials with random sampling (what they are does not change the sampler's work per ask),
    then time ``probe`` ask + tell pairs with sampler ``name`` on that study."""
    try:
        choice = build_sampler(name, SPACE, n_objectives=2, budget=n + probe, seed=seed)
    except ValueError as err:
        return str(err)
    study = optuna.create_study(directions=["maximize", "minimize"], storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = np.random.default_rng(seed)
    for _ in range(n):
        _step(study, rng)
    study.sampler = choice.sampler
    first = _step(study, rng)  # the first ask also loads and warms up the sampler's libraries (torch for gp)
    return [first, *(_step(study, rng) for _ in range(probe))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=500, help="trials in the study before timing (default 500)")
    ap.add_argument("--probe", type=int, default=10, help="ask + tell pairs timed (default 10)")
    ap.add_argument("--samplers", default="tpe,gp,auto,nsga2,random")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--storage", choices=("sqlite", "memory"), default="sqlite",
                    help="sqlite (default: what novatune studies use) or memory")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    ok = True
    print(f"ask+tell with {args.trials} trials in the study ({args.storage} storage), {args.probe} timed "
          "(7 knobs, 2 objectives, 1 constraint)")
    tmp = tempfile.TemporaryDirectory(prefix="novatune-bench-")
    for i, name in enumerate(args.samplers.split(",")):
        storage = f"sqlite:///{tmp.name}/{i}.db" if args.storage == "sqlite" else None
        if name == "gp" and importlib.util.find_spec("torch") is None:
            print(f"{name:7s} skipped: PyTorch is not installed (pip install 'novatune[gp]')")
            continue
        t0 = time.perf_counter()
        res = run(name, args.trials, args.probe, args.seed, storage)
        if isinstance(res, str):
            print(f"{name:7s} not run: {res}")
            continue
        first, res = res[0], res[1:]
        med, p95 = statistics.median(res), float(np.percentile(res, 95))
        target = TARGET_S.get(name)
        verdict = "" if target is None else (
            f"target <= {target * 1000:.0f} ms: " + ("OK" if med <= target else "MISSED")
        )
        ok &= target is None or med <= target
        print(f"{name:7s} median {med * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  first {first * 1000:7.1f} ms  "
              f"({time.perf_counter() - t0:.0f} s in all)  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
