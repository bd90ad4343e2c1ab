"""HostSampler: real short runs, and a recorded/fake procfs tree."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from collectors.errors import CollectorError
from collectors.host import METRICS, HostSampler, MetricInfo


def test_short_run_has_declared_columns_and_sane_values() -> None:
    sampler = HostSampler(interval_s=0.1)
    sampler.start()
    t_end = time.monotonic() + 0.6
    while time.monotonic() < t_end:  # bounded busy work so CPU shares are not all idle
        sum(range(10_000))
    df = sampler.stop()
    assert len(df) >= 3
    assert list(df.columns) == list(METRICS)
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index.is_monotonic_increasing
    assert (df.dtypes == "float64").all()
    rates = [c for c, info in METRICS.items() if info.kind == "rate"]
    assert (df[rates].fillna(0) >= 0).all().all()
    pct = [c for c, info in METRICS.items() if info.unit == "%"]
    assert ((df[pct].fillna(0) >= 0) & (df[pct].fillna(0) <= 100.0 + 1e-6)).all().all()
    assert (df["cpu_util_pct"] > 0).any()
    assert (df["ctx_switches_per_s"] > 0).any()
    assert (df["mem_used_bytes"] > 0).all() and (df["mem_available_bytes"] > 0).all()


def test_every_column_declares_unit_and_kind() -> None:
    for name, info in METRICS.items():
        assert isinstance(info, MetricInfo)
        assert info.unit and info.kind in ("gauge", "rate") and info.source.startswith("psutil.")
        assert name.endswith("_per_s") == (info.kind == "rate")


def test_start_twice_and_stop_without_start_raise() -> None:
    sampler = HostSampler(interval_s=0.05)
    with pytest.raises(RuntimeError):
        sampler.stop()
    sampler.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            sampler.start()
        assert sampler._thread is not None and sampler._thread.daemon
    finally:
        sampler.stop()
    assert not sampler._thread.is_alive()
    with pytest.raises(RuntimeError):
        sampler.start()
    with pytest.raises(ValueError):
        HostSampler(interval_s=0)


def _fake_proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    root.mkdir()
    for name in ("stat", "meminfo", "loadavg", "vmstat", "uptime"):
        shutil.copy(f"/proc/{name}", root / name)
    return root  # no net/dev


def test_swappable_proc_root_and_missing_source_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _fake_proc(tmp_path)  # no net/dev: network columns NaN, reported once
    sampler = HostSampler(interval_s=10, proc_root=root)
    with caplog.at_level(logging.WARNING, logger="collectors.host"):
        sampler._prev = sampler._read()
        for _ in range(3):
            sampler.sample_once()
    net_warnings = [r for r in caplog.records if "net_io_counters" in r.getMessage()]
    assert len(net_warnings) == 1
    df = sampler._frame()
    assert len(df) == 3
    assert df["net_recv_bytes_per_s"].isna().all() and df["net_sent_bytes_per_s"].isna().all()
    # the recorded files do not change: counters give zero rates, gauges the recorded value
    assert (df["ctx_switches_per_s"] == 0).all()
    assert df["mem_used_bytes"].notna().all()


def test_unreadable_proc_root_is_a_collector_error(tmp_path: Path) -> None:
    sampler = HostSampler(interval_s=0.1, proc_root=tmp_path / "nowhere")
    with pytest.raises(CollectorError, match="no host metrics"):
        sampler.start()
