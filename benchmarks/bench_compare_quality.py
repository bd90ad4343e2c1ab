"""``bench compare`` quality, measured: reruns of one configuration must not be flagged, injected slowdowns must.

    python3 benchmarks/bench_compare_quality.py [--reruns 10] [--suite quick] [--only cpu,memory,...]
                                                [--quota 0.9] [--hog-load 10] [--home DIR] [--json PATH]
    python3 benchmarks/bench_compare_quality.py --analyse DIR [--min-effect 0.05] [--noise-factor 2]

Runs as root (the suite makes a cgroup and network namespaces). One base run of the suite, then ``--reruns``
runs of the same configuration, each compared with the base by ``novatune bench compare``'s own code
(:func:`experiments.bench.compare.compare_docs`): a run with any benchmark called a regression is a *false
regression* (target: 0 in 10). Then two known slowdowns, each one run compared with the base (target: each
flagged):

* ``quota``: the benchmark's own cgroup capped (``--cpu-quota``) at ``--quota`` x the CPUs the base run's
  ``cpu`` benchmark used (its ``cpu_used``: on a shared machine less than every CPU, so a cap of 0.9 x the
  CPU count would not bind); 0.9: about 10 % less CPU for the ``cpu`` benchmark;
* ``hog``: a competing load beside it: ``stress-ng --cpu <ncpu> --cpu-load <--hog-load>`` pinned to the
  same CPUs (``--taskset``), outside the cgroup, bounded by ``--timeout``.

A slowdown counts as found when the run is flagged (``bench compare`` would exit 3) and ``cpu`` is among the
regressions (what both slowdowns hit by construction); the table shows each benchmark's change. The runs are
kept in ``--home`` (a fresh temporary data directory by default), so ``--analyse DIR`` recomputes the figures
(e.g. with another ``--min-effect``) without measuring again. Prints the load (``uptime``) before and after:
figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _run(paths: Any, suite: str, only: str | None, quota: float | None) -> dict[str, Any]:
    from experiments.bench.run import run_suite

    doc = run_suite(paths, suite_name=suite, only=only, cpu_quota=quota, track=False)
    print(f"  stored {doc['id']} ({doc['elapsed_s']} s)", file=sys.stderr, flush=True)
    return doc


def _with_hog(paths: Any, suite: str, only: str | None, load: int) -> dict[str, Any]:
    ncpu = os.cpu_count() or 1
    argv = ["stress-ng", "--cpu", str(ncpu), "--cpu-load", str(load), "--taskset", f"0-{ncpu - 1}",
            "--timeout", "600s", "--quiet"]
    hog = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, process_group=0)
    try:
        return _run(paths, suite, only, None)
    finally:
        os.killpg(hog.pid, 15)
        try:
            hog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(hog.pid, 9)
            hog.wait()


def measure(args: argparse.Namespace) -> Path:
    """Measure the base, the reruns and the slowdowns into ``args.home``; returns the directory."""
    from experiments.settings import Paths

    home = Path(args.home or tempfile.mkdtemp(prefix="novatune-bench-quality-"))
    paths = Paths(home).ensure()
    plan: list[tuple[str, str | None, int | None]] = [("base", None, None)]
    plan += [(f"rerun-{i + 1}", None, None) for i in range(args.reruns)]
    plan += [("quota", "quota", None), ("hog", None, args.hog_load)]
    labels: dict[str, str] = {}
    base: dict[str, Any] = {}
    for label, quota, hog in plan:
        print(f"{label}: {_uptime()}", file=sys.stderr, flush=True)
        cap = None
        if quota:  # a share of what the base's cpu benchmark used: on a shared machine that is less than every CPU
            used = (base.get("cpu_used") or {}).get("cpu") or (os.cpu_count() or 1)
            cap = max(0.05, args.quota * float(used))
            print(f"  quota {cap:.2f} CPUs ({args.quota:g} x the {used:.2f} the base's cpu benchmark used)",
                  file=sys.stderr, flush=True)
        doc = _with_hog(paths, args.suite, args.only, hog) if hog else _run(paths, args.suite, args.only, cap)
        base = base or doc
        labels[label] = doc["id"]
        (home / "labels.json").write_text(json.dumps(labels, indent=1))
    return home


def analyse(home: Path, min_effect: float | None, noise_factor: float | None = None,
            share_min_effect: float | None = None, current_bars: bool = False) -> dict[str, Any]:
    """The figures from the runs stored in ``home`` (``labels.json`` names them); ``current_bars``: judge them
    with today's per-benchmark bars (:data:`experiments.bench.suite.BENCHMARKS`) instead of the ones they were
    stored with."""
    from experiments.bench.compare import compare_docs
    from experiments.bench.store import load_run
    from experiments.settings import Paths

    paths = Paths(home)
    labels = json.loads((home / "labels.json").read_text())
    docs = {k: load_run(paths, v) for k, v in labels.items()}
    if current_bars:
        from experiments.bench.suite import BENCHMARKS

        bars = {b.name: b.min_effect for b in BENCHMARKS}
        for d in docs.values():
            for name, b in d["benchmarks"].items():
                b["min_effect"] = bars.get(name, b.get("min_effect"))
    base = docs["base"]
    kw: dict[str, Any] = {"min_effect": min_effect}
    if noise_factor is not None:
        kw["noise_factor"] = noise_factor
    if share_min_effect is not None:
        kw["share_min_effect"] = share_min_effect
    rows = {k: compare_docs(base, d, **kw) for k, d in docs.items() if k != "base"}
    reruns = [k for k in rows if k.startswith("rerun")]
    false = [k for k in reruns if rows[k]["regressions"]]
    found = {k: bool(rows[k]["regressions"]) and "cpu" in rows[k]["regressions"] for k in ("quota", "hog")
             if k in rows}
    same = [docs["base"], *(docs[k] for k in reruns)]
    others = {k: d.get("others_cpu") for k, d in docs.items()}  # other processes' CPUs per group, when recorded
    return {"rows": rows, "reruns": len(reruns), "false_regressions": false, "slowdowns_found": found,
            "noise": _noise(same), "others": others}


def _noise(docs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per benchmark over runs of one configuration: the median within-run spread (SD of the log windows) and
    the between-run spread (SD of the log medians): what the compare's bar must cover."""
    import statistics

    from optimizer.benchcompare import log_spread

    out = {}
    for name in docs[0]["benchmarks"]:
        for key, label in (("values", name), ("cpu_share", f"{name} cpu_share")):
            runs = [[v for v in d["benchmarks"].get(name, {}).get(key) or [] if v is not None] for d in docs]
            within = [log_spread(r) for r in runs if len(r) >= 2]
            medians = [statistics.median(r) for r in runs if r]
            if medians:
                out[label] = {"within": statistics.median(within) if within else float("nan"),
                              "between": log_spread(medians)}
    return out


