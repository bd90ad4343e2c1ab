"""The gain table: for each scenario spec, a study, then its choice against the defaults and the stock TuneD
profiles, measured in one interleaved run (``novatune bench gain``).

    python -m benchmarks.gain                                  # every scenario spec, 5 rounds each
    python -m benchmarks.gain --specs scenario-block-loop --rounds 7 --home /tmp/gain-home

Each scenario runs ``novatune study run SPEC`` (a fresh study, named ``<spec>-gain-<time>``) and then
``novatune bench gain SPEC --study THAT --json`` in the data directory ``--home`` (default: a new temporary
one, so nothing of an earlier run counts). ``--rounds`` screening rounds, then ``--confirm`` confirmation
rounds (default: as many). Prints one row per scenario: the primary metric, the defaults'
median, the best stock profile and its gain, novatune's gain over the defaults with its interval and p-value,
novatune against the best profile, and the verdict; writes each report to
``benchmarks/data/gain/<spec>.json``. TuneD profiles are read from ``$TUNED_ROOT/usr/lib/tuned`` when
``TUNED_ROOT`` is set (``.ci/run`` unpacks Debian's tuned package there), else from TuneD's own directories.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "experiments" / "specs"
OUT = REPO / "benchmarks" / "data" / "gain"


def _novatune(home: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "200"}
    tuned = os.environ.get("TUNED_ROOT")
    if tuned:
        env["NOVATUNE_TUNED_PROFILE_DIRS"] = json.dumps([str(Path(tuned) / "usr/lib/tuned")])
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _row(name: str, doc: dict[str, Any]) -> str:
    arms = doc["arms"]
    nt = arms.get("novatune", {}).get("vs_defaults") or {}
    best = doc.get("best_profile")
    best_gain = (doc.get("best_profile_vs_defaults") or {}).get("gain_pct")  # on the confirmation rounds
    vs_best = doc.get("novatune_vs_best_profile") or {}
    cells = [name, doc["metric"], f"{arms['defaults']['median']:.4g}" if arms["defaults"]["median"] else "-",
             f"{best} {best_gain:+.1f} %" if best and best_gain is not None else "none applies",
             ("keeps the defaults; A/A " if doc.get("novatune_keeps_defaults") else "") +
             f"{nt['gain_pct']:+.1f} % [{nt['low_pct']:+.1f}, {nt['high_pct']:+.1f}] p={nt['p_value']:.3g}" if nt
             else "-",
             f"{vs_best['gain_pct']:+.1f} % [{vs_best['low_pct']:+.1f}, {vs_best['high_pct']:+.1f}]" if vs_best
             else "-"]
    return "| " + " | ".join(cells) + " |"


def run_one(spec: Path, home: Path, rounds: int, trials: int | None, confirm: int | None = None) -> dict[str, Any]:
    """The study, then the gain run, of one scenario spec; the gain report."""
    study = f"{spec.stem}-gain-{time.strftime('%H%M%S')}"
    args = ["study", "run", str(spec), "--name", study] + (["--trials", str(trials)] if trials else [])
    proc = _novatune(home, *args, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{spec.name}: the study failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    proc = _novatune(home, "bench", "gain", str(spec), "--study", study, "--rounds", str(rounds), "--json",
                     *(["--confirm", str(confirm)] if confirm is not None else []), timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{spec.name}: the gain run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", help="comma-separated spec names in experiments/specs (default: scenario-*)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--confirm", type=int, default=None, help="confirmation rounds (default: --rounds)")
    ap.add_argument("--trials", type=int, default=None, help="override each spec's budget.trials")
    ap.add_argument("--home", type=Path, default=None, help="data directory (default: a new temporary one)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.specs.split(",")] if args.specs else sorted(
        p.stem for p in SPECS.glob("scenario-*.yaml"))
    home = args.home or Path(tempfile.mkdtemp(prefix="novatune-gain-"))
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"data directory {home}; rounds {args.rounds}", file=sys.stderr)
    rows = []
    for name in names:
        spec = SPECS / f"{name}.yaml"
        if not spec.is_file():
            print(f"no spec {spec}", file=sys.stderr)
            return 2
        doc = run_one(spec, home, args.rounds, args.trials, args.confirm)
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        rows.append(_row(name, doc))
        print(f"{name}: {doc['verdict']}", file=sys.stderr)
    print("| scenario | metric | defaults (median) | best stock profile vs defaults (confirmation rounds) | "
          "novatune vs defaults [95 % interval] | novatune vs best profile (confirmation rounds) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
