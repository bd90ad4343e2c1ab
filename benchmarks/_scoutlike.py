"""A self-made Scout-like table: instance family x size x node count, runtime from an Amdahl-like model
with a memory cliff, cost = price x nodes x time (the shape of the public Hadoop/Spark tables; not their data).

Used by ``benchmarks/replay_features.py`` and the features tests. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["PRICES", "scoutlike_frame"]

#: on-demand $/h of the older families (us-east-1 list prices of their time; not in the packaged catalog,
#: so the replay's features must estimate them from the names)
PRICES = {"c4": 0.0995, "m4": 0.10, "r4": 0.133}
_SPEED = {"c": 1.15, "m": 1.0, "r": 0.95}  # per-vCPU speed by class
_VCPU = {"large": 2, "xlarge": 4, "2xlarge": 8}
_GIB_PER_VCPU = {"c": 1.875, "m": 4.0, "r": 7.625}
NODES = (4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48)


def _configs(max_vcpu: int) -> list[tuple[str, str, int]]:
    return [(f, s, n) for f in PRICES for s in _VCPU for n in NODES if _VCPU[s] * n <= max_vcpu]


def scoutlike_frame(*, workloads: int = 8, seed: int = 0, max_vcpu: int = 128, noise: float = 0.03,
                    combined: bool = False) -> pd.DataFrame:
    """Rows ``workload, family, size, nodes`` (or ``instance_type, nodes`` when ``combined``), ``time_s``,
    ``cost_usd``, ``status`` (``ok`` or ``OOM``): one row per (workload, configuration)."""
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(workloads):
        work = float(np.exp(rng.uniform(np.log(2e4), np.log(3e5))))  # vCPU-seconds
        serial = float(rng.uniform(0.01, 0.12))
        need = float(np.exp(rng.uniform(np.log(20), np.log(400))))  # GiB the job wants in memory
        overhead = float(rng.uniform(1.0, 12.0))  # seconds per node (coordination)
        for fam, size, n in _configs(max_vcpu):
            vcpu, cls = _VCPU[size] * n, fam[0]
            gib = _GIB_PER_VCPU[cls] * vcpu
            t = work / _SPEED[cls] * (serial / 4.0 + (1 - serial) / vcpu) + overhead * n
            status = "ok"
            if gib < need:  # spills: the cliff
                t *= 1.0 + 2.5 * (need / gib - 1.0)
                if gib < need / 3.0:
                    status = "OOM"
            t *= float(np.exp(rng.normal(0.0, noise)))
            cost = PRICES[fam] * _VCPU[size] / 2 * n * t / 3600.0
            knobs = {"instance_type": f"{fam}.{size}"} if combined else {"family": fam, "size": size}
            rows.append({"workload": f"w{w}", **knobs, "nodes": str(n), "time_s": t, "cost_usd": cost,
                         "status": status})
    return pd.DataFrame(rows)
