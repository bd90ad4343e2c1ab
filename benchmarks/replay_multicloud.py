"""Replay benchmark on the IBM multicloud table: auto vs random (and TPE for reference), scratch and transfer.

    python benchmarks/replay_multicloud.py [--seeds 20] [--budget 10] [--jobs 2] [--only runtime|cost]

Prints, per objective (each a single-objective replay), p_within_10pct and mean
regret of auto (from scratch and with --transfer), TPE, and random search with
the same budget and seeds, the issue's targets, and the `novatune replay`
command line that reproduces each figure. Targets (budget 10): auto from scratch
>= 0.7 and >= random + 0.25; auto with --transfer >= 0.85.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from optimizer.replay import Objective, ReplayTable, run_replay

TABLE = Path("/work/shared/datasets/multicloud/multi-cloud-configuration.csv")
KNOBS = "provider,A_family,A_vcpu,B_family,B_vcpu,C_family,C_type,C_vcpu,nodes"


def command(obj: str, sampler: str, transfer: bool, budget: int, seeds: int) -> str:
    return (
        f"novatune replay {TABLE} --group workload --knobs {KNOBS} --objective {obj}:min --feasible status "
        f"--budget {budget} --seeds {seeds} --sampler {sampler}{' --transfer' if transfer else ''} --json"
    )


def one(args: tuple[str, str, bool, int, int]) -> tuple[tuple, dict, float]:
    obj, sampler, transfer, budget, seeds = args
    df = pd.read_csv(TABLE, dtype=str, keep_default_na=False, na_values=[""])
    table = ReplayTable.from_frame(
        df, group="workload", knobs=KNOBS.split(","), objectives=[Objective(obj, "min")], feasible="status"
    )
    t0 = time.time()
    res = run_replay(table, budget=budget, seeds=seeds, sampler=sampler, transfer=transfer)
    return args, res.summary["overall"][obj], time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", choices=["runtime", "cost"])
    ap.add_argument("--no-tpe", action="store_true")
    a = ap.parse_args()
    objs = [f"target_{a.only}"] if a.only else ["target_runtime", "target_cost"]
    runs = []
    for obj in objs:
        runs += [(obj, "auto", False, a.budget, a.seeds), (obj, "auto", True, a.budget, a.seeds)]
        if not a.no_tpe:
            runs.append((obj, "tpe", False, a.budget, a.seeds))
    with ProcessPoolExecutor(a.jobs) as pool:
        results = list(pool.map(one, runs))
    print(f"multicloud replay, budget {a.budget}, {a.seeds} seeds (28 usable workloads)\n")
    print(f"{'objective':15} {'sampler':15} {'p_within_10pct':>14} {'random':>7} {'delta':>6} {'regret':>7} "
          f"{'rnd regret':>10} {'target':>12} {'met':>4} {'s':>5}")
    for (obj, sampler, transfer, _budget, _seeds), o, secs in results:
        p, r = o["p_within_10pct"], o["random_p_within_10pct"]
        if sampler == "auto":
            target, met = (">=0.85", p >= 0.85) if transfer else (">=0.7,+0.25", p >= 0.7 and p - r >= 0.25)
        else:
            target, met = "(reference)", None
        name = sampler + (" +transfer" if transfer else "")
        print(
            f"{obj:15} {name:15} {p:14.3f} {r:7.3f} {p - r:+6.2f} {o['mean_regret']:7.3f} "
            f"{o['random_mean_regret']:10.3f} {target:>12} {'' if met is None else ('yes' if met else 'NO'):>4} "
            f"{secs:5.0f}"
        )
    print("\nreproduce each line with:")
    for (obj, sampler, transfer, budget, seeds), _, _ in results:
        print("  " + command(obj, sampler, transfer, budget, seeds))


if __name__ == "__main__":
    main()
