"""Reduce collected time series to the figures a trial reports.

* :func:`trim_warmup` drops the warm-up rows at the start of a series.
* :func:`reduce_window` reduces every numeric column to ``{column}_{stat}``
  floats, ignoring NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["trim_warmup", "reduce_window", "ALLOWED_STATS"]

ALLOWED_STATS = ("mean", "median", "min", "max", "std", "last", "count", "p<q> (0 <= q <= 100, e.g. p95, p99.9)")
_PCT = re.compile(r"^p(\d+(?:\.\d+)?)$")


def trim_warmup(df: pd.DataFrame, warmup_s: float) -> pd.DataFrame:
    """Drop the rows of the first ``warmup_s`` seconds of ``df``.

    The clock is the index: a ``DatetimeIndex`` (e.g. :class:`HostSampler`
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
