"""Memory over time: RSS / PSS / USS from ``/proc/PID/smaps_rollup``, and a growth trend flagged as a possible
leak only when the growth is steady.

:class:`MemorySampler` is ticked by the sampler during a window (about once a second); its samples go into
``meta.memory`` as ``{"t": seconds since the window's start, "rss_mb", "pss_mb", "uss_mb", "swap_mb"}``.
:func:`leak_trend` fits a least-squares line to USS (RSS when USS is absent) over time and calls it a
"possible leak" only when all of these hold: at least ``min_points`` samples over at least ``min_span_s``,
slope above ``min_slope_mb_h``, total growth above ``min_growth_mb``, a good fit (R² >= ``min_r2``) and
steady growth: each quarter of the span (mean of its samples) above the one before by at least a quarter of
the fitted growth per quarter. A process that allocates and frees (a sawtooth), or grew once and then
stayed (a step), is not flagged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemorySampler", "Trend", "leak_trend", "read_rollup"]

_FIELDS = {"Rss": "rss_mb", "Pss": "pss_mb", "Swap": "swap_mb"}


def read_rollup(pid: int, *, proc: Path = Path("/proc")) -> dict[str, float] | None:
    """``{"rss_mb", "pss_mb", "uss_mb", "swap_mb"}`` of ``pid`` now (USS = private clean + private dirty);
    None when the process is gone or the file unreadable."""
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text(encoding="ascii")
    except OSError:
        return None
    kb: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            kb[key.strip()] = int(parts[0])
    if "Rss" not in kb:
        return None
    out = {name: round(kb.get(key, 0) / 1024.0, 3) for key, name in _FIELDS.items()}
    out["uss_mb"] = round((kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024.0, 3)
    return out


class MemorySampler:
    """Samples of one process's memory, timed from the sampler's creation."""

    def __init__(self, pid: int, *, proc: Path = Path("/proc")) -> None:
        self.pid = pid
        self.proc = proc
        self.t0 = time.monotonic()
        self.samples: list[dict[str, float]] = []

    def sample(self) -> None:
        """One sample now (nothing when the process is gone)."""
        row = read_rollup(self.pid, proc=self.proc)
        if row is not None:
            self.samples.append({"t": round(time.monotonic() - self.t0, 3), **row})


@dataclass(frozen=True)
class Trend:
    """A fitted memory trend: ``slope_mb_h`` (MB per hour), ``r2`` (fit quality), ``growth_mb`` (fitted
    growth over the span), ``points``, ``span_s``, ``rising`` (share of the quarter-to-quarter steps that
    rose) and the verdict."""

    slope_mb_h: float
    r2: float
    growth_mb: float
    points: int
    span_s: float
    rising: float
    possible_leak: bool
    metric: str

    @property
    def verdict(self) -> str:
        """One line: "possible leak: +X MB/h (R² Y, N samples over S s)" or "no steady growth ..."."""
        what = (f"{self.slope_mb_h:+.1f} MB/h of {self.metric} (R² {self.r2:.2f}, {self.points} samples over "
                f"{self.span_s:.0f} s)")
        return f"possible leak: {what}" if self.possible_leak else f"no steady growth: {what}"


def _quarters_rising(pts: list[tuple[float, float]], per_quarter: float) -> float:
    """The share of the 3 quarter-to-quarter steps (means of 4 consecutive quarters) that rose by at least a
    quarter of the fitted growth per quarter."""
    n = len(pts)
    means = [sum(y for _, y in pts[i * n // 4:(i + 1) * n // 4]) / max(1, len(pts[i * n // 4:(i + 1) * n // 4]))
             for i in range(4)]
    return sum(1 for a, b in zip(means, means[1:]) if b - a >= 0.25 * per_quarter) / 3


def leak_trend(samples: Sequence[dict[str, float]], *, min_points: int = 8, min_span_s: float = 2.0,
               min_slope_mb_h: float = 1.0, min_growth_mb: float = 1.0, min_r2: float = 0.8) -> Trend:
    """The trend of ``samples`` (``meta.memory`` rows, possibly of several windows with ``t`` continuing);
    see the module docstring for when it is a possible leak."""
    metric = "uss_mb" if samples and all("uss_mb" in s for s in samples) else "rss_mb"
    pts = [(float(s["t"]), float(s[metric])) for s in samples if "t" in s and metric in s]
    n = len(pts)
    if n < 2:
        return Trend(0.0, 0.0, 0.0, n, 0.0, 0.0, False, metric)
    mean_t = sum(t for t, _ in pts) / n
    mean_y = sum(y for _, y in pts) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in pts)
    sxy = sum((t - mean_t) * (y - mean_y) for t, y in pts)
    syy = sum((y - mean_y) ** 2 for _, y in pts)
    slope = sxy / sxx if sxx > 0 else 0.0  # MB per second
    r2 = (sxy * sxy) / (sxx * syy) if sxx > 0 and syy > 0 else 0.0
    span = pts[-1][0] - pts[0][0]
    growth = slope * span
    rising = _quarters_rising(pts, growth / 4) if n >= 4 and growth > 0 else 0.0
    leak = (n >= min_points and span >= min_span_s and slope * 3600 >= min_slope_mb_h and growth >= min_growth_mb
            and r2 >= min_r2 and rising == 1.0)
    return Trend(round(slope * 3600, 3), round(r2, 4), round(growth, 3), n, round(span, 3), round(rising, 3),
                 leak, metric)
