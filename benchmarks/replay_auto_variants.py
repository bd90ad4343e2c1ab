"""auto's variants on suite families: the same replay with one switch flipped (docs/replay.md, "auto's robustness").

    python -m benchmarks.replay_auto_variants --families fn-hartmann3-numeric-dense,cloud-itype-dense \\
        --variant alwaystrend [--seeds 5] [--transfer]

Variants: ``default``; ``alwaystrend`` (the trend for every table, as before: TREND_RESOURCES_ONLY off);
``trend0`` (never the trend); ``twW`` (TREND_WEIGHT = W); ``loo`` / ``cv`` (bo.TREND_MODE);
``ninitN`` (N space-filling starts); ``randinit`` (random starts instead of maximin).
Prints one line per family x objective.
Run from the worktree as a module (the installed package may be another checkout).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from benchmarks import replay_suite as rs
from optimizer import bo
from optimizer.replay import proposers, run_replay


def _random_start(X_seen: np.ndarray, X_candidates: np.ndarray, rng: np.random.Generator) -> int:
    """A uniformly random candidate (the ``randinit`` variant's replacement for maximin)."""
    return int(rng.integers(len(X_candidates)))


def apply(variant: str) -> None:
    """Flip the module switches of ``variant`` (in this process).

    Raises:
        SystemExit: an unknown variant.
    """
    if variant == "default":
        return
    if variant == "alwaystrend":
        proposers.TREND_RESOURCES_ONLY = False
    elif variant == "trend0":
        bo.TREND_WEIGHT = 0.0
    elif variant.startswith("tw"):
        bo.TREND_WEIGHT = float(variant[2:])
    elif variant in ("loo", "cv"):
        bo.TREND_MODE = variant
        proposers.TREND_RESOURCES_ONLY = False
    elif variant.startswith("ninit"):
        proposers.AutoProposer.__init__.__defaults__ = (False, int(variant[5:]))
    elif variant == "randinit":
        bo._maximin = _random_start
    else:
        raise SystemExit(f"--variant {variant!r}: unknown")


def main() -> None:
    """Replay ``auto`` with the variant on each family's objectives and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", required=True)
    ap.add_argument("--variant", default="default")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--transfer", action="store_true")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    apply(a.variant)
    fams = {f.name: f for f in rs.all_families()}
    for name in a.families.split(","):
        for obj in fams[name].objectives:
            _, table = rs._table(name, obj, 0)
            t0 = time.time()
            res = run_replay(table, budget=10, seeds=a.seeds, sampler="auto", transfer=a.transfer)
            o = res.summary["overall"][obj.rpartition(":")[0]]
            print(f"{a.variant:11s} {name:34s} {obj:18s} transfer={int(a.transfer)} p={o['p_within_10pct']:.3f} "
                  f"random={o['random_p_within_10pct']:.3f} regret={o['mean_regret']:.3f} {time.time() - t0:.0f}s",
                  flush=True)


if __name__ == "__main__":
    main()