def _table(res: dict[str, Any]) -> str:
    rows = res["rows"]
    names = list(next(iter(rows.values()))["benchmarks"]) if rows else []
    head = f"{'run':<10}" + "".join(f"{n:>18}" for n in names) + "  verdict"
    lines = [head, "-" * len(head)]
    for label, rep in rows.items():
        cells = []
        for n in names:
            v = rep["benchmarks"].get(n)
            mark = {"regression": "R", "improvement": "I"}.get(v["verdict"], " ") if v else " "
            chg = f"{v['change']:+8.1%}" if v and v["change"] is not None else f"{'-':>8}"
            cells.append(f"{chg} /{v['threshold']:5.1%}{mark:>2}" if v else f"{'-':>18}")
        lines.append(f"{label:<10}" + "".join(f"{c:>18}" for c in cells) + f"  {rep['verdict']}"
                     + (f"  others {res['others'].get(label)}" if res.get("others", {}).get(label) else ""))
    lines.append("")
    lines.append("noise over the base and the reruns (SD of log values): " + "; ".join(
        f"{n} within {v['within']:.1%} between {v['between']:.1%}" for n, v in res["noise"].items()))
    lines.append("cells: change of the median (+ better) / the bar; R regression, I improvement")
    lines.append(f"false regressions: {len(res['false_regressions'])} of {res['reruns']} reruns "
                 f"{res['false_regressions'] or ''}")
    lines.append("injected slowdowns found: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                                      for k, v in res["slowdowns_found"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reruns", type=int, default=10)
    p.add_argument("--suite", default="quick")
    p.add_argument("--only", default=None, help="comma-separated groups (default: all)")
    p.add_argument("--quota", type=float, default=0.9, help="the quota slowdown: this share of the CPUs")
    p.add_argument("--hog-load", type=int, default=10, help="the hog's load per CPU, percent")
    p.add_argument("--home", default=None, help="the data directory the runs go to (default: a new temporary one)")
    p.add_argument("--analyse", default=None, metavar="DIR", help="recompute from the runs stored in DIR")
    p.add_argument("--min-effect", type=float, default=None, help="--analyse: override every benchmark's bar")
    p.add_argument("--noise-factor", type=float, default=None, help="--analyse: override the spread factor")
    p.add_argument("--current-bars", action="store_true",
                   help="--analyse: judge stored runs with today's per-benchmark bars, not the ones stored with them")
    p.add_argument("--share-min-effect", type=float, default=None, help="--analyse: override the CPU share's bar")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    if not 1 <= args.reruns <= 50 or not 0 < args.quota <= 1 or not 1 <= args.hog_load <= 100:
        p.error("--reruns in 1..50, --quota in (0, 1], --hog-load in 1..100")
    cmd = "python3 benchmarks/bench_compare_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"$ {cmd}\nload before: {_uptime()}", flush=True)
    if args.analyse is None and shutil.which("stress-ng") is None:
        p.error("stress-ng is needed (Debian package stress-ng)")
    home = Path(args.analyse) if args.analyse else measure(args)
    res = analyse(home, args.min_effect, args.noise_factor, args.share_min_effect, args.current_bars)
    print(f"load after: {_uptime()}\nruns in {home}\n")
    print(_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0 if not res["false_regressions"] and all(res["slowdowns_found"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
