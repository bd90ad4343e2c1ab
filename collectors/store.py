"""A bounded, pandas-facing store for sampled metrics.

:class:`SeriesStore` keeps the newest ``max_rows`` samples in a RING BUFFER of
numpy arrays (one float64 array per column plus an int64 array of UTC
nanosecond timestamps). Once full, every append overwrites the oldest row: the
oldest samples are DROPPED, never downsampled. Memory is therefore bounded by
``max_rows * (columns + 1) * 8`` bytes however long the run is. The column set
is fixed by ``units`` (declared up front); a sample value for an undeclared
name is ignored and counted in :attr:`SeriesStore.unknown` (never an error), a
declared name missing from a sample is NaN for that row.

Usage::

    store = SeriesStore(max_rows=7200, units={"cpu.util_pct": "%", "load.1m": "1"})
    store.append(sampler.sample())                # timestamp defaults to now (UTC)
    df = store.frame()                            # UTC DatetimeIndex, df.attrs["units"]
    path = store.save(run_dir / "trial-3")        # .parquet if pyarrow imports, else .csv
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SeriesStore", "parquet_available"]


def parquet_available() -> bool:
    """True when pyarrow is importable (pandas' parquet engine used here)."""
    return importlib.util.find_spec("pyarrow") is not None


def _to_ns(ts: dt.datetime | pd.Timestamp | float | int | None) -> int:
    """A timestamp as UTC nanoseconds since the epoch (naive datetimes are taken as UTC;
    numbers are seconds since the epoch)."""
    if ts is None:
        return pd.Timestamp.now(tz="UTC").value
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        if not math.isfinite(ts):
            raise ValueError(f"timestamp must be finite, got {ts!r}")
        return int(round(float(ts) * 1e9))
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC").value


class SeriesStore:
    """Ring buffer of the newest ``max_rows`` samples (see module doc).

    Args:
        max_rows: how many samples are kept (oldest dropped past it).
        units: metric name -> unit (e.g. ``{"cpu.util_pct": "%"}``); fixes the columns
            and their order, and is copied into ``frame().attrs["units"]``.

    Raises:
        ValueError: ``max_rows`` < 1 or ``units`` is empty.
    """

    def __init__(self, *, max_rows: int = 7200, units: Mapping[str, str]) -> None:
        if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
            raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
        if not units:
            raise ValueError("units must declare at least one metric name -> unit")
        self.max_rows = max_rows
        self.units: dict[str, str] = {str(k): str(v) for k, v in units.items()}
        self._cols = list(self.units)
        self._pos = {name: i for i, name in enumerate(self._cols)}
        self._t = np.zeros(max_rows, dtype=np.int64)
        self._v = np.full((max_rows, len(self._cols)), np.nan, dtype=np.float64)
        self._next = 0  # slot the next append writes
        self._count = 0  # rows held (<= max_rows)
        self.appended = 0  # rows ever appended
        self.unknown: dict[str, int] = {}  # undeclared names seen -> how often

    def __len__(self) -> int:
        return self._count

    @property
    def dropped(self) -> int:
        """Rows overwritten because the buffer was full."""
        return self.appended - self._count

    def nbytes(self) -> int:
        """Bytes held by the buffers (constant after construction)."""
        return int(self._t.nbytes + self._v.nbytes)

    def append(self, values: Mapping[str, float], ts: dt.datetime | pd.Timestamp | float | None = None) -> None:
        """Add one sample. ``ts``: datetime (naive = UTC), pandas Timestamp, epoch seconds, or None (now).

        Raises:
            ValueError: a non-finite numeric timestamp.
        """
        t_ns = _to_ns(ts)
        row = np.full(len(self._cols), np.nan, dtype=np.float64)
        for name, value in values.items():
            i = self._pos.get(name)
            if i is None:
                self.unknown[name] = self.unknown.get(name, 0) + 1
                continue
            try:
                row[i] = float(value)
            except (TypeError, ValueError):
                row[i] = np.nan
        self._t[self._next] = t_ns
        self._v[self._next] = row
        self._next = (self._next + 1) % self.max_rows
        self._count = min(self._count + 1, self.max_rows)
        self.appended += 1

    def _order(self) -> np.ndarray:
        """Slot indices, oldest first."""
        if self._count < self.max_rows:
            return np.arange(self._count)
        return (np.arange(self.max_rows) + self._next) % self.max_rows

    def frame(self) -> pd.DataFrame:
        """The held samples, oldest first: UTC ``DatetimeIndex`` named ``time``, one float
        column per declared metric, ``attrs["units"]`` = the declared units (a copy)."""
        order = self._order()
        index = pd.DatetimeIndex(pd.to_datetime(self._t[order], unit="ns", utc=True), name="time")
        df = pd.DataFrame(self._v[order].copy(), index=index, columns=list(self._cols))
        df.attrs["units"] = dict(self.units)
        return df

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`frame` to ``path`` as parquet (units stored in the file's pandas metadata).

        Raises:
            RuntimeError: pyarrow is not importable (use :meth:`save` to fall back to CSV).
            OSError: the file cannot be written.
        """
        if not parquet_available():
            raise RuntimeError("parquet needs pyarrow, which is not importable; use to_csv or save")
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.frame().to_parquet(p, engine="pyarrow")
        return p

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`frame` to ``path`` as CSV (ISO UTC index column ``time``); the units
        go into a ``<path>.units.csv`` sidecar (``name,unit``) since CSV has no metadata.

        Raises:
            OSError: the file cannot be written.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(p, index_label="time")
        pd.Series(self.units, name="unit").rename_axis("name").to_csv(p.with_name(p.name + ".units.csv"))
        return p

    def save(self, stem: str | os.PathLike[str]) -> Path:
        """Persist a trial: ``<stem>.parquet`` when pyarrow imports, else ``<stem>.csv``; returns the path.

        Raises:
            OSError: the file cannot be written.
        """
        s = Path(stem)
        if parquet_available():
            return self.to_parquet(s.with_name(s.name + ".parquet"))
        return self.to_csv(s.with_name(s.name + ".csv"))
