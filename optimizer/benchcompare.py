"""Is a benchmark run worse than a base run? A per-benchmark verdict that respects run-to-run noise.

Pure (no I/O). ``novatune bench compare`` (:mod:`experiments.bench.compare`) hands it the per-window
values of one benchmark from two stored runs; ``benchmarks/bench_compare_quality.py`` measures how often
it is wrong on real reruns and real injected slowdowns.

Two kinds of noise matter, and a test that only knows one of them is fooled:

* *within-run* noise (window to window inside one run) is what the windows show: a Welch t interval of
  the difference of the mean log values (:func:`optimizer.decision.decide`, method ``t``) gives the
  relative change of the run against the base with its interval from it;
* *between-run* noise (one run's level against another's: a VM's neighbours, the page cache, CPU
  frequency, where the allocator put the arrays) is not in the windows of either run, and is usually
  larger. With tight windows, a t test alone calls a 2 % difference between two reruns significant.

So a benchmark is a **regression** only when both hold:

1. the change is *statistically* there: the whole interval of the change is on the worse side of 0;
2. the change is *practically* there: the estimated change is worse than the threshold
   ``max(min_effect, noise_factor * base_spread)``, where ``base_spread`` is the base run's
   window-to-window spread (the standard deviation of the log values, about the coefficient of
   variation). ``min_effect`` (5 % by default; a benchmark may ask for more) stands for the between-run
   noise the windows cannot show; the spread term raises the bar for a benchmark that is noisy by nature.

A CPU-bound benchmark also records the CPUs it got in each window (its ``cpu_share``). On a VM the two
factors of its throughput behave very differently between runs: the speed of a CPU second drifts with
the host's load (invisible inside the VM: 10-15 % between reruns of one configuration here), while the
CPUs the benchmark gets are steady to about 1 %. A quota or a competing load takes CPUs away. So
:func:`with_cpu_share` also calls a **regression** when the share itself is a regression by the same rule
(interval below 0, drop beyond ``max(share_min_effect, noise_factor * base share spread)``) and the
benchmark ran worse; the throughput's own bar can then be set above the host's drift without missing
the slowdowns that take CPU away (docs/bench.md).

An **improvement** is the mirror image; everything else is **no change**, with ``conclusive`` False when
the interval is so wide that it also holds changes beyond the threshold, when the base's spread raised the
bar above twice ``min_effect`` (too noisy to tell), or with too few windows.
The base's spread (not the run's) sets the threshold: a competing load that makes the new run noisy must
not raise the bar that would flag it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from optimizer.decision import Guard, decide

__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_MIN_EFFECT", "DEFAULT_NOISE_FACTOR", "DEFAULT_SHARE_MIN_EFFECT",
           "MIN_WINDOWS", "VERDICTS", "BenchVerdict", "compare_samples", "log_spread", "summary_exit",
           "with_cpu_share"]

#: what :func:`compare_samples` may answer
VERDICTS = ("regression", "improvement", "no change")
#: the smallest relative change called a regression or an improvement (stands for between-run noise)
DEFAULT_MIN_EFFECT = 0.05
#: the threshold is at least this many times the base's window-to-window spread
DEFAULT_NOISE_FACTOR = 2.0
#: the smallest relative drop in the CPUs a benchmark got that counts as CPU taken away from it
DEFAULT_SHARE_MIN_EFFECT = 0.05
#: the two-sided level of the change's interval
DEFAULT_CONFIDENCE = 0.95
#: fewer finite windows than this on either side: no verdict (no change, not conclusive)
MIN_WINDOWS = 3

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class BenchVerdict:
    """One benchmark's comparison.

    ``change`` is the relative change of the run against the base, signed so that positive is better
    (a latency 10 % higher is -0.10), estimated as the shift of the mean log value (what the interval
    ``change_ci`` is about); ``base_median`` / ``run_median`` are the medians of the windows and
    ``median_change`` their relative change (same sign convention; it and ``change`` differ when a window
    is an outlier); ``threshold`` the practical bar (see the module docstring);
    ``base_spread`` and ``run_spread`` the window-to-window spreads; ``p_value`` the Mann-Whitney
    p-value of the two window samples; ``reason`` one sentence.
    """

    direction: str
    base_median: float
    run_median: float
    median_change: float
    n_base: int
    n_run: int
    change: float
    change_ci: tuple[float, float]
    p_value: float
    base_spread: float
    run_spread: float
    threshold: float
    verdict: str
    conclusive: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able; NaN where a figure is unknown)."""
        d = asdict(self)
        d["change_ci"] = list(self.change_ci)
        return d


