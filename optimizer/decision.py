"""Keep or roll back a change: a decision from before/after measurements that respects the noise.

Pure (no I/O). The validated apply (:mod:`experiments.validate`) measures the workload in windows
before and after a change (interleaved A/B/A/B where it can) and asks :func:`decide`; the
decision-quality benchmark (``benchmarks/decision_quality.py``) asks the same function on real
measured noise with known injected effects.

Each guard is a metric, its good direction and a limit: the worst relative change allowed
(``-0.10``: at most 10 % worse; for a minimized metric such as latency, at most 10 % higher). Per
guard the relative change (signed so that positive is better) gets a confidence interval, a
Mann–Whitney p-value and Cliff's delta:

* ``worse``: the whole interval is below the limit (worse than allowed, with confidence);
* ``ok``: the whole interval is above the limit (shown not to be worse than allowed);
* ``unclear``: the interval straddles the limit (the caller extends the window, then rolls back).

The decision is ``roll_back`` when any guard is ``worse``, ``keep`` when every guard is ``ok``,
``inconclusive`` otherwise: a change is never kept unless it is shown safe.

The interval (``method``, :data:`METHODS`) is on the log scale, so a change is a ratio:

* ``t`` (default): a t interval of the mean log ratio: over the A/B pairs when the windows were
  measured as pairs (``paired=True``, what :func:`sequential` does: drift of a shared machine cancels
  within a pair), else Welch's interval of the difference of mean logs. Exact for log-normal windows,
  honest for 3-8 windows, and closed-form (fast);
* ``hl``: the Hodges–Lehmann shift of the logs with its Mann–Whitney (Moses) interval: distribution
  free; infinite (``unclear``) when the samples are too small for the confidence;
* ``bootstrap``: the first version, a percentile bootstrap of the medians' log ratio; too narrow for
  small samples (kept for comparison in the benchmark).

The defaults (:data:`DEFAULT_METHOD`, :data:`DEFAULT_CONFIDENCE`, :data:`DEFAULT_INITIAL_PAIRS`,
:data:`DEFAULT_MAX_PAIRS`, :func:`pairs_for_window`) were chosen by ``benchmarks/decision_quality.py``
on measured noise (docs/validation.md, "How a decision is made"). A harmful change ends kept only
when its guard's interval lies wholly above the limit: a one-sided error of (1 - confidence) / 2 per
look; with two guards a false rollback of a neutral change needs one guard's interval wholly below
the limit, which the simulation counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

__all__ = ["DECISIONS", "DEFAULT_CONFIDENCE", "DEFAULT_INITIAL_PAIRS", "DEFAULT_MAX_PAIRS", "DEFAULT_METHOD", "METHODS",
           "MIN_PAIRS", "Decision", "Guard", "MetricVerdict", "PairMeasure", "decide", "pairs_for_window",
           "parse_guard", "sequential"]

#: what :func:`decide` may answer
DECISIONS = ("keep", "roll_back", "inconclusive")

#: the intervals :func:`decide` can use (see the module docstring)
METHODS = ("t", "hl", "bootstrap")

#: the defaults the decision-quality benchmark chose (``benchmarks/decision_quality.py``)
DEFAULT_METHOD = "t"
DEFAULT_CONFIDENCE = 0.95
#: the first decision comes after this many A/B pairs; :data:`DEFAULT_MAX_PAIRS` bounds the extension
DEFAULT_INITIAL_PAIRS = 4
DEFAULT_MAX_PAIRS = 20
#: fewer pairs than this can show nothing at the default confidence (see :func:`pairs_for_window`)
MIN_PAIRS = 3

Direction = Literal["maximize", "minimize"]

_GUARD = re.compile(r"^(?P<metric>[A-Za-z_][A-Za-z0-9_.]*):(?P<limit>[+-]?\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class Guard:
    """``metric`` may get at most ``-limit`` worse (relative; ``limit`` <= 0) in its ``direction``."""

    metric: str
    direction: Direction
    limit: float = -0.10

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"guard {self.metric}: direction must be maximize or minimize, got {self.direction!r}")
        if not (-1.0 < self.limit <= 0.0):
            raise ValueError(f"guard {self.metric}: the limit must be in (-100 %, 0 %], got {self.limit:.1%}")


def parse_guard(text: str) -> tuple[str, float]:
    """``METRIC:-10%`` -> ``("METRIC", -0.10)`` (the direction comes from what the metric is).

    Raises:
        ValueError: not ``METRIC:-N%`` with N in [0, 100).
    """
    m = _GUARD.match(text.strip())
    if not m:
        raise ValueError(f"guard {text!r}: expected METRIC:-N% (e.g. p95_latency_ms:-10%)")
    limit = float(m["limit"]) / 100.0
    if not -1.0 < limit <= 0.0:
        raise ValueError(f"guard {text!r}: the limit must be between -100% (exclusive) and 0%")
    return m["metric"], limit


@dataclass(frozen=True)
class MetricVerdict:
    """One guard's figures: medians and intervals before and after, the relative change (positive =
    better) with its interval, the Mann–Whitney p-value, Cliff's delta (positive = after is better)."""

    metric: str
    direction: str
    limit: float
    before: float
    before_ci: tuple[float, float]
    after: float
    after_ci: tuple[float, float]
    n_before: int
    n_after: int
    change: float
    change_ci: tuple[float, float]
    p_value: float
    effect_size: float
    verdict: str


