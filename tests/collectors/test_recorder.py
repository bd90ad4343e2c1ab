"""Recorder: MetricsSampler in a background thread into a bounded SeriesStore."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from collectors.metrics import MetricsSampler
from collectors.recorder import Recorder


def test_records_named_columns_with_units_at_the_interval():
    rec = Recorder(MetricsSampler(), interval_s=0.2)
    rec.start()
    time.sleep(1.1)
    df = rec.stop()
    assert 3 <= len(df) <= 7, len(df)
    assert "cpu.util_pct" in df.columns and df.attrs["units"]["cpu.util_pct"] == "%"
    assert df["cpu.util_pct"].notna().all()
    assert df.index.is_monotonic_increasing
    assert rec.stop().equals(df)  # idempotent


def test_memory_is_bounded_by_max_rows():
    rec = Recorder(MetricsSampler(), interval_s=0.1, max_rows=3)
    rec.start()
    time.sleep(0.9)
    df = rec.stop()
    assert len(df) == 3
    assert df.attrs["dropped"] >= 2


def test_a_vanished_target_is_reported_not_raised():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    try:
        rec = Recorder(MetricsSampler(targets=[child.pid]), interval_s=0.2)
        rec.start()
        child.wait(timeout=10)
        time.sleep(0.6)
        df = rec.stop()
    finally:
        child.kill()
        child.wait()
    label = f"target.pid{child.pid}"
    assert label in df.attrs["vanished"]
    assert "exited" in df.attrs["vanished"][label]
    assert f"{label}.rss_bytes" in df.columns  # recorded while it lived


@pytest.mark.parametrize("interval", [0, -1, 7200])
def test_bad_interval_is_refused(interval):
    with pytest.raises(ValueError, match="interval_s must be in"):
        Recorder(MetricsSampler(), interval_s=interval)


def test_a_window_shorter_than_the_interval_still_gets_one_sample():
    rec = Recorder(MetricsSampler(), interval_s=5.0)
    rec.start()
    time.sleep(0.4)
    df = rec.stop()
    assert len(df) == 1 and df["cpu.util_pct"].notna().all()  # the partial interval, as a rate
    assert df.attrs["started"] <= df.index[0]
