"""Reduce collected time series to the figures a trial reports.

* :func:`trim_warmup` drops the warm-up rows at the start of a series.
* :func:`reduce_window` reduces every numeric column to ``{column}_{stat}``
  floats, ignoring NaN.
* :func:`stable_intervals` marks the samples lying inside a stable window of one
  metric (coefficient of variation under a threshold).
* :func:`steady_window` trims the warm-up, then keeps the longest stable stretch
  (``attrs["stable"]`` says whether one was found).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["trim_warmup", "reduce_window", "stable_intervals", "steady_window", "ALLOWED_STATS"]

ALLOWED_STATS = ("mean", "median", "min", "max", "std", "last", "count", "p<q> (0 <= q <= 100, e.g. p95, p99.9)")
_PCT = re.compile(r"^p(\d+(?:\.\d+)?)$")


def trim_warmup(df: pd.DataFrame, warmup_s: float) -> pd.DataFrame:
    """Drop the rows of the first ``warmup_s`` seconds of ``df``.

    The clock is the index: a ``DatetimeIndex`` (e.g. :class:`collectors.recorder.Recorder`
    output) or a numeric index in seconds (e.g. a workload timeline's
    ``t_s``). Rows whose index is earlier than ``first index + warmup_s`` are
    dropped; the rest is returned as a new frame (the input is not changed).

    Raises:
        ValueError: ``warmup_s`` is negative or not finite.
        TypeError: the index is neither datetime-like nor numeric.
    """
    if not (isinstance(warmup_s, (int, float)) and math.isfinite(warmup_s) and warmup_s >= 0):
        raise ValueError(f"warmup_s must be a finite number >= 0, got {warmup_s!r}")
    if df.empty:
        return df.copy()
    idx = df.index
    if isinstance(idx, pd.DatetimeIndex):
        cutoff = idx.min() + pd.Timedelta(seconds=warmup_s)
    elif pd.api.types.is_numeric_dtype(idx.dtype):
        cutoff = idx.min() + warmup_s
    else:
        raise TypeError(f"trim_warmup needs a DatetimeIndex or a numeric index in seconds, got {type(idx).__name__}")
    return df.loc[idx >= cutoff].copy()


def _stat(values: np.ndarray, stat: str) -> float:
    if stat == "count":
        return float(values.size)
    if values.size == 0:
        return math.nan
    if stat == "mean":
        return float(values.mean())
    if stat == "median":
        return float(np.median(values))
    if stat == "min":
        return float(values.min())
    if stat == "max":
        return float(values.max())
    if stat == "std":
        return float(values.std(ddof=1)) if values.size > 1 else math.nan
    if stat == "last":
        return float(values[-1])
    m = _PCT.match(stat)
    assert m is not None  # checked by _check_stats
    return float(np.percentile(values, float(m.group(1))))


def _check_stats(stats: Sequence[str]) -> None:
    if isinstance(stats, str):
        raise TypeError("stats must be a sequence of names, e.g. ('mean', 'p95'), not a string")
    for stat in stats:
        m = _PCT.match(stat)
        known = stat in ALLOWED_STATS[:-1] or (m is not None and 0.0 <= float(m.group(1)) <= 100.0)
        if not known:
            raise ValueError(f"unknown statistic {stat!r}; allowed: {', '.join(ALLOWED_STATS)}")


def reduce_window(df: pd.DataFrame, stats: Sequence[str] = ("mean", "p50", "p95", "max")) -> dict[str, float]:
    """Reduce every numeric column of ``df`` to ``{"{column}_{stat}": float}``.

    NaN values are ignored; a column with no finite value gives NaN for every
    statistic (``count`` gives 0). Percentiles use linear interpolation
    (numpy's default): on 1..100, ``p50`` is 50.5 and ``p95`` is 95.05.
    Non-numeric columns (e.g. a ``phase`` label) are skipped; boolean columns
    count as 0/1.

    Raises:
        ValueError: an unknown statistic (the message lists the allowed ones).
        TypeError: ``stats`` is a bare string.
    """
    _check_stats(stats)
    out: dict[str, float] = {}
    for col in df.columns:
        series = df[col]
        if isinstance(series.dtype, pd.CategoricalDtype) or not (
            pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)
        ):
            continue
        values = series.to_numpy(dtype=float, na_value=np.nan)
        values = values[np.isfinite(values)]
        for stat in stats:
            out[f"{col}_{stat}"] = _stat(values, stat)
    return out


def _clock_ns(idx: pd.Index) -> np.ndarray:
    """The index as int64 nanoseconds (DatetimeIndex, or numeric seconds)."""
    if isinstance(idx, pd.DatetimeIndex):
        return idx.as_unit("ns").asi8.astype(np.int64)  # resolution varies (pandas >= 2): force ns
    if pd.api.types.is_numeric_dtype(idx.dtype):
        return np.round(np.asarray(idx, dtype=float) * 1e9).astype(np.int64)
    raise TypeError(f"needs a DatetimeIndex or a numeric index in seconds, got {type(idx).__name__}")


def _check_window(window_s: float, max_cv: float) -> None:
    if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a finite number > 0, got {window_s!r}")
    if not (isinstance(max_cv, (int, float)) and math.isfinite(max_cv) and max_cv >= 0):
        raise ValueError(f"max_cv must be a finite number >= 0, got {max_cv!r}")


def stable_intervals(df: pd.DataFrame, column: str, *, window_s: float, max_cv: float) -> pd.Series:
    """Mark the samples of ``df`` that lie inside a stable window of ``column``.

    Every sample ``j`` ends a trailing time window ``(t_j - window_s, t_j]``
    (the clock is the index, as in :func:`trim_warmup`). A window counts only
    when it is FULL (its first sample is at most one median sample spacing after
    ``t_j - window_s``, so the first few samples never form a short window on
    their own) and holds at least 2 finite values. It is stable when the
    coefficient of variation of ``column`` inside it, ``std(ddof=1) / |mean|``,
    is ``<= max_cv`` (a mean of 0 is stable only with std 0). NaN values are
    ignored by the statistics. Every sample inside at least one stable window
    is marked True.

    Returns:
        A boolean Series aligned on ``df.index`` (all False when nothing is stable;
        empty for an empty frame).

    Raises:
        KeyError: ``column`` is not in ``df``.
        ValueError: ``window_s`` <= 0, ``max_cv`` < 0 (or not finite), or the index is not increasing.
        TypeError: the index is neither datetime-like nor numeric.
    """
    _check_window(window_s, max_cv)
    if column not in df.columns:
        raise KeyError(f"no column {column!r}; columns: {', '.join(map(str, df.columns))}")
    n = len(df)
    if n == 0:
        return pd.Series(np.zeros(0, dtype=bool), index=df.index, name=column)
    t = _clock_ns(df.index)
    if n > 1 and np.any(np.diff(t) < 0):
        raise ValueError("the index must be sorted in increasing time order")
    values = df[column].to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(values)
    v0 = np.where(finite, values, 0.0)
    # prefix sums give every window's count, sum and sum of squares in O(n)
    c_cnt = np.concatenate(([0], np.cumsum(finite)))
    c_sum = np.concatenate(([0.0], np.cumsum(v0)))
    c_sq = np.concatenate(([0.0], np.cumsum(v0 * v0)))
    w_ns = int(round(window_s * 1e9))
    start = np.searchsorted(t, t - w_ns, side="right")  # first sample inside (t_j - w, t_j]
    end = np.arange(n) + 1  # exclusive
    cnt = c_cnt[end] - c_cnt[start]
    tot = c_sum[end] - c_sum[start]
    sq = c_sq[end] - c_sq[start]
    spacing = float(np.median(np.diff(t))) if n > 1 else 0.0
    full = (t[start] - (t - w_ns)) <= spacing + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot / cnt
        var = np.maximum(sq - cnt * mean * mean, 0.0) / (cnt - 1)
        std = np.sqrt(var)
        # guard the rounding noise of the prefix-sum variance on constant data
        std = np.where(var <= (1e-12 * mean * mean), 0.0, std)
        cv = np.where(mean != 0.0, std / np.abs(mean), np.where(std == 0.0, 0.0, np.inf))
    good = full & (cnt >= 2) & (cv <= max_cv)
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, start[good], 1)
    np.add.at(marks, end[good], -1)
    mask = np.cumsum(marks[:-1]) > 0
    return pd.Series(mask, index=df.index, name=column)


def steady_window(
    df: pd.DataFrame, column: str, *, warmup_s: float, window_s: float, max_cv: float
) -> pd.DataFrame:
    """The steady-state part of ``df``: warm-up trimmed, then the longest stable stretch.

    :func:`trim_warmup` drops the first ``warmup_s`` seconds; :func:`stable_intervals`
    marks the rest; the longest run of consecutive marked rows (by time span,
    then by row count, the earliest on a tie) is returned. When no sample is
    stable the TRIMMED frame is returned whole so callers still get data, and
    they must say so: ``attrs["stable"]`` is ``True`` or ``False`` on the
    result, ``attrs["cv"]`` is the coefficient of variation of ``column`` over
    the returned rows (NaN with fewer than 2 finite values). Other ``attrs``
    (e.g. ``units``) are kept. The input is not changed.

    Raises:
        KeyError, ValueError, TypeError: as :func:`trim_warmup` and :func:`stable_intervals`.
    """
    _check_window(window_s, max_cv)
    trimmed = trim_warmup(df, warmup_s)
    mask = stable_intervals(trimmed, column, window_s=window_s, max_cv=max_cv).to_numpy()
    out = trimmed
    stable = bool(mask.any())
    if stable:
        t = _clock_ns(trimmed.index)
        edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # stops exclusive
        best = max(range(len(starts)), key=lambda k: (t[stops[k] - 1] - t[starts[k]], stops[k] - starts[k], -k))
        out = trimmed.iloc[starts[best]:stops[best]].copy()
    out = out.copy()
    out.attrs = dict(df.attrs)
    vals = out[column].to_numpy(dtype=float, na_value=np.nan)
    vals = vals[np.isfinite(vals)]
    if vals.size >= 2:
        mean, std = float(vals.mean()), float(vals.std(ddof=1))
        cv = std / abs(mean) if mean != 0 else (0.0 if std == 0 else math.inf)
    else:
        cv = math.nan
    out.attrs["stable"] = stable
    out.attrs["cv"] = cv
    return out
