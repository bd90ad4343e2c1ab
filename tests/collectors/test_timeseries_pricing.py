"""timeseries reductions and unit prices."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collectors.pricing import UnitPrices, load_unit_prices
from collectors.timeseries import reduce_window, trim_warmup

SHARED_CSV = Path(__file__).resolve().parents[2] / "collectors" / "data" / "unit-prices.csv"


def _frame(n: int = 10, step_s: float = 0.5) -> pd.DataFrame:
    idx = pd.date_range("2026-01-01", periods=n, freq=pd.Timedelta(seconds=step_s), tz="UTC")
    return pd.DataFrame({"x": np.arange(n, dtype=float)}, index=idx)


def test_trim_warmup_datetime_index() -> None:
    df = _frame()
    out = trim_warmup(df, 1.0)
    assert list(out["x"]) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert len(df) == 10  # input untouched
    assert trim_warmup(df, 0).equals(df)
    assert trim_warmup(df, 100).empty


def test_trim_warmup_numeric_seconds_index_and_errors() -> None:
    df = pd.DataFrame({"rps": [1.0, 2.0, 3.0], "phase": ["warmup", "measure", "measure"]}, index=[0.0, 1.0, 2.0])
    assert list(trim_warmup(df, 1)["phase"]) == ["measure", "measure"]
    with pytest.raises(ValueError):
        trim_warmup(df, -1)
    with pytest.raises(TypeError):
        trim_warmup(pd.DataFrame({"a": [1]}, index=["x"]), 1)
    assert trim_warmup(df.iloc[0:0], 1).empty


def test_reduce_window_known_percentiles() -> None:
    df = pd.DataFrame({"lat": np.arange(1, 101, dtype=float), "phase": ["m"] * 100})
    out = reduce_window(df)
    assert out == pytest.approx({"lat_mean": 50.5, "lat_p50": 50.5, "lat_p95": 95.05, "lat_max": 100.0})
    assert "phase_mean" not in out
    assert reduce_window(df, ("p99", "min", "count", "p99.9"))["lat_p99"] == pytest.approx(99.01)


def test_reduce_window_is_nan_safe() -> None:
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [np.nan] * 3, "c": [1, 2, 3]})
    out = reduce_window(df, ("mean", "max", "count"))
    assert out["a_mean"] == 2.0 and out["a_max"] == 3.0 and out["a_count"] == 2
    assert math.isnan(out["b_mean"]) and out["b_count"] == 0
    assert out["c_mean"] == 2.0
    assert reduce_window(df.iloc[0:0], ("mean",)) == {"a_mean": pytest.approx(math.nan, nan_ok=True),
                                                    "b_mean": pytest.approx(math.nan, nan_ok=True),
                                                    "c_mean": pytest.approx(math.nan, nan_ok=True)}


def test_reduce_window_unknown_stat_lists_allowed() -> None:
    with pytest.raises(ValueError, match=r"unknown statistic 'p101'.*allowed: mean"):
        reduce_window(pd.DataFrame({"a": [1.0]}), ("p101",))
    with pytest.raises(ValueError, match="'avg'"):
        reduce_window(pd.DataFrame({"a": [1.0]}), ("avg",))
    with pytest.raises(TypeError):
        reduce_window(pd.DataFrame({"a": [1.0]}), "mean")


def _csv_value(profile: str, resource: str, model: str) -> float:
    with open(SHARED_CSV, newline="") as f:
        for row in csv.DictReader(f):
            if (row["profile"], row["resource"], row["pricing_model"]) == (profile, resource, model):
                return float(row["usd_per_unit_hour"])
    raise AssertionError("row not found")


def test_default_profile_matches_csv() -> None:
    p = load_unit_prices()
    assert isinstance(p, UnitPrices)
    assert p.cpu_usd_per_vcpu_hour == _csv_value("opencost-builtin-default", "cpu", "on_demand") == 0.021811
    assert p.memory_usd_per_gib_hour == _csv_value("opencost-builtin-default", "memory", "on_demand")
    assert "opencost/opencost" in p.source and "5f6533303e38" in p.source


def test_spot_and_other_profiles() -> None:
    assert load_unit_prices(model="spot").cpu_usd_per_vcpu_hour == 0.006543
    assert load_unit_prices(profile="opencost-azure-json").cpu_usd_per_vcpu_hour == 0.039


def test_unknown_profile_and_model_list_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown price profile 'aws'.*opencost-builtin-default.*opencost-oracle-json"):
        load_unit_prices(profile="aws")
    with pytest.raises(ValueError, match="unknown pricing model 'reserved'.*allowed: on_demand, spot"):
        load_unit_prices(model="reserved")
    with pytest.raises(ValueError, match="allowed: on_demand$"):
        load_unit_prices(profile="opencost-oracle-json", model="spot")


def test_packaged_csv_is_the_shared_copy_and_path_override(tmp_path: Path) -> None:
    shared = Path("/work/shared/datasets/pricing/unit-prices.csv")
    if shared.exists():
        assert shared.read_bytes() == SHARED_CSV.read_bytes()
    custom = tmp_path / "p.csv"
    custom.write_text(
        "profile,resource,pricing_model,usd_per_unit_hour,unit\n"
        "mine,cpu,on_demand,0.5,vCPU-hour\nmine,memory,on_demand,0.1,GiB-hour\n"
    )
    p = load_unit_prices(profile="mine", path=custom)
    assert (p.cpu_usd_per_vcpu_hour, p.memory_usd_per_gib_hour) == (0.5, 0.1)