@dataclass(frozen=True)
class Decision:
    """``decision`` (one of :data:`DECISIONS`), the ``reason`` in one sentence, and every guard's figures."""

    decision: str
    reason: str
    metrics: tuple[MetricVerdict, ...]
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(xs: Sequence[float]) -> np.ndarray:
    arr = np.asarray(list(xs), dtype=float)
    return arr[np.isfinite(arr)]


def _cliffs_and_u(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Cliff's delta P(b > a) - P(b < a) and the Mann–Whitney U of ``b`` (ties count one half)."""
    diff = b[:, None] - a[None, :]
    gt, lt = int(np.sum(diff > 0)), int(np.sum(diff < 0))
    return (gt - lt) / diff.size, gt + 0.5 * (diff.size - gt - lt)


@lru_cache(maxsize=512)
def _u_null_cdf(n: int, m: int) -> tuple[float, ...]:
    """Exact null distribution of Mann–Whitney's U for sizes n, m without ties: P(U <= u), u = 0..n*m."""
    # counts[k][u]: arrangements of k of one sample among the rest with U = u (the classic recursion)
    table = np.zeros((n + 1, m + 1, n * m + 1))
    table[0, :, 0] = 1.0
    table[:, 0, 0] = 1.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            shifted = np.zeros(n * m + 1)
            shifted[j:] = table[i - 1, j, : n * m + 1 - j]
            table[i, j] = shifted + table[i, j - 1]
    freq = table[n, m]
    return tuple(np.cumsum(freq) / freq.sum())


def _sorted_median(s: np.ndarray) -> float:
    n = s.size
    return float(s[(n - 1) // 2] + s[n // 2]) / 2.0


def _mann_whitney_p(n: int, m: int, both: np.ndarray, u: float) -> float:
    """Two-sided Mann–Whitney p-value (``both``: the two samples together, sorted): exact without ties
    for small samples, else the normal approximation with the tie correction."""
    if both[0] == both[-1]:
        return 1.0
    has_ties = bool(np.any(both[1:] == both[:-1]))
    if not has_ties and n * m <= 400:
        cdf = _u_null_cdf(n, m)
        lo = min(u, n * m - u)
        return float(min(1.0, 2.0 * cdf[int(round(lo))]))
    _, counts = np.unique(both, return_counts=True)
    total = n + m
    var = n * m / 12.0 * ((total + 1) - float(np.sum(counts**3 - counts)) / (total * (total - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - n * m / 2.0) - 0.5) / math.sqrt(var)
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0))))


