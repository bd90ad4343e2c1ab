"""auto with and without the knowledge features and the price x time derivation, on a self-made
Scout-like table (instance family x size x nodes; benchmarks/_scoutlike.py).

    python -m benchmarks.replay_features [--seeds 10] [--budget 10] [--combined] [--tpe]

Prints per objective (time_s, cost_usd; each a single-objective replay) and variant -- ``plain`` (today's
encoding), ``features`` (extra inputs; the default), ``features+derive`` (cost modelled as price x time),
``features+per_vcpu`` (cost as $/vCPU-h x vCPU-hours) --
p_within_10pct and mean regret beside random search with the same budget and seeds. ``--combined`` names
instances in one knob (``c4.large``) instead of family + size; ``--tpe`` adds Optuna's TPE for reference.
The catalog is the packaged AWS us-east-1 one; the table's c4/m4/r4 are not in it (estimated by name).
"""

from __future__ import annotations

import argparse
import time

from benchmarks._scoutlike import scoutlike_frame
from collectors.pricing import load_instance_types
from optimizer.replay import Objective, ReplayTable, encoding, run_replay

VARIANTS: dict[str, tuple[bool, str | bool]] = {
    "plain": (False, False), "features": (True, False), "features+derive": (True, "price"),
    "features+per_vcpu": (True, "per_vcpu"),
}


def table(obj: str, combined: bool) -> ReplayTable:
    knobs = ["instance_type", "nodes"] if combined else ["family", "size", "nodes"]
    return ReplayTable.from_frame(scoutlike_frame(combined=combined), group="workload", knobs=knobs,
                                  objectives=[Objective(obj, "min")], feasible="status",
                                  catalog=dict(load_instance_types()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=10)
    ap.add_argument("--combined", action="store_true")
    ap.add_argument("--tpe", action="store_true")
    ap.add_argument("--only", choices=["time_s", "cost_usd"])
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    a = ap.parse_args()
    print(f"Scout-like replay ({'instance_type' if a.combined else 'family,size'},nodes), budget {a.budget}, "
          f"{a.seeds} seeds, 8 workloads x 78 configurations\n")
    print(f"{'objective':10} {'variant':16} {'p_within_10pct':>14} {'random':>7} {'regret':>7} {'rnd regret':>10} "
          f"{'s':>4}")
    for obj in [a.only] if a.only else ["time_s", "cost_usd"]:
        tbl = table(obj, a.combined)
        runs = [(v, "auto") for v in a.variants.split(",")] + ([("tpe", "tpe")] if a.tpe else [])
        for variant, sampler in runs:
            encoding.FEATURES, encoding.DERIVE_COST = VARIANTS.get(variant, (True, False))
            t0 = time.time()
            o = run_replay(tbl, budget=a.budget, seeds=a.seeds, sampler=sampler).summary["overall"][obj]
            print(f"{obj:10} {variant:16} {o['p_within_10pct']:14.3f} {o['random_p_within_10pct']:7.3f} "
                  f"{o['mean_regret']:7.3f} {o['random_mean_regret']:10.3f} {time.time() - t0:4.0f}", flush=True)
    encoding.FEATURES, encoding.DERIVE_COST = True, False


if __name__ == "__main__":
    main()
