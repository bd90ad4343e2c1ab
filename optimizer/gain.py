"""How much better a configuration is than the defaults and than other candidates, measured in one run.

A gain run measures several *arms* (the defaults, each stock TuneD profile that applies, novatune's
choice) in rounds; each round measures every arm once, in a shuffled order, so that a drift of the machine
hits all arms alike. The comparison of arm ``a`` with a reference ``b`` is paired by round: the per-round
log-ratio ``log(a / b)`` (negated for a metric to minimize, so positive is always better). Its mean over
the rounds, back-transformed, is the gain in percent; its Student-t interval (``1 - alpha``), back-
transformed, is the interval; the p-value is the exact sign-flip permutation test of the same log-ratios
(no normality assumed; with ``n`` rounds the smallest possible p-value is ``2 / 2**n``).

A difference counts when the interval excludes zero. "At least as good as" another arm means the interval
of the difference does not lie entirely below zero. A null result is reported as one (:func:`verdict`).

Pure: plain numbers in and out.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

__all__ = ["Comparison", "arm_order", "compare", "verdict"]


@dataclass(frozen=True)
class Comparison:
    """Arm ``arm`` against ``reference`` on ``metric``: the gain (positive = better) with its interval."""

    arm: str
    reference: str
    metric: str
    direction: str
    rounds: int
    gain_pct: float
    low_pct: float
    high_pct: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.low_pct > 0 or self.high_pct < 0

    @property
    def better(self) -> bool:
        return self.low_pct > 0

    @property
    def worse(self) -> bool:
        return self.high_pct < 0

    def text(self) -> str:
        return (f"{self.gain_pct:+.1f} % [{self.low_pct:+.1f}, {self.high_pct:+.1f}] vs {self.reference} "
                f"(p={self.p_value:.3g}, {self.rounds} rounds)")

    def as_dict(self) -> dict[str, object]:
        return {"arm": self.arm, "reference": self.reference, "metric": self.metric, "direction": self.direction,
                "rounds": self.rounds, "gain_pct": round(self.gain_pct, 3), "low_pct": round(self.low_pct, 3),
                "high_pct": round(self.high_pct, 3), "p_value": round(self.p_value, 6),
                "significant": self.significant}


def arm_order(arms: Sequence[str], rounds: int, seed: int | None = None) -> list[tuple[int, str]]:
    """``(round, arm)``: every arm once per round, in an order shuffled per round."""
    if rounds < 2:
        raise ValueError(f"rounds must be at least 2 (a paired interval needs two), got {rounds}")
    if len(set(arms)) != len(arms) or not arms:
        raise ValueError(f"arms must be distinct and not empty, got {list(arms)}")
    rng = random.Random(seed)
    out = []
    for r in range(rounds):
        order = list(arms)
        rng.shuffle(order)
        out += [(r, a) for a in order]
    return out


def _sign_flip_p(x: Sequence[float]) -> float:
    """Two-sided exact sign-flip test of mean(x) == 0 (sampled with 20 000 flips above 16 rounds)."""
    n = len(x)
    observed = abs(sum(x))
    flips: Iterable[Sequence[int]]
    if n <= 16:
        flips, total = itertools.product((1, -1), repeat=n), 2 ** n
    else:
        rng = random.Random(0)
        total = 20_000
        flips = ([rng.choice((1, -1)) for _ in range(n)] for _ in range(total))
    hits = sum(abs(sum(s * v for s, v in zip(signs, x))) >= observed - 1e-12 for signs in flips)
    return hits / total


def compare(values: Mapping[str, Mapping[int, float]], arm: str, reference: str, *, metric: str,
            direction: str, alpha: float = 0.05) -> Comparison:
    """``arm`` against ``reference``: ``values[arm][round]`` is the arm's figure in that round (a round
    where either is missing or not positive is skipped).

    Raises:
        ValueError: fewer than two paired rounds, a bad direction or alpha.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a, b = values.get(arm, {}), values.get(reference, {})
    sign = 1.0 if direction == "maximize" else -1.0
    x = [sign * math.log(a[r] / b[r]) for r in sorted(set(a) & set(b))
         if math.isfinite(a[r]) and math.isfinite(b[r]) and a[r] > 0 and b[r] > 0]
    if len(x) < 2:
        raise ValueError(f"{arm} vs {reference}: {len(x)} paired rounds with a positive {metric}; at least 2 needed")
    mean = statistics.fmean(x)
    sd = statistics.stdev(x)
    half = float(stats.t.ppf(1 - alpha / 2, len(x) - 1)) * sd / math.sqrt(len(x))

    def pct(v: float) -> float:
        return (math.exp(v) - 1) * 100

    return Comparison(arm, reference, metric, direction, len(x), pct(mean), pct(mean - half), pct(mean + half),
                      _sign_flip_p(x))


def verdict(vs_defaults: Comparison, vs_best_profile: Comparison | None, *, identical: bool = False) -> str:
    """One sentence for a report: the gain over the defaults, or that there is none, and how the choice
    stands against the best stock profile.

    ``identical``: the arm sets nothing the defaults do not (a study that kept the values it found). It is
    the defaults, so it can be neither better nor worse; their measured difference is an A/A check of the
    run, and one whose interval excludes zero says the run's measurement is biased (a window's state
    carrying into the next, say), which the sentence says too."""
    if identical:
        g, lo, hi = vs_defaults.gain_pct, vs_defaults.low_pct, vs_defaults.high_pct
        text = (f"{vs_defaults.arm} keeps the defaults (its choice changes nothing): no gain and no loss; measured "
                f"side by side, the two identical configurations came out {g:+.1f} % [{lo:+.1f}, {hi:+.1f}] apart")
        if vs_defaults.significant:
            text += (" -- a significant difference between identical configurations: this run's measurement is "
                     "biased beyond its intervals, and its other comparisons are not to be trusted either")
    elif vs_defaults.better:
        text = f"{vs_defaults.arm} is {vs_defaults.gain_pct:+.1f} % better than the defaults on {vs_defaults.metric}"
    elif vs_defaults.worse:
        text = f"{vs_defaults.arm} is worse than the defaults on {vs_defaults.metric} ({vs_defaults.gain_pct:+.1f} %)"
    else:
        text = (f"no gain shown: {vs_defaults.arm} is within the noise of the defaults on {vs_defaults.metric} "
                f"(a null result: {vs_defaults.gain_pct:+.1f} %, interval [{vs_defaults.low_pct:+.1f}, "
                f"{vs_defaults.high_pct:+.1f}] includes zero)")
    if vs_best_profile is None:
        return text + "; no stock profile applies"
    ref = vs_best_profile.reference
    if vs_best_profile.worse:
        return text + f"; worse than the best stock profile {ref} ({vs_best_profile.gain_pct:+.1f} %)"
    if vs_best_profile.better:
        return text + f"; better than the best stock profile {ref} ({vs_best_profile.gain_pct:+.1f} %)"
    return text + f"; as good as the best stock profile {ref} (difference within the noise)"
