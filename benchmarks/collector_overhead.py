"""CPU cost of collectors.metrics: full collection at --hz for --targets pid targets.

Usage::

    python benchmarks/collector_overhead.py [--seconds 30] [--hz 1] [--targets 10]

Spawns ``--targets`` ``sleep`` processes, samples every metric plus each of them
at ``--hz`` for ``--seconds`` seconds, and reports this process's CPU time
(``time.process_time``: user + system of the sampler) over the wall time as
"% of one core". The budget is 0.5 %. The sleep processes are killed at the end.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.metrics import MetricsSampler

BUDGET_PCT = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--hz", type=float, default=1.0)
    ap.add_argument("--targets", type=int, default=10)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    procs = [subprocess.Popen(["sleep", str(args.seconds + 60)]) for _ in range(args.targets)]
    try:
        sampler = MetricsSampler(targets=[p.pid for p in procs])
        period = 1.0 / args.hz
        n_metrics = samples = 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        deadline = wall0 + args.seconds
        next_t = wall0
        while True:
            values = sampler.sample()
            samples += 1
            n_metrics = max(n_metrics, len(values))
            next_t += period
            if next_t >= deadline:
                break
            time.sleep(max(0.0, next_t - time.monotonic()))
        time.sleep(max(0.0, deadline - time.monotonic()))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    pct = 100.0 * cpu / wall
    print(f"samples={samples} metrics/sample={n_metrics} targets={args.targets} hz={args.hz:g}")
    print(f"sampler CPU {cpu * 1000:.1f} ms over {wall:.1f} s wall = {pct:.3f} % of one core "
          f"({cpu / samples * 1000:.2f} ms per sample); budget {BUDGET_PCT} %: {'OK' if pct <= BUDGET_PCT else 'OVER'}")
    return 0 if pct <= BUDGET_PCT else 1


if __name__ == "__main__":
    sys.exit(main())
