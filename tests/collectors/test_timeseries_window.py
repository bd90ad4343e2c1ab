"""collectors.store.SeriesStore (bounded ring buffer) and the stability filter of
collectors.timeseries (stable_intervals, steady_window) on synthetic series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collectors import store as store_mod
from collectors.store import SeriesStore
from collectors.timeseries import stable_intervals, steady_window

UNITS = {"cpu.util_pct": "%", "load.1m": "1"}
T0 = pd.Timestamp("2026-01-01T00:00:00Z")


# ---------------------------------------------------------------- SeriesStore
def test_store_appending_10x_max_rows_stays_bounded_and_keeps_newest():
    s = SeriesStore(max_rows=50, units=UNITS)
    nbytes = s.nbytes()
    for i in range(500):
        s.append({"cpu.util_pct": float(i), "load.1m": i / 10}, T0 + pd.Timedelta(seconds=i))
        assert s.nbytes() == nbytes  # never grows
    df = s.frame()
    assert len(df) == len(s) == 50 and s.appended == 500 and s.dropped == 450
    assert df["cpu.util_pct"].tolist() == [float(i) for i in range(450, 500)]  # newest, oldest first
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index.is_monotonic_increasing
    assert df.index[-1] == T0 + pd.Timedelta(seconds=499)
    assert df.attrs["units"] == UNITS


def test_store_partial_fill_missing_and_unknown_names():
    s = SeriesStore(max_rows=10, units=UNITS)
    s.append({"cpu.util_pct": 5.0, "disk.vda.util_pct": 1.0}, 1_700_000_000.0)  # epoch seconds
    s.append({"load.1m": 0.5}, pd.Timestamp("2026-01-01 00:00:01"))  # naive -> UTC
    df = s.frame()
    assert list(df.columns) == list(UNITS) and len(df) == 2
    assert np.isnan(df["load.1m"].iloc[0]) and np.isnan(df["cpu.util_pct"].iloc[1])
    assert df.index[0] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    assert s.unknown == {"disk.vda.util_pct": 1}


def test_store_rejects_bad_options():
    with pytest.raises(ValueError):
        SeriesStore(max_rows=0, units=UNITS)
    with pytest.raises(ValueError):
        SeriesStore(max_rows=5, units={})


def test_store_persists_csv_and_parquet(tmp_path, monkeypatch):
    s = SeriesStore(max_rows=5, units=UNITS)
    for i in range(8):
        s.append({"cpu.util_pct": float(i), "load.1m": 1.0}, T0 + pd.Timedelta(seconds=i))
    p = s.to_csv(tmp_path / "t.csv")
    back = pd.read_csv(p, index_col="time", parse_dates=["time"])
    assert back["cpu.util_pct"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert str(back.index.tz) == "UTC"
    units = pd.read_csv(tmp_path / "t.csv.units.csv", index_col="name")["unit"].to_dict()
    assert units == UNITS
    if store_mod.parquet_available():
        pq = s.save(tmp_path / "trial-1")
        assert pq.suffix == ".parquet"
        got = pd.read_parquet(pq)
        pd.testing.assert_frame_equal(got, s.frame(), check_freq=False)
        assert got.attrs.get("units") == UNITS
    monkeypatch.setattr(store_mod, "parquet_available", lambda: False)
    assert s.save(tmp_path / "trial-2").suffix == ".csv"
    with pytest.raises(RuntimeError, match="pyarrow"):
        s.to_parquet(tmp_path / "x.parquet")


# ---------------------------------------------------------------- stability
def ramp_then_plateau(*, ramp_s=30, plateau_s=60, noise=0.005, seed=1, datetime_index=True):
    rng = np.random.default_rng(seed)
    t = np.arange(ramp_s + plateau_s, dtype=float)
    y = np.where(t < ramp_s, 100.0 * t / ramp_s, 100.0) * (1 + noise * rng.standard_normal(t.size))
    idx = T0 + pd.to_timedelta(t, unit="s") if datetime_index else pd.Index(t, name="t_s")
    df = pd.DataFrame({"rps": y, "other": 1.0}, index=idx)
    df.attrs["units"] = {"rps": "1/s"}
    return df


@pytest.mark.parametrize("datetime_index", [True, False])
def test_plateau_kept_ramp_dropped(datetime_index):
    df = ramp_then_plateau(datetime_index=datetime_index)
    mask = stable_intervals(df, "rps", window_s=10, max_cv=0.03)
    assert mask.dtype == bool and mask.index.equals(df.index)
    assert not mask.iloc[:25].any()  # the steep part of the ramp is never stable
    assert mask.iloc[30:].all()  # the plateau is
    out = steady_window(df, "rps", warmup_s=5, window_s=10, max_cv=0.03)
    assert out.attrs["stable"] is True and out.attrs["cv"] < 0.03
    assert out.attrs["units"] == {"rps": "1/s"}
    assert out["rps"].min() > 90  # at most the last ramp samples, within a few %
    assert len(out) >= 60 and out.index[-1] == df.index[-1]
    assert "stable" not in df.attrs  # input untouched


def test_noisy_throughout_is_not_stable_and_returns_trimmed_frame():
    rng = np.random.default_rng(7)
    idx = T0 + pd.to_timedelta(np.arange(120), unit="s")
    df = pd.DataFrame({"rps": 100 * (1 + 0.5 * rng.standard_normal(120))}, index=idx)
    assert not stable_intervals(df, "rps", window_s=10, max_cv=0.05).any()
    out = steady_window(df, "rps", warmup_s=20, window_s=10, max_cv=0.05)
    assert out.attrs["stable"] is False and out.attrs["cv"] > 0.05
    assert len(out) == 100 and out.index[0] == idx[20]


def test_longest_of_two_stable_stretches_wins():
    y = np.concatenate([np.full(20, 50.0), np.linspace(0, 400, 20) % 97, np.full(40, 80.0)])
    df = pd.DataFrame({"v": y}, index=pd.Index(np.arange(y.size, dtype=float)))
    out = steady_window(df, "v", warmup_s=0, window_s=5, max_cv=0.01)
    assert out.attrs["stable"] and (out["v"] == 80.0).all() and len(out) == 40


def test_nan_ignored_zero_mean_and_short_windows():
    y = np.full(30, 10.0)
    y[12] = np.nan
    df = pd.DataFrame({"v": y}, index=pd.Index(np.arange(30, dtype=float)))
    assert stable_intervals(df, "v", window_s=5, max_cv=0.0).all()
    zeros = pd.DataFrame({"v": np.zeros(10)}, index=pd.Index(np.arange(10, dtype=float)))
    assert stable_intervals(zeros, "v", window_s=3, max_cv=0.0).all()
    # a series shorter than one window has no full window
    short = df.iloc[:3]
    out = steady_window(short, "v", warmup_s=0, window_s=10, max_cv=0.1)
    assert out.attrs["stable"] is False and len(out) == 3
    assert stable_intervals(df.iloc[:0], "v", window_s=5, max_cv=0.1).empty


def test_stability_argument_errors():
    df = ramp_then_plateau()
    with pytest.raises(KeyError, match="nope"):
        stable_intervals(df, "nope", window_s=5, max_cv=0.1)
    with pytest.raises(ValueError, match="window_s"):
        stable_intervals(df, "rps", window_s=0, max_cv=0.1)
    with pytest.raises(ValueError, match="max_cv"):
        steady_window(df, "rps", warmup_s=0, window_s=5, max_cv=-1)
    with pytest.raises(ValueError, match="sorted"):
        stable_intervals(df.iloc[::-1], "rps", window_s=5, max_cv=0.1)
    with pytest.raises(TypeError):
        stable_intervals(pd.DataFrame({"v": [1.0, 2.0]}, index=["a", "b"]), "v", window_s=5, max_cv=0.1)
