"""Decision quality, measured: known injected effects on real measured noise, decided by the validated
apply's own procedure (:func:`optimizer.decision.sequential`).

    python3 benchmarks/decision_quality.py [--quick] [--reps 100] [--draw interleaved|iid] [--json PATH]
                                           [--data benchmarks/data/noise]

The noise: per-window metrics of the built-in workloads measured here (``benchmarks/collect_noise.py``,
``benchmarks/data/noise/*.csv``). For a data set, a guarded metric M and an effect e, one repetition
runs ``sequential`` with a ``measure_pair`` that draws windows from the real ones: ``before`` = a real
window, ``after`` = another real window with M made e better (throughput x (1+e), latency / (1+e));
the other guarded metric of the data set is left as measured (a neutral second guard, so false
rollbacks from two guards count). ``--draw interleaved`` (the default, how the validated apply
measures) takes consecutive real windows from a random start as A, B, A, B, ... (random order within
each pair), so the machine's drift is in the data as it would be; ``--draw iid`` resamples windows
independently (no time structure).

Scoring: harmful = e worse than the -10 % limit (e < -10 %): must end rolled back; beneficial or neutral
= e >= 0: must end kept; the tolerance zone (-10 % <= e < 0) is reported apart (share kept) and not
scored. ``rolled back`` counts ``roll_back`` and ``inconclusive`` at the longest window (the procedure
never keeps a change it cannot show safe). Correct share = (harmful rolled back + good kept) / (harmful
+ good); harmful kept = harmful kept / harmful. Targets: >= 95 % correct, <= 2 % harmful kept.

Settings (method, confidence, initial/max pairs) are chosen on the training data sets only and reported
on the held-out ones (printed); the chosen defaults are :data:`optimizer.decision.DEFAULT_METHOD`,
``DEFAULT_CONFIDENCE``, ``DEFAULT_INITIAL_PAIRS``, ``DEFAULT_MAX_PAIRS`` and
``pairs_for_window(window_s, trial_s)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.decision import Guard, sequential

DATA = Path(__file__).resolve().parent / "data" / "noise"
#: chosen before the data were seen: the settings are fitted on these, the others are held out
TRAIN = ("oltp", "stress_ng_cpu")
EFFECTS = tuple(round(e, 2) for e in np.arange(-0.30, 0.3001, 0.05))
LIMIT = -0.10
#: metric -> direction of the guards the simulation puts on every data set that has the metric
GUARDED = {"throughput": "maximize", "latency_p95_ms": "minimize"}
TARGET_CORRECT, TARGET_HARMFUL_KEPT = 0.95, 0.02


@dataclass(frozen=True)
class Setting:
    """One procedure: interval method, confidence, first decision after ``initial`` pairs, at most ``max`` pairs."""

    method: str
    confidence: float
    initial: int
    max: int

    def label(self) -> str:
        return f"{self.method} {self.confidence:.0%} {self.initial}..{self.max} pairs"


def grid(quick: bool, *, max_pairs: int) -> list[Setting]:
    """The candidate settings (a small set for ``--quick``), none longer than ``max_pairs`` pairs."""
    if quick:
        cands = [Setting("t", 0.95, 4, 16), Setting("bootstrap", 0.95, 4, 16)]
    else:
        cands = [Setting("t", 0.90, 4, 10), Setting("t", 0.95, 4, 10), Setting("t", 0.95, 4, 20),
                 Setting("t", 0.90, 4, 20), Setting("hl", 0.95, 4, 20), Setting("bootstrap", 0.95, 4, 20),
                 Setting("t", 0.95, 4, 40), Setting("t", 0.95, 4, 60)]
    return [c for c in cands if c.max <= max_pairs]


def load(data: Path) -> dict[str, pd.DataFrame]:
    """``{data set: windows}`` from ``data/*.csv`` (``#`` comment lines skipped)."""
    out = {}
    for p in sorted(data.glob("*.csv")):
        frame = pd.read_csv(p, comment="#")
        cols = [c for c in GUARDED if c in frame]
        frame = frame[cols].astype(float).dropna()
        if len(frame) >= 8 and cols:
            out[p.stem] = frame
    return out


def _pair_source(values: np.ndarray, rng: np.random.Generator, draw: str, max_pairs: int) -> np.ndarray:
    """Row indices for the before and after window of each successive pair."""
    n = values.shape[0]
    if draw == "iid":
        idx = rng.integers(0, n, size=(max_pairs, 2))
    else:  # consecutive windows (circular: the last joins the first); never a window twice in one run
        if 2 * max_pairs > n:
            raise ValueError(f"interleaved draws of {max_pairs} pairs need {2 * max_pairs} windows, have {n}")
        start = int(rng.integers(0, n))
        seq = (start + np.arange(2 * max_pairs)) % n
        idx = seq.reshape(max_pairs, 2)
        flip = rng.random(max_pairs) < 0.5
        idx[flip] = idx[flip][:, ::-1]
    return idx


class _Pairs:
    """``measure_pair`` for :func:`sequential`: the next drawn (before, after) windows, the effect applied."""

    def __init__(self, values: np.ndarray, idx: np.ndarray, cols: list[str], j: int, factor: float) -> None:
        self.values, self.idx, self.cols, self.j, self.factor, self.k = values, idx, cols, j, factor, 0

    def __call__(self) -> tuple[Mapping[str, float], Mapping[str, float]]:
        b, a = self.idx[self.k]
        self.k += 1
        after = self.values[a].copy()
        after[self.j] *= self.factor
        return (dict(zip(self.cols, self.values[b].tolist(), strict=True)),
                dict(zip(self.cols, after.tolist(), strict=True)))


def run_cell(frame: pd.DataFrame, metric: str, effect: float, setting: Setting, *, reps: int, draw: str,
             seed: int) -> tuple[float, float, float]:
    """(share kept, share rolled back, mean pairs) of ``reps`` runs of the procedure on one cell."""
    cols = list(frame.columns)
    values = frame.to_numpy()
    guards = [Guard(c, GUARDED[c], LIMIT) for c in cols]  # type: ignore[arg-type]
    j = cols.index(metric)
    factor = (1.0 + effect) if GUARDED[metric] == "maximize" else 1.0 / (1.0 + effect)
    rng = np.random.default_rng(seed)
    kept = 0
    used = 0
    for _ in range(reps):
        source = _Pairs(values, _pair_source(values, rng, draw, setting.max), cols, j, factor)
        d, pairs = sequential(source, guards, initial_pairs=setting.initial, max_pairs=setting.max,
                              confidence=setting.confidence, method=setting.method)
        kept += d.decision == "keep"
        used += pairs
    return kept / reps, 1.0 - kept / reps, used / reps


def evaluate(sets: Mapping[str, pd.DataFrame], setting: Setting, *, reps: int, draw: str,
             seed: int = 0) -> list[dict[str, Any]]:
    """One row per data set x guarded metric x effect."""
    rows = []
    for name, frame in sets.items():
        for metric in frame.columns:
            for k, e in enumerate(EFFECTS):
                kept, back, pairs = run_cell(frame, metric, e, setting, reps=reps, draw=draw,
                                             seed=seed + 1000 * k + 7 * list(frame.columns).index(metric))
                rows.append({"data": name, "metric": metric, "effect": e, "kept": kept, "rolled_back": back,
                             "mean_pairs": pairs, "class": _klass(e)})
    return rows


def _klass(e: float) -> str:
    return "harmful" if e < LIMIT - 1e-9 else "good" if e >= 0 else "tolerance"


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Correct share, harmful kept, tolerance kept, mean pairs over ``rows`` (cells weigh equally)."""
    harm = [r["kept"] for r in rows if r["class"] == "harmful"]
    good = [r["kept"] for r in rows if r["class"] == "good"]
    tol = [r["kept"] for r in rows if r["class"] == "tolerance"]
    correct = (sum(1 - k for k in harm) + sum(good)) / max(1, len(harm) + len(good))
    return {"correct": correct, "harmful_kept": float(np.mean(harm)) if harm else 0.0,
            "tolerance_kept": float(np.mean(tol)) if tol else 0.0,
            "mean_pairs": float(np.mean([r["mean_pairs"] for r in rows])) if rows else 0.0}


def meets(t: Mapping[str, float]) -> bool:
    return t["correct"] >= TARGET_CORRECT and t["harmful_kept"] <= TARGET_HARMFUL_KEPT


def choose(train: Mapping[str, pd.DataFrame], settings: Sequence[Setting], *, reps: int, draw: str
           ) -> tuple[Setting, list[dict[str, Any]]]:
    """The cheapest setting (fewest mean pairs) meeting both targets on every training set; when none
    does, the one with the most correct decisions (worst training set) among those that keep at most
    half the harmful-kept target on every training set (a margin for data it has not seen); when
    none does that either, the safest."""
    tried: list[dict[str, Any]] = []
    for s in settings:
        rows = evaluate(train, s, reps=reps, draw=draw)
        per = {name: totals([r for r in rows if r["data"] == name]) for name in train}
        tried.append({"setting": s, "per_set": per, "all": totals(rows)})
        print(f"  {s.label():28s} " + "  ".join(
            f"{n}: correct {t['correct']:.1%} harmful kept {t['harmful_kept']:.1%} pairs {t['mean_pairs']:.1f}"
            for n, t in per.items()), flush=True)
    ok = [t for t in tried if all(meets(p) for p in t["per_set"].values())]
    if ok:
        best = min(ok, key=lambda t: (t["all"]["mean_pairs"], -t["all"]["correct"]))
    else:
        safe = [t for t in tried
                if all(p["harmful_kept"] <= TARGET_HARMFUL_KEPT / 2 for p in t["per_set"].values())]
        if safe:
            best = max(safe, key=lambda t: min(p["correct"] for p in t["per_set"].values()))
        else:
            best = min(tried, key=lambda t: max(p["harmful_kept"] for p in t["per_set"].values()))
    report = [{"setting": asdict(t["setting"]), "per_set": t["per_set"], "all": t["all"]} for t in tried]
    chosen: Setting = best["setting"]
    return chosen, report


def print_table(rows: Sequence[Mapping[str, Any]], held_out: Sequence[str]) -> None:
    print(f"{'data set':16s} {'split':8s} {'guard with effect':17s} {'effect':>7s} {'class':9s} {'kept':>6s} "
          f"{'rolled back':>11s} {'pairs':>6s}")
    for r in rows:
        split = "held-out" if r["data"] in held_out else "train"
        print(f"{r['data']:16s} {split:8s} {r['metric']:17s} {r['effect'] + 0.0:+7.0%} {r['class']:9s} "
              f"{r['kept']:6.1%} {r['rolled_back']:11.1%} {r['mean_pairs']:6.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--reps", type=int, default=None, help="repetitions per cell (default 100; 30 with --quick)")
    ap.add_argument("--draw", choices=("interleaved", "iid"), default="interleaved")
    ap.add_argument("--quick", action="store_true", help="a small grid and few repetitions (for tests)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--defaults", action="store_true", help="no choice: evaluate the validated apply's shipped "
                                                            "defaults (optimizer.decision.DEFAULT_*) only")
    args = ap.parse_args(argv)
    reps = args.reps or (30 if args.quick else 100)
    sets = load(args.data)
    train = {k: v for k, v in sets.items() if k in TRAIN}
    held = {k: v for k, v in sets.items() if k not in TRAIN}
    if not train or not held:
        ap.error(f"need training sets {TRAIN} and at least one other data set in {args.data}")
    began = time.monotonic()
    print(f"noise: {', '.join(f'{k} ({len(v)} windows)' for k, v in sets.items())}; draw {args.draw}; "
          f"{reps} repetitions per cell; limit {LIMIT:.0%}")
    print(f"settings chosen on (train): {', '.join(train)}; reported on (held out): {', '.join(held)}")
    # interleaved draws use each real window at most once per run; iid draws resample without that bound
    longest = min(len(v) for v in sets.values()) // 2 if args.draw == "interleaved" else 60
    candidates = grid(args.quick, max_pairs=longest)
    if args.defaults:
        from optimizer.decision import (
            DEFAULT_CONFIDENCE,
            DEFAULT_INITIAL_PAIRS,
            DEFAULT_MAX_PAIRS,
            DEFAULT_METHOD,
        )

        candidates = [Setting(DEFAULT_METHOD, DEFAULT_CONFIDENCE, DEFAULT_INITIAL_PAIRS,
                              min(DEFAULT_MAX_PAIRS, longest))]
    chosen, tried = choose(train, candidates, reps=reps, draw=args.draw)
    print(f"chosen: {chosen.label()}")
    rows = evaluate(sets, chosen, reps=reps, draw=args.draw, seed=1)
    print_table(rows, list(held))
    print("harmful: effect < -10 % (must end rolled back); good: effect >= 0 (must end kept); tolerance: "
          "-10 % <= effect < 0, not scored, share kept shown; rolled back includes inconclusive at the end")
    summary = {}
    for name in sets:
        t = totals([r for r in rows if r["data"] == name])
        summary[name] = {**t, "split": "held-out" if name in held else "train", "meets_targets": meets(t)}
        print(f"TOTAL {name:16s} ({summary[name]['split']:8s}): correct {t['correct']:.1%}, harmful kept "
              f"{t['harmful_kept']:.1%}, tolerance kept {t['tolerance_kept']:.1%}, mean pairs {t['mean_pairs']:.1f}"
              f" -> {'meets' if meets(t) else 'MISSES'} the targets")
    ho = totals([r for r in rows if r["data"] in held])
    print(f"TOTAL held-out: correct {ho['correct']:.1%} (target >= {TARGET_CORRECT:.0%}), harmful kept "
          f"{ho['harmful_kept']:.1%} (target <= {TARGET_HARMFUL_KEPT:.0%})")
    print(f"({time.monotonic() - began:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({"draw": args.draw, "reps": reps, "train": list(train),
                                         "held_out": list(held), "chosen": asdict(chosen), "tried": tried,
                                         "rows": rows, "totals": summary, "held_out_total": ho}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
