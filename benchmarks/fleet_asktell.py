"""Ask + tell through PostgreSQL with N concurrent agents: how many hosts one PostgreSQL serves.

    python3 benchmarks/fleet_asktell.py [--agents 3,10,30] [--trials-per-agent 20] [--think-s 0.5] [--json]

Each agent is a process of its own with its own connection, as ``novatune agent`` on a host would be: it
opens the study through Optuna's ``RDBStorage`` (heartbeats on, as the fleet uses them), then in a loop
asks a trial (six knobs of the kinds a spec has: ints, a log-scaled int, floats, categoricals), "measures"
it for ``--think-s`` seconds (a sleep: a real trial measures for seconds, and an agent that asks again at
once is the worst case, ``--think-s 0``), and tells two objective values. The figure is ask + tell, the
time an agent waits on the shared storage per trial, from its first request to the tell's return:
p50, p95 and max over every trial of the run, with the trials per second the whole fleet got through.

The server is a throwaway cluster on 127.0.0.1 (:mod:`benchmarks.pgcluster`: durable, fsync on, Debian's
defaults otherwise), or ``--storage URL`` for one of yours. Each agent count is a new study in it. Needs root
and the ``postgres`` user for the throwaway cluster. The sampler is Optuna's TPE (multi-objective), whose ask
reads every finished trial: the cost grows with the study, so the trials per agent matter.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _agent(url: str, study_name: str, trials: int, think_s: float, seed: int, out: Any, ready: Any,
           go: Any, leave: Any, sampler: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=10, grace_period=30)
    chosen = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=10) if sampler == "tpe"
              else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=chosen)
    rng = random.Random(seed)
    study.trials  # noqa: B018 - connected, tables read once: the start-up is not what is measured
    ready.put(seed)
    go.wait(timeout=600)
    rows = []
    time.sleep(rng.uniform(0, think_s))  # agents are not in step: each starts somewhere in its first trial
    for _ in range(trials):
        t0 = time.perf_counter()
        trial = study.ask()
        x = [trial.suggest_int("vm.swappiness", 0, 100), trial.suggest_int("net.core.somaxconn", 128, 65535, log=True),
             trial.suggest_float("vm.dirty_ratio", 5.0, 60.0), trial.suggest_float("sizing.vcpus", 0.25, 2.0),
             trial.suggest_categorical("thp.enabled", ["always", "madvise", "never"]),
             trial.suggest_categorical("block.scheduler", ["none", "mq-deadline"])]
        t1 = time.perf_counter()
        if think_s > 0:
            time.sleep(think_s * rng.uniform(0.5, 1.5))
        perf = 1000 - (x[0] - 30) ** 2 / 10 + rng.gauss(0, 5)
        t2 = time.perf_counter()
        study.tell(trial, [perf, x[3] * 0.04])
        t3 = time.perf_counter()
        rows.append(((t1 - t0) * 1000, (t3 - t2) * 1000))
    out.put(rows)
    leave.wait(timeout=600)  # stay connected (the server's backends alive) until its CPU time is read


def _collect(queue: Any, procs: list[Any], n: int, limit_s: float = 1800) -> list[Any]:
    """``n`` items from ``queue``; raises RuntimeError as soon as an agent died without sending its own."""
    import queue as q

    got: list[Any] = []
    deadline = time.monotonic() + limit_s
    while len(got) < n:
        try:
            got.append(queue.get(timeout=1))
        except q.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"agents failed (exit codes {dead}) or the run took over {limit_s:g} s") from None
    return got


def run(url: str, agents: int, trials_per_agent: int, think_s: float, sampler: str = "tpe",
        server_cpu: Any = None) -> dict[str, Any]:
    """One study, ``agents`` processes; returns the latency percentiles (ms) and the fleet's trials/s."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"fleet-{agents}-{os.getpid()}-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    ctx = mp.get_context("spawn")
    out, ready, go, leave = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_agent, args=(url, name, trials_per_agent, think_s, i, out, ready, go, leave,
                                                   sampler))
             for i in range(agents)]
    for p in procs:
        p.start()
    _collect(ready, procs, len(procs))  # every agent imported Optuna and connected: then all start at once
    cpu0 = server_cpu() if server_cpu else math.nan
    started = time.perf_counter()
    go.set()
    rows: list[tuple[float, float]] = [r for got in _collect(out, procs, len(procs)) for r in got]  # agent by agent
    wall = time.perf_counter() - started
    cpu_s = (server_cpu() if server_cpu else math.nan) - cpu0
    leave.set()
    for p in procs:
        p.join(timeout=60)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    # each agent's first ask + tell (cold: SQLAlchemy compiles its statements, Optuna fills its trial cache)
    # is reported apart; the percentiles are over the steady state, every later trial
    first = sorted(a + t for a, t in rows[::trials_per_agent]) if trials_per_agent > 1 else []
    if trials_per_agent > 1:
        rows = [r for i, r in enumerate(rows) if i % trials_per_agent]
    both = sorted(a + t for a, t in rows)
    study = optuna.load_study(study_name=name, storage=url)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    def pct(q: float) -> float:
        return round(both[min(len(both) - 1, int(q * len(both)))], 1)

    n = len(rows) + len(first)
    return {"agents": agents, "trials": n, "complete_in_storage": complete, "failed_agents": failed,
            "ask_tell_ms": {"p50": pct(0.50), "p95": pct(0.95), "max": round(both[-1], 1),
                            "mean": round(statistics.fmean(both), 1)},
            "first_ask_tell_ms": {"p50": round(first[len(first) // 2], 1), "max": round(first[-1], 1)}
            if first else None,
            "ask_ms_p95": round(sorted(a for a, _ in rows)[int(0.95 * (len(rows) - 1))], 1),
            "tell_ms_p95": round(sorted(t for _, t in rows)[int(0.95 * (len(rows) - 1))], 1),
            "trials_per_s": round(n / wall, 1), "wall_s": round(wall, 1),
            "server_cpu_ms_per_trial": round(cpu_s * 1000 / n, 2) if math.isfinite(cpu_s) else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", default="3,10,30", help="agent counts, comma-separated (default 3,10,30)")
    ap.add_argument("--trials-per-agent", type=int, default=20)
    ap.add_argument("--think-s", type=float, default=0.5, help="mean seconds a trial 'measures' (0: worst case)")
    ap.add_argument("--sampler", choices=["tpe", "random"], default="tpe",
                    help="tpe: what studies use (its ask computes on the agent); random: the storage's cost alone")
    ap.add_argument("--storage", help="a PostgreSQL URL (default: a throwaway cluster on 127.0.0.1)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.agents.split(",") if x.strip()]
    if not counts or min(counts) < 1 or a.trials_per_agent < 1 or a.think_s < 0:
        ap.error("--agents takes counts >= 1, --trials-per-agent >= 1, --think-s >= 0")
    from benchmarks.pgcluster import PgCluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's SIGTERM still stops the cluster

    cluster = None if a.storage else PgCluster(max_connections=max(100, 2 * max(counts) + 20)).start()
    url = a.storage or cluster.url  # type: ignore[union-attr]
    try:
        results = [run(url, n, a.trials_per_agent, a.think_s, a.sampler, cluster.cpu_seconds if cluster else None)
                   for n in counts]
    finally:
        if cluster is not None:
            cluster.stop()
    doc = {"storage": "throwaway PostgreSQL on 127.0.0.1 (fsync on)" if cluster else "given",
           "sampler": "TPE (multi-objective, 10 startup trials)" if a.sampler == "tpe" else "random",
           "think_s": a.think_s,
           "trials_per_agent": a.trials_per_agent, "cpus": os.cpu_count(), "runs": results}
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"ask + tell through PostgreSQL, {a.sampler}, think {a.think_s} s, {a.trials_per_agent} trials per agent, "
          f"{os.cpu_count()} CPUs")
    print(f"{'agents':>6} {'trials':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'ask p95':>8} {'tell p95':>8} "
          f"{'trials/s':>8} {'server CPU ms/trial':>19} {'first p50 ms':>12}")
    for r in results:
        q = r["ask_tell_ms"]
        print(f"{r['agents']:>6} {r['trials']:>6} {q['p50']:>8} {q['p95']:>8} {q['max']:>8} {r['ask_ms_p95']:>8} "
              f"{r['tell_ms_p95']:>8} {r['trials_per_s']:>8} {r['server_cpu_ms_per_trial']!s:>19} "
              f"{(r['first_ask_tell_ms'] or {}).get('p50', '-')!s:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
