"""Effect sizes of the scheduling scenario: the OLTP service's p99 next to a stress-ng neighbour.

    python3 benchmarks/noisy_neighbour.py [--repeats 3] [--warmup 1] [--measure 5] [--workers 2]

The study's own machinery, without Optuna: a :class:`~experiments.study.target_neighbour.Neighbour`
(stress-ng ``cpu`` x ``--workers``, in its journaled cgroup), the built-in OLTP service (2 workers,
4 clients) and the knob catalog bound to the neighbour, each setting applied through a journaled
:class:`~actuators.ChangeSession` and restored after its window. The configurations are interleaved
(round-robin, ``--repeats`` rounds): no neighbour, the neighbour at the defaults, ``sched.policy=idle``,
``sched.nice=19``, ``affinity.cpus=1``, ``sizing.cpu_weight=1``. Prints one row per configuration:
the median (min-max) of the service's p99 and throughput and of the neighbour's bogo-ops/s.
Everything made lives in a temporary directory and is removed; the journal there is recovered at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actuators import Catalog, ChangeSession, Journal, KnobContext, recover
from collectors.workloads.registry import build_workload
from experiments.spec import WorkloadSpec
from experiments.study.target_neighbour import Neighbour, NeighbourSpec

#: name -> knob settings on the neighbour (None: no neighbour runs in the window)
CONFIGS: dict[str, dict[str, Any] | None] = {
    "no neighbour": None,
    "defaults": {},
    "sched.policy=idle": {"sched.policy": "idle"},
    "sched.nice=19": {"sched.nice": 19},
    "affinity.cpus=1": {"affinity.cpus": 1},
    "sizing.cpu_weight=1": {"sizing.cpu_weight": 1},
}


def _window(service: Any, nb: Neighbour, catalog: Catalog, journal: Journal, knobs: dict[str, Any] | None,
            args: argparse.Namespace, trial: int) -> dict[str, float]:
    with ChangeSession(journal, run_id="nb-effects", trial=trial) as session:
        for name, value in (knobs or {}).items():
            session.apply(catalog.get(name), value)
        window: AbstractContextManager[dict[str, float]] = nullcontext({})
        if knobs is not None:
            window = nb.window(warmup_s=args.warmup, measure_s=args.measure)
        with window as nb_metrics:
            res = service.measure(warmup_s=args.warmup, measure_s=args.measure)
    return {"p99": res.metrics["latency_p99_ms"], "rps": res.metrics["throughput_rps"],
            "bogo": nb_metrics.get("neighbour_bogo_ops_per_s", float("nan"))}


def _fmt(values: list[float]) -> str:
    if all(v != v for v in values):  # all NaN
        return "-"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, choices=range(1, 11))
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--measure", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2, choices=range(1, 17))
    args = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="novatune-nb-effects-") as tmp:
        journal = Journal(Path(tmp) / "journal.jsonl")
        with journal.run("nb-effects"):
            nb = Neighbour.start(NeighbourSpec(stressor="cpu", workers=args.workers), journal=journal,
                                 run_id="nb-effects", workdir=Path(tmp) / "neighbour")
            service = build_workload(WorkloadSpec(workers=2, clients=4), Path(tmp) / "service")
            try:
                service.start()
                catalog = Catalog(context=KnobContext(cgroup=nb.cgroup, pids=nb.pids))
                trial = 0
                for _ in range(args.repeats):
                    for name, knobs in CONFIGS.items():
                        results[name].append(_window(service, nb, catalog, journal, knobs, args, trial))
                        trial += 1
            finally:
                service.stop()
                nb.close()
        recover(journal)
    print(f"{'configuration':22} {'service p99 ms':>22} {'service req/s':>22} {'neighbour bogo-ops/s':>24}")
    for name, rows in results.items():
        print(f"{name:22} {_fmt([r['p99'] for r in rows]):>22} {_fmt([r['rps'] for r in rows]):>22} "
              f"{_fmt([r['bogo'] for r in rows]):>24}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
