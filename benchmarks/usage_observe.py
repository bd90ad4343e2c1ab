"""CPU cost of the usage observer: ``--targets`` cgroups sampled every ``--interval`` s into a usage store.

Usage::

    python benchmarks/usage_observe.py [--seconds 20] [--interval 1] [--targets 10]

Needs root and cgroup v1 (``cpu``, ``cpuacct``, ``memory`` hierarchies). Creates ``--targets`` cgroups
(``nt-bench-usage-<uuid>-N``, each holding one ``sleep``), observes them with
:class:`collectors.usage.observe.Observer` into a store in a temporary directory, and reports this process's CPU
time (user + system) over the wall time as "% of one core", and per target sample (read + stored). The budget is
1 % of one core at 10 targets every second (the default ``observe_interval_s`` is 15 s). Everything it created is
removed at the end.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.passive.allowed import PassivePolicy
from collectors.usage.history import UsageStore
from collectors.usage.observe import Observer
from collectors.usage.target import resolve_target

BUDGET_PCT = 1.0
CONTROLLERS = ("cpu", "cpuacct", "memory")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--targets", type=int, default=10)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tag = f"nt-bench-usage-{uuid.uuid4().hex[:8]}"
    names = [f"{tag}-{i}" for i in range(args.targets)]
    procs: list[subprocess.Popen[bytes]] = []
    made: list[Path] = []
    try:
        for name in names:
            for c in CONTROLLERS:
                d = Path("/sys/fs/cgroup") / c / name
                d.mkdir()
                made.append(d)
            p = subprocess.Popen(["sleep", str(args.seconds + 60)])
            procs.append(p)
            for c in CONTROLLERS:
                (Path("/sys/fs/cgroup") / c / name / "cgroup.procs").write_text(str(p.pid))
        policy = PassivePolicy.of([f"cgroup:/{n}" for n in names])
        targets = [resolve_target(f"cgroup:/{n}", policy=policy) for n in names]
        with tempfile.TemporaryDirectory() as tmp:
            store = UsageStore(Path(tmp) / "usage.db")
            obs = Observer(targets, store, interval_s=args.interval, stop=threading.Event())
            cpu0, wall0 = time.process_time(), time.monotonic()
            summary = obs.run(duration_s=args.seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            size = store.file_bytes()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for d in reversed(made):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
    pct = 100.0 * cpu / wall
    per = 1000.0 * cpu / max(1, summary.samples)
    print(f"targets={args.targets} interval={args.interval:g}s samples={summary.samples} store={size} bytes")
    print(f"observer CPU {cpu * 1000:.1f} ms over {wall:.1f} s wall = {pct:.3f} % of one core "
          f"({per:.2f} ms per target sample, read + stored); budget {BUDGET_PCT} %")
    return 0 if pct <= BUDGET_PCT else 1


if __name__ == "__main__":
    sys.exit(main())