def _median_ci(s: np.ndarray, alpha: float) -> tuple[float, float]:
    """Distribution-free interval of the median of the sorted ``s`` from order statistics (min .. max
    for tiny samples)."""
    n = s.size
    k = int(math.floor((n - _norm_ppf(1 - alpha) * math.sqrt(n)) / 2.0))
    k = min(max(k, 0), (n - 1) // 2)
    return float(s[k]), float(s[n - 1 - k])


def _norm_ppf(q: float) -> float:
    return NormalDist().inv_cdf(q)


def _log_shift_t(lb: np.ndarray, la: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Welch t interval of mean(log after) - mean(log before): (estimate, low, high)."""
    from scipy.special import stdtrit

    d = float(la.mean() - lb.mean())
    vb, va = float(lb.var(ddof=1)) / lb.size, float(la.var(ddof=1)) / la.size
    se2 = vb + va
    if se2 <= 0:
        return d, d, d
    df = se2**2 / ((vb**2 / (lb.size - 1) if vb else 0.0) + (va**2 / (la.size - 1) if va else 0.0))
    half = float(stdtrit(df, 1 - alpha)) * math.sqrt(se2)
    return d, d - half, d + half


def _log_shift_paired(lr: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """t interval of the mean per-pair log ratio log(after_i / before_i): (estimate, low, high)."""
    from scipy.special import stdtrit

    d = float(lr.mean())
    se2 = float(lr.var(ddof=1)) / lr.size
    if se2 <= 0:
        return d, d, d
    half = float(stdtrit(lr.size - 1, 1 - alpha)) * math.sqrt(se2)
    return d, d - half, d + half


def _log_shift_hl(lb: np.ndarray, la: np.ndarray, alpha: float, ties: bool) -> tuple[float, float, float]:
    """Hodges–Lehmann shift of the logs with its Mann–Whitney (Moses) interval: (estimate, low, high).

    The interval is infinite when the samples are too small for the confidence (e.g. 3 and 3 at 95 %)."""
    diffs = np.sort((la[:, None] - lb[None, :]).ravel())
    n, m = lb.size, la.size
    est = float(np.median(diffs))
    if n * m <= 400 and not ties:
        cdf = np.asarray(_u_null_cdf(n, m))
        c = int(np.searchsorted(cdf, alpha, side="right"))  # P(U <= c - 1) <= alpha
    else:
        c = int(math.floor(n * m / 2.0 - _norm_ppf(1 - alpha) * math.sqrt(n * m * (n + m + 1) / 12.0)))
    if c < 1:
        return est, -math.inf, math.inf
    return est, float(diffs[c - 1]), float(diffs[diffs.size - c])


def _log_shift_boot(lb: np.ndarray, la: np.ndarray, alpha: float, resamples: int,
                    rng: np.random.Generator) -> tuple[float, float, float]:
    """Percentile bootstrap of log(median after / median before) (the first version; too narrow for small n)."""
    bb = np.median(rng.choice(lb, size=(resamples, lb.size), replace=True), axis=1)
    ba = np.median(rng.choice(la, size=(resamples, la.size), replace=True), axis=1)
    lo, hi = np.quantile(ba - bb, [alpha, 1.0 - alpha])
    return float(np.median(la) - np.median(lb)), float(lo), float(hi)


def _to_change(shift: float, sign: float) -> float:
    """A log shift of the metric -> the relative change, positive = better: after/before - 1 for a
    maximized metric, 1 - after/before for a minimized one (a latency 10 % higher is -10 %)."""
    if math.isinf(shift):
        return -math.inf if (shift > 0) != (sign > 0) else math.inf
    r = math.exp(shift)
    return r - 1.0 if sign > 0 else 1.0 - r


def _verdict(guard: Guard, before: np.ndarray, after: np.ndarray, *, confidence: float, method: str,
             resamples: int, rng: np.random.Generator, pairs: tuple[np.ndarray, np.ndarray] | None = None
             ) -> MetricVerdict:
    sign = 1.0 if guard.direction == "maximize" else -1.0
    alpha = (1.0 - confidence) / 2.0
    delta, u = _cliffs_and_u(before, after)
    sb, sa = np.sort(before), np.sort(after)
    both = np.sort(np.concatenate([sb, sa]))
    ties = bool(np.any(both[1:] == both[:-1]))
    off = 0.0 if both[0] > 0 else 1.0 - float(both[0])  # a zero or negative value has no log: shift (rare)
    lb, la = np.log(sb + off), np.log(sa + off)
    if method == "t" and pairs is not None:
        est, lo, hi = _log_shift_paired(np.log(pairs[1] + off) - np.log(pairs[0] + off), alpha)
    elif method == "t":
        est, lo, hi = _log_shift_t(lb, la, alpha)
    elif method == "hl":
        est, lo, hi = _log_shift_hl(lb, la, alpha, ties)
    else:
        est, lo, hi = _log_shift_boot(lb, la, alpha, resamples, rng)
    change = _to_change(est, sign)
    ends = sorted((_to_change(lo, sign), _to_change(hi, sign)))
    verdict = "worse" if ends[1] < guard.limit else "ok" if ends[0] >= guard.limit else "unclear"
    return MetricVerdict(
        metric=guard.metric, direction=guard.direction, limit=guard.limit,
        before=_sorted_median(sb), before_ci=_median_ci(sb, alpha), after=_sorted_median(sa),
        after_ci=_median_ci(sa, alpha),
        n_before=int(before.size), n_after=int(after.size), change=change, change_ci=(ends[0], ends[1]),
        p_value=_mann_whitney_p(sb.size, sa.size, both, u), effect_size=sign * delta, verdict=verdict)


def decide(before: Mapping[str, Sequence[float]], after: Mapping[str, Sequence[float]], guards: Sequence[Guard], *,
           confidence: float = DEFAULT_CONFIDENCE, resamples: int = 2000, min_samples: int = 3, seed: int = 0,
           method: str = DEFAULT_METHOD, paired: bool = False) -> Decision:
    """Keep, roll back or say it cannot tell yet (see the module docstring).

    ``before`` and ``after`` map a metric to its per-window values. A guard whose metric has fewer
    than ``min_samples`` finite values on either side makes the decision ``inconclusive``.
    ``method`` (one of :data:`METHODS`) picks the interval; ``resamples`` and ``seed`` matter only to
    ``bootstrap``. ``confidence`` is the two-sided level of each guard's interval. ``paired``: the
    i-th before and the i-th after value of a metric were measured as one A/B pair (interleaved
    windows); the ``t`` method then uses the per-pair log ratios (slow drift of the machine cancels),
    keeping the pairs where both values are finite (unpaired when the lists differ in length).

    Raises:
        ValueError: no guards, ``confidence`` outside (0, 1), ``min_samples`` < 2, or an unknown method.
    """
    if not guards:
        raise ValueError("decide needs at least one guard")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2, got {min_samples}")
    rng = np.random.default_rng(seed)
    verdicts: list[MetricVerdict] = []
    missing: list[str] = []
    for g in guards:
        b, a = _clean(before.get(g.metric, ())), _clean(after.get(g.metric, ()))
        pairs = _pairs(before.get(g.metric, ()), after.get(g.metric, ())) if paired else None
        if b.size < min_samples or a.size < min_samples or (pairs is not None and pairs[0].size < min_samples):
            missing.append(f"{g.metric} ({b.size} before, {a.size} after; need {min_samples} each)")
            continue
        verdicts.append(_verdict(g, b, a, confidence=confidence, method=method, resamples=resamples, rng=rng,
                                 pairs=pairs))
    return _summarise(verdicts, missing, confidence)


def _pairs(before: Sequence[float], after: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """The A/B pairs where both values are finite; None when the lists differ in length (not pairs)."""
    b, a = np.asarray(list(before), dtype=float), np.asarray(list(after), dtype=float)
    if b.size != a.size:
        return None
    ok = np.isfinite(b) & np.isfinite(a)
    return b[ok], a[ok]


def _summarise(verdicts: list[MetricVerdict], missing: list[str], confidence: float) -> Decision:
    worse = [v for v in verdicts if v.verdict == "worse"]
    unclear = [v for v in verdicts if v.verdict == "unclear"]
    if worse:
        v = worse[0]
        return Decision("roll_back", f"{v.metric} is {-v.change:.1%} worse (interval {v.change_ci[0]:+.1%} .. "
                        f"{v.change_ci[1]:+.1%}, p={v.p_value:.3g}), beyond the {v.limit:.0%} limit",
                        tuple(verdicts), confidence)
    if missing or unclear:
        parts = [f"too few windows: {m}" for m in missing] + [
            f"{v.metric} changed {v.change:+.1%} (interval {v.change_ci[0]:+.1%} .. {v.change_ci[1]:+.1%}), which "
            f"does not exclude the {v.limit:.0%} limit" for v in unclear]
        return Decision("inconclusive", "; ".join(parts), tuple(verdicts), confidence)
    summary = ", ".join(f"{v.metric} {v.change:+.1%} (interval {v.change_ci[0]:+.1%} .. {v.change_ci[1]:+.1%})"
                        for v in verdicts)
    return Decision("keep", f"no guard is worse than its limit: {summary}", tuple(verdicts), confidence)


#: one A/B pair of windows: (metrics with the old values, metrics with the change)
PairMeasure = Callable[[], tuple[Mapping[str, float], Mapping[str, float]]]


def sequential(measure_pair: PairMeasure, guards: Sequence[Guard], *, initial_pairs: int, max_pairs: int,
               batch: int = 2, confidence: float = DEFAULT_CONFIDENCE, seed: int = 0,
               method: str = DEFAULT_METHOD, paired: bool = True) -> tuple[Decision, int]:
    """The validation procedure, shared by the validated apply and the decision-quality simulation.

    Measures ``initial_pairs`` A/B pairs (``measure_pair`` runs one window without and one with the
    change and returns each window's metrics), decides, and while the answer is ``inconclusive``
    measures ``batch`` more pairs up to ``max_pairs``. Returns the last decision and the pairs measured;
    an ``inconclusive`` answer at the end means: roll back (a change is never kept unshown).

    Raises:
        ValueError: ``initial_pairs`` < 1 or ``max_pairs`` < ``initial_pairs``; see :func:`decide`.
    """
    if initial_pairs < 1 or max_pairs < initial_pairs or batch < 1:
        raise ValueError(f"need 1 <= initial_pairs ({initial_pairs}) <= max_pairs ({max_pairs}) and batch >= 1")
    before: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}

    done = 0

    def more(n: int) -> None:  # keeps the lists aligned by pair: a metric missing in a window is NaN
        nonlocal done
        for _ in range(n):
            a, b = measure_pair()
            for k in {*a, *b, *before}:
                before.setdefault(k, [math.nan] * done).append(float(a.get(k, math.nan)))
                after.setdefault(k, [math.nan] * done).append(float(b.get(k, math.nan)))
            done += 1

    more(initial_pairs)
    pairs = initial_pairs
    while True:
        d = decide(before, after, guards, confidence=confidence, seed=seed, method=method, paired=paired)
        if d.decision != "inconclusive" or pairs >= max_pairs:
            return d, pairs
        step = min(batch, max_pairs - pairs)
        more(step)
        pairs += step


def pairs_for_window(window_s: float, trial_s: float, *, max_window_s: float | None = None) -> tuple[int, int]:
    """``(initial_pairs, max_pairs)`` for :func:`sequential` when each A or B window lasts ``trial_s``.

    One pair costs ``2 * trial_s``. The validation may use ``max_window_s`` (default ``window_s``): at
    most that many pairs, never more than needed: the first decision comes after
    :data:`DEFAULT_INITIAL_PAIRS` pairs (a clear degradation is rolled back early), and the window is
    used up only while the answer is inconclusive. E.g. 600 s of 30 s trials -> ``(4, 10)``; 600 s of
    15 s trials -> ``(4, 20)``. On the noise measured here the simulation needed up to
    :data:`DEFAULT_MAX_PAIRS` pairs; a window holding fewer decides with less power (more changes end
    inconclusive, i.e. rolled back), never less safely.

    Raises:
        ValueError: a non-positive duration, or a window too short for :data:`MIN_PAIRS` pairs.
    """
    longest = window_s if max_window_s is None else max(window_s, max_window_s)
    if not (window_s > 0 and trial_s > 0 and math.isfinite(longest)):
        raise ValueError(f"window ({window_s} s) and trial length ({trial_s} s) must be positive and finite")
    most = int(longest // (2.0 * trial_s))
    if most < MIN_PAIRS:
        raise ValueError(f"a {longest:g} s window holds {most} A/B pairs of {trial_s:g} s trials; need at least "
                         f"{MIN_PAIRS} (a window of at least {2 * MIN_PAIRS * trial_s:g} s or shorter trials)")
    return min(DEFAULT_INITIAL_PAIRS, most), most
