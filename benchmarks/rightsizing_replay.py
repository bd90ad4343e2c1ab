"""Replay benchmark of the right-sizing recommender against fixed rules, on several trace sources, side by side.

    python benchmarks/rightsizing_replay.py [--bitbrains DIR] [--vms 20] [--profile balanced]
                                            [--timing-vms 250] [--no-timing]

Each source is replayed as ``novatune rightsize replay`` does (train on the first part of each VM's samples,
score on the rest). Printed per source and resource: the recommender's under-provisioning (% of test samples
above the size) and unused capacity (% of provisioned capacity-time), the same two for each fixed rule
(p90+15 % as VPA, p95+20 %, p99+20 %, max+10 %), whether a rule dominates the recommender (both figures
strictly lower; "weakly": a rule with as little under-provisioning -- a tie, mostly both 0 % -- and less
unused capacity), and whether the issue's targets hold (memory <= 1 %, CPU <= 5 %, never dominated).

**Which sources chose the settings.** The recommender's settings (``optimizer.rightsizing.recommend``:
``PARAMS``, ``HALF_LIFE_S``, the drift floor, the saturation step) were chosen on the *tuning* sources: the
Bitbrains development subset (19 VMs; the data set's README keeps the rest of GWA-T-12 back for evaluation)
and synthetic ``steady``, ``bursty`` and ``daily`` fleets with seed 1. The *held-out* sources are synthetic
fleets of every shape (``optimizer.rightsizing.synthetic.SHAPES``) with seed 13, not run while tuning.
Earlier held-out seeds were looked at during development and are spent: with seeds 2 and 3 trending memory
missed the 1 % target (3-5 %), after which memory got its drift floor, a less strict trend test (t >= 2)
and, in ``balanced``, a peak margin of 20 % instead of 10 %; with seed 4 (after the fleets' seeds began to
include the shape) p99+20 % dominated bursty CPU by a hair, and seeds 4-11 of bursty showed it in 3 of 8
draws, after which the level became the larger of the decayed and the undecayed percentile (checked on the
tuning sources: Bitbrains CPU 1.58 -> 1.31 % under-provisioned, unused 60.5 -> 60.6 %). Seed 12 then showed
p99+20 % still dominating bursty CPU, so seed 12 is spent too: balanced's CPU percentile went from p98 + 15 %
to p99 + 10 % (chosen on the tuning sources and the spent bursty seeds 4-11, where p99+20 % no longer
dominates any of them; Bitbrains CPU 1.31 -> 1.23 % under-provisioned, unused 60.6 -> 61.5 %). Seed 13 was
first run for the figures this prints.
Role ``split``: the Bitbrains VMs again with train fractions 0.3 and 0.7 (settings were chosen at 0.5
only); every other source is replayed with train fraction 0.5.

Then the speed target: a CSV of 250 VMs x 10 days at 5-minute resolution (mixed shapes) is written and
replayed in a fresh Python process through the command's own function (``replay_cmd --json``, as
``novatune rightsize replay`` runs it); the wall seconds, imports included, are printed. Target <= 30 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.usage.traces import read_bitbrains  # noqa: E402
from optimizer.rightsizing import synthetic  # noqa: E402
from optimizer.rightsizing.model import UsageSeries  # noqa: E402
from optimizer.rightsizing.replay import RULES, replay  # noqa: E402

_SHARED = "shared/datasets/utilization/bitbrains_rnd"
TUNING_SHAPES = ("steady", "bursty", "daily")
TUNING_SEED, HELD_OUT_SEED = 1, 13
TARGETS = {"cpu": 5.0, "memory": 1.0}


def default_bitbrains() -> Path:
    """The checkout's ``../shared`` copy of the data set (the project's layout), else ``/work/shared``."""
    near = REPO.parent / _SHARED
    return near if near.is_dir() else Path("/work") / _SHARED


Source = tuple[str, str, dict[str, UsageSeries], float]


def sources(bitbrains: Path, vms: int) -> list[Source]:
    """``(name, role, series, train_frac)``: the tuning sources first, then the held-out ones."""
    bb = read_bitbrains(bitbrains)
    out: list[Source] = [("bitbrains-rnd", "tuning", bb, 0.5)]
    out += [(f"{s} (seed {TUNING_SEED})", "tuning", synthetic.fleet(s, vms, seed=TUNING_SEED), 0.5)
            for s in TUNING_SHAPES]
    out += [(f"bitbrains f={f:g}", "split", bb, f) for f in (0.3, 0.7)]
    out += [(f"{s} (seed {HELD_OUT_SEED})", "held-out", synthetic.fleet(s, vms, seed=HELD_OUT_SEED), 0.5)
            for s in synthetic.SHAPES]
    return out


def table(rows: list[tuple[str, str, dict]], profile: str) -> bool:
    """Print the side-by-side table; True when every target holds on every source."""
    rules = list(RULES)
    head = f"{'source':<20} {'role':<8} {'res':<6} {'recommender':>15}  " + "  ".join(f"{r:>13}" for r in rules)
    print(f"profile {profile}; each cell: under-provisioned % / unused %")
    print(head + "  dominated  weakly (ties)        target")
    print("-" * len(head) + "-" * 40)
    ok = True
    for name, role, s in rows:
        for res in ("cpu", "memory"):
            r = s[res]
            me = r["recommender"]
            cells = "  ".join(f"{v['under_provisioned_pct']:5.2f} /{v['unused_pct']:5.1f}"
                              for v in (r["rules"][k] for k in rules))
            met = me["under_provisioned_pct"] <= TARGETS[res] and not r["dominated_by"]
            ok &= met
            dom = ",".join(r["dominated_by"]) or "no"
            weak = ",".join(r["weakly_dominated_by"]) or "no"
            print(f"{name:<20} {role:<8} {res:<6} {me['under_provisioned_pct']:6.2f} /{me['unused_pct']:6.1f}  "
                  f"{cells}  {dom:>9}  {weak:<20} {'met' if met else 'MISSED'}")
    return ok


def write_trace(path: Path, n: int, *, seed: int = 7) -> int:
    """A CSV of ``n`` VMs x 10 days at 5 minutes (shapes in turn, 3-day ``short`` ones included); its rows."""
    frames = []
    for i in range(n):
        shape = synthetic.SHAPES[i % len(synthetic.SHAPES)]
        s = synthetic.generate(shape, seed=seed * 100_000 + i, days=10, interval_s=300, target=f"vm-{i}")
        frames.append(pd.DataFrame({"vm_id": s.target, "timestamp": s.t.astype(np.int64),
                                    "cpu_used_cores": s.cpu_cores.round(4), "mem_used_gib": s.mem_gib.round(4),
                                    "cpu_cores_capacity": s.cpu_capacity, "mem_capacity_gib": s.mem_capacity}))
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(path, index=False)
    return len(df)


_RUN = """
import sys, typer
from typer.testing import CliRunner
from experiments.cli.rightsize_replay import replay_cmd
app = typer.Typer()
app.command("replay")(replay_cmd)
app.command("noop")(lambda: None)
r = CliRunner().invoke(app, ["replay", sys.argv[1], "--json"])
sys.exit(r.exit_code if r.exception is None or isinstance(r.exception, SystemExit) else 1)
"""


def time_replay(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rs-replay-") as d:
        path = Path(d) / "trace.csv"
        rows = write_trace(path, n)
        size = path.stat().st_size
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", _RUN, str(path)], cwd=REPO, capture_output=True, text=True,
                           check=False, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                             "NOVATUNE_HOME": d})
        secs = time.perf_counter() - t0
    status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode}): {r.stderr[-500:]}"
    print(f"\nreplay of {n} VMs x 10 days at 5 min ({rows} rows, {size / 2**20:.1f} MiB CSV) through replay_cmd "
          f"--json in a fresh process: {secs:.1f} s (target <= 30 s: {'met' if secs <= 30 else 'MISSED'}); {status}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bitbrains", type=Path, default=default_bitbrains())
    ap.add_argument("--vms", type=int, default=20, help="VMs per synthetic source")
    ap.add_argument("--profile", default="balanced")
    ap.add_argument("--timing-vms", type=int, default=250)
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    for name, role, series, frac in sources(args.bitbrains, args.vms):
        rows.append((name, role, replay(series, train_frac=frac, profile=args.profile).summary()))
    ok = table(rows, args.profile)
    print(f"\nall targets met on every source: {'yes' if ok else 'NO'} ({time.perf_counter() - t0:.1f} s)")
    if not args.no_timing:
        time_replay(args.timing_vms)


if __name__ == "__main__":
    main()