def _finite(xs: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray([float(x) for x in xs], dtype=float)
    return arr[np.isfinite(arr)]


def log_spread(values: Sequence[float] | np.ndarray) -> float:
    """The window-to-window spread: the sample standard deviation of the log values (about the
    coefficient of variation for small spreads); NaN with fewer than two positive finite values."""
    arr = _finite(values)
    arr = arr[arr > 0]
    if arr.size < 2:
        return math.nan
    return float(np.std(np.log(arr), ddof=1))


def _check(direction: str, min_effect: float, noise_factor: float, confidence: float) -> None:
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
    if not 0.0 <= min_effect < 1.0:
        raise ValueError(f"min_effect must be in [0, 1), got {min_effect}")
    if not (math.isfinite(noise_factor) and noise_factor >= 0.0):
        raise ValueError(f"noise_factor must be >= 0, got {noise_factor}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def compare_samples(base: Sequence[float], run: Sequence[float], *, direction: str,
                    min_effect: float = DEFAULT_MIN_EFFECT, noise_factor: float = DEFAULT_NOISE_FACTOR,
                    confidence: float = DEFAULT_CONFIDENCE) -> BenchVerdict:
    """The verdict on one benchmark from the per-window values of the base run and of the new run.

    Non-finite values are dropped. With fewer than :data:`MIN_WINDOWS` values on either side the
    verdict is ``no change``, not conclusive.

    Raises:
        ValueError: ``direction`` not maximize/minimize, ``min_effect`` outside [0, 1), a negative
            ``noise_factor`` or ``confidence`` outside (0, 1).
    """
    _check(direction, min_effect, noise_factor, confidence)
    b, r = _finite(base), _finite(run)
    b_spread, r_spread = log_spread(b), log_spread(r)
    threshold = max(min_effect, noise_factor * b_spread) if math.isfinite(b_spread) else min_effect
    medians = (float(np.median(b)) if b.size else math.nan, float(np.median(r)) if r.size else math.nan)
    common: dict[str, Any] = {"direction": direction, "base_median": medians[0], "run_median": medians[1],
                              "median_change": _rel(medians, direction),
                              "n_base": int(b.size), "n_run": int(r.size), "base_spread": b_spread,
                              "run_spread": r_spread, "threshold": threshold}
    if b.size < MIN_WINDOWS or r.size < MIN_WINDOWS:
        return BenchVerdict(**common, change=common["median_change"], change_ci=(math.nan, math.nan),
                            p_value=math.nan, verdict="no change", conclusive=False,
                            reason=f"too few windows ({b.size} base, {r.size} run; need {MIN_WINDOWS} each)")
    m = decide({"x": b.tolist()}, {"x": r.tolist()}, [Guard("x", direction, 0.0)],  # type: ignore[arg-type]
               confidence=confidence, min_samples=MIN_WINDOWS, method="t").metrics[0]
    lo, hi = m.change_ci
    verdict, conclusive, reason = _decide(m.change, lo, hi, threshold)
    if verdict == "no change" and threshold > 2 * min_effect:
        conclusive = False
        reason = (f"too noisy to tell: the base's window spread ({b_spread:.1%}) raises the bar to {threshold:.1%}; "
                  f"change {m.change:+.1%} (interval {lo:+.1%} .. {hi:+.1%})")
    return BenchVerdict(**common, change=m.change, change_ci=(lo, hi), p_value=m.p_value, verdict=verdict,
                        conclusive=conclusive, reason=reason)


def with_cpu_share(verdict: BenchVerdict, base_share: Sequence[float], run_share: Sequence[float], *,
                   min_effect: float = DEFAULT_SHARE_MIN_EFFECT, noise_factor: float = DEFAULT_NOISE_FACTOR,
                   confidence: float = DEFAULT_CONFIDENCE) -> tuple[BenchVerdict, BenchVerdict]:
    """``(final verdict, the share's verdict)`` for a benchmark whose per-window CPU shares are known.

    The share (CPUs the benchmark got per window; more is better) is compared by :func:`compare_samples`.
    When it is a regression and the benchmark ran worse (``verdict.change`` below 0) the final verdict is a
    regression, whatever the benchmark's own bar said; otherwise ``verdict`` is returned unchanged.

    Raises:
        ValueError: as :func:`compare_samples`.
    """
    share = compare_samples(base_share, run_share, direction="maximize", min_effect=min_effect,
                            noise_factor=noise_factor, confidence=confidence)
    if verdict.verdict == "regression" or share.verdict != "regression" or not verdict.change < 0:
        return verdict, share
    lo, hi = share.change_ci
    reason = (f"got {-share.change:.1%} less CPU ({share.base_median:.2f} -> {share.run_median:.2f} CPUs, interval "
              f"{lo:+.1%} .. {hi:+.1%}, beyond the {share.threshold:.1%} bar) and ran {-verdict.change:.1%} worse: "
              f"CPU taken away from it (a quota, a competing load), which the host's drift in speed does not do")
    return replace(verdict, verdict="regression", conclusive=True, reason=reason), share


def _rel(medians: tuple[float, float], direction: str) -> float:
    b, r = medians
    if not (math.isfinite(b) and math.isfinite(r)) or b == 0:
        return math.nan
    return r / b - 1.0 if direction == "maximize" else 1.0 - r / b


def _decide(change: float, lo: float, hi: float, threshold: float) -> tuple[str, bool, str]:
    """(verdict, conclusive, reason) from the change, its interval and the practical threshold."""
    bar = f"{threshold:.1%}"
    if hi < 0 and change <= -threshold:
        return "regression", True, f"worse by {-change:.1%} (interval {lo:+.1%} .. {hi:+.1%}), beyond the {bar} bar"
    if lo > 0 and change >= threshold:
        return "improvement", True, f"better by {change:.1%} (interval {lo:+.1%} .. {hi:+.1%}), beyond the {bar} bar"
    if lo >= -threshold and hi <= threshold:
        return "no change", True, f"the interval {lo:+.1%} .. {hi:+.1%} lies within the {bar} bar"
    if hi < 0 or lo > 0:
        return "no change", True, (f"a {change:+.1%} difference the windows show, smaller than the {bar} bar "
                                   f"(run-to-run noise)")
    return "no change", False, f"inconclusive: the interval {lo:+.1%} .. {hi:+.1%} is wider than the {bar} bar"


def summary_exit(verdicts: Sequence[str], *, regression_code: int) -> int:
    """The exit code of a comparison: ``regression_code`` when any verdict is a regression, else 0."""
    return regression_code if "regression" in verdicts else 0
