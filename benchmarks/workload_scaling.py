"""How the built-in OLTP service responds to the CPU it gets (the quickstart's trade-off).

Measures throughput and latency of the service unconstrained, with its
processes pinned to one CPU, and under CPU quotas of its own cgroup; every
change goes through the journal and is restored. Needs root for the quotas.

    python3 benchmarks/workload_scaling.py [--rounds 3] [--measure 4]

Prints one line per setting and round, then the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from actuators import Catalog, ChangeSession, Journal, KnobContext, WorkloadCgroup
from collectors.workloads.oltp import OltpWorkload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--measure", type=float, default=4.0, help="seconds measured per round")
    ap.add_argument("--warmup", type=float, default=1.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="novatune-bench-") as tmp:
        journal = Journal(Path(tmp) / "journal.jsonl")
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        with journal.run(run_id):
            cgroup = WorkloadCgroup.create(run_id, journal=journal, run_id=run_id) if os.geteuid() == 0 else None
            workload = OltpWorkload(Path(tmp) / "work", workers=2, clients=8)
            procs = str(cgroup.procs_file) if cgroup else None

            def join() -> None:
                if procs:
                    with open(procs, "w") as f:
                        f.write(str(os.getpid()))

            try:
                workload.start(preexec_fn=join)
                catalog = Catalog(context=KnobContext(cgroup=cgroup, pids=workload.pids))
                settings: list[tuple[str, dict[str, object]]] = [("2 CPUs, no quota", {}),
                                                                 ("pinned to 1 CPU", {"affinity.cpus": 1})]
                if cgroup is not None:
                    settings += [(f"quota {q} vCPU", {"sizing.vcpus": q}) for q in (1.0, 0.5, 0.25)]
                results: dict[str, list[tuple[float, float]]] = {}
                for r in range(args.rounds):
                    for label, knobs in settings:
                        with ChangeSession(journal, run_id=run_id, trial=r) as session:
                            session.apply_many({catalog.get(k): v for k, v in knobs.items()})
                            res = workload.measure(warmup_s=args.warmup, measure_s=args.measure)
                        results.setdefault(label, []).append((res.throughput_rps, res.latency_p95_ms))
                        print(f"round {r} {label:18s} {res.throughput_rps:8.0f} req/s  "
                              f"p95 {res.latency_p95_ms:7.1f} ms", flush=True)
            finally:
                workload.stop()
                if cgroup is not None:
                    cgroup.remove()
    print("\nmedians over rounds:")
    for label, rows in results.items():
        thr = statistics.median(t for t, _ in rows)
        p95 = statistics.median(p for _, p in rows)
        print(f"  {label:18s} {thr:8.0f} req/s  p95 {p95:7.1f} ms")


if __name__ == "__main__":
    main()
