"""The CPU-pinning advisor on a real noisy neighbour: its advice, applied, and the service's p99 before/after.

Spawns the built-in OLTP service (1 worker, 1 closed-loop client: latency-bound) and a CPU-bound batch
job next to it (``--batch`` busy-loop processes, each bounded in time), reads the pinning facts of these
processes only (``collectors.facts.pinning.read(pids=..., sample_s=...)`` while the service is under
load), prints the advice, then measures the service in interleaved rounds:

* ``A``: no pinning;
* ``B``: the advice's knob changes (``affinity.cpus`` bound to the batch pids) applied through a
  journaled ``ChangeSession`` and restored after the window;
* ``C``: B plus the advice's ``manual`` action for the service (its dedicated CPUs, which the
  ``affinity.cpus`` count cannot express), set with ``sched_setaffinity`` and restored by this script.

Prints per-round p99, then per arm the median p99 and, against A, the relative change with its 95 %
bootstrap interval and Mann-Whitney p (:func:`optimizer.decision.decide`). Only processes this script
spawned are touched; it changes no host knob.

    python benchmarks/advisor_pinning.py [--rounds 6] [--measure 3] [--batch 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from actuators import Catalog, ChangeSession, Journal, KnobContext
from actuators.affinity import threads_of
from collectors.facts import pinning as pin_facts
from collectors.workloads.oltp import OltpWorkload
from optimizer.advice import Advice
from optimizer.advisors import pinning
from optimizer.decision import Guard, decide

_LOOP = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


def _show(advices: list[Advice]) -> None:
    for a in advices:
        print(f"- {a.title}\n    why: {a.why}\n    changes: {a.values or '-'} target={a.target}"
              f"\n    manual: {a.manual or '-'}\n    expected {a.expected_impact:.0%} on {a.metric}, "
              f"confidence {a.confidence}, risk {a.risk}")
        for e in a.evidence:
            print(f"    evidence: {e.what} = {e.value} {e.unit} ({e.source})")


def _set_affinity(pids: list[int], cpus: set[int]) -> list[tuple[int, set[int]]]:
    old = []
    for pid in pids:
        for tid in threads_of(pid):
            try:
                old.append((tid, os.sched_getaffinity(tid)))
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                continue
    return old


def _restore_affinity(old: list[tuple[int, set[int]]]) -> None:
    for tid, cpus in old:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            continue


def _read_facts(work: OltpWorkload, pids: list[int], sample_s: float) -> pinning.PinningFacts:
    """The facts of ``pids`` sampled while the service is under load."""
    box: dict[str, object] = {}
    load = threading.Thread(target=lambda: box.setdefault("r", work.measure(warmup_s=0, measure_s=sample_s + 1)))
    load.start()
    time.sleep(0.5)
    facts = pin_facts.read(pids=pids, sample_s=sample_s)
    load.join()
    return facts


def _measure_rounds(args: argparse.Namespace, work: OltpWorkload, journal: Journal, run_id: str,
                    advices: list[Advice]) -> dict[str, list[float]]:
    knob_advice = [a for a in advices if a.changes and a.target and a.target.startswith("pid:")]
    manual = {int(a.target[4:]): a for a in advices if not a.changes and a.target and "taskset" in (a.manual or "")}
    dedicated = {c for a in manual.values() for c in _cpus_of(a.manual or "")}
    arms = ["A", "B"] + (["C"] if dedicated else [])
    p99: dict[str, list[float]] = {arm: [] for arm in arms}
    for r in range(args.rounds):
        for arm in arms[r % len(arms):] + arms[:r % len(arms)]:  # rotate the order: no arm always first
            with ChangeSession(journal, run_id=run_id, trial=r) as session:
                old: list[tuple[int, set[int]]] = []
                if arm in ("B", "C"):
                    for a in knob_advice:
                        cat = Catalog(context=KnobContext(pids=lambda pid=int(a.target[4:]): [pid]))  # type: ignore[union-attr]
                        session.apply_many({cat.get(c.knob): c.value for c in a.changes})
                if arm == "C":
                    old = _set_affinity(sorted(manual), dedicated)
                try:
                    res = work.measure(warmup_s=args.warmup, measure_s=args.measure)
                finally:
                    _restore_affinity(old)
            p99[arm].append(res.latency_p99_ms)
            print(f"round {r} {arm}: p99 {res.latency_p99_ms:7.2f} ms  p50 {res.latency_p50_ms:6.2f} ms  "
                  f"{res.throughput_rps:6.0f} req/s", flush=True)
    return p99


def _cpus_of(manual: str) -> set[int]:
    """The CPU list of ``taskset -a -cp LIST PID``."""
    words = manual.split()
    lst = words[words.index("-cp") + 1] if "-cp" in words else ""
    out: set[int] = set()
    for part in filter(None, lst.split(",")):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def _report(p99: dict[str, list[float]]) -> None:
    print("\narm  median p99 (ms)  change vs A (95 % interval)  Mann-Whitney p")
    for arm, values in p99.items():
        line = f"{arm:4s} {statistics.median(values):12.2f}"
        if arm != "A":
            d = decide({"p99": p99["A"]}, {"p99": values}, [Guard("p99", "minimize")])
            v = d.metrics[0] if d.metrics else None
            if v is not None:  # change: relative gain in the good direction (lower p99 = positive)
                line += f"     {v.change:+7.1%} ({v.change_ci[0]:+.1%} .. {v.change_ci[1]:+.1%})      {v.p_value:.3g}"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--measure", type=float, default=3.0, help="seconds measured per window")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=2, help="busy-loop processes of the batch job")
    ap.add_argument("--sample", type=float, default=3.0, help="seconds of CPU-use sampling for the facts")
    args = ap.parse_args()
    print(f"host load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    budget = args.sample + 30 + args.rounds * 3 * (args.measure + args.warmup + 3)
    with tempfile.TemporaryDirectory(prefix="novatune-pin-") as tmp:
        journal = Journal(Path(tmp) / "journal.jsonl")
        run_id = f"bench-pin-{uuid.uuid4().hex[:8]}"
        work = OltpWorkload(Path(tmp) / "work", workers=1, clients=1)
        batch: list[subprocess.Popen[bytes]] = []
        with journal.run(run_id):
            try:
                server = work.start()
                batch = [subprocess.Popen([sys.executable, "-c", _LOOP.format(s=budget)]) for _ in range(args.batch)]
                time.sleep(1.0)
                facts = _read_facts(work, server + [b.pid for b in batch], args.sample)
                print(f"facts: {len(facts.cpus)} CPUs, processes "
                      f"{[(p.pid, p.name, p.cpu_share, pinning.role(p)) for p in facts.processes]}")
                pl = pinning.plan(facts)
                print(f"plan: {pl.kind}, housekeeping {pl.housekeeping}, dedicated {dict(pl.dedicated)}, "
                      f"shared {pl.shared} (overcommit {pl.overcommit}x) {list(pl.notes)}")
                advices = pinning.advise(facts)
                print("advice:")
                _show(advices)
                if not advices:
                    print("no advice: nothing to measure")
                    return
                _report(_measure_rounds(args, work, journal, run_id, advices))
                print(f"host load average at the end: {os.getloadavg()[0]:.2f} (others' work shares these CPUs)")
            finally:
                for b in batch:
                    b.kill()
                    b.wait()
                work.stop()


if __name__ == "__main__":
    main()
