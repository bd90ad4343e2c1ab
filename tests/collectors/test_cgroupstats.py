"""Cgroup CPU/throttling reader on fake v1 and v2 directories."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from collectors.cgroupstats import CgroupCpuReader, CgroupCpuSample, cpu_delta, read_cpu_stats
from collectors.errors import CollectorError


def _v1(tmp_path: Path, *, periods: int, throttled: int, t_ns: int, usage: int | None) -> Path:
    d = tmp_path / "cpu" / "novatune-x"
    d.mkdir(parents=True, exist_ok=True)
    (d / "cpu.stat").write_text(
        f"nr_periods {periods}\nnr_throttled {throttled}\nthrottled_time {t_ns}\nnr_bursts 0\nburst_time 0\n"
    )
    if usage is not None:
        (d / "cpuacct.usage").write_text(f"{usage}\n")
    return d


def test_v1_co_mounted_delta() -> None:
    before = CgroupCpuSample(10.0, 1, 1_000_000_000, 100, 10, 500_000_000)
    after = CgroupCpuSample(12.0, 1, 1_500_000_000, 120, 25, 1_500_000_000)
    d = cpu_delta(before, after)
    assert d.wall_s == 2.0 and d.cpu_s == pytest.approx(0.5) and d.cpu_vcpus == pytest.approx(0.25)
    assert d.periods == 20 and d.throttled_periods == 15 and d.throttled_ratio == pytest.approx(0.75)
    assert d.throttled_s == pytest.approx(1.0)


def test_v1_reader_reads_files(tmp_path: Path) -> None:
    d = _v1(tmp_path, periods=61, throttled=54, t_ns=7_288_809_009, usage=123)
    s = CgroupCpuReader(d).read()
    assert (s.version, s.usage_ns, s.nr_periods, s.nr_throttled, s.throttled_ns) == (1, 123, 61, 54, 7_288_809_009)


def test_v1_separate_cpuacct_mount(tmp_path: Path) -> None:
    d = _v1(tmp_path, periods=1, throttled=0, t_ns=0, usage=None)
    acct = tmp_path / "cpuacct" / "novatune-x"
    acct.mkdir(parents=True)
    (acct / "cpuacct.usage").write_text("42\n")
    assert CgroupCpuReader(d, cpuacct_path=acct).read().usage_ns == 42


def test_missing_file_reported_once_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = _v1(tmp_path, periods=5, throttled=1, t_ns=10, usage=None)
    reader = CgroupCpuReader(d)
    with caplog.at_level(logging.WARNING, logger="collectors.cgroupstats"):
        samples = [reader.read() for _ in range(5)]
    assert all(s.usage_ns is None for s in samples)
    assert len([r for r in caplog.records if "cpuacct.usage" in r.getMessage()]) == 1
    for f in d.iterdir():  # the cgroup vanishes mid-trial
        f.unlink()
    d.rmdir()
    gone = reader.read()
    assert gone.nr_periods is None
    assert math.isnan(cpu_delta(samples[0], gone).throttled_ratio)


def test_v2_reader(tmp_path: Path) -> None:
    d = tmp_path / "v2"
    d.mkdir()
    (d / "cgroup.controllers").write_text("cpu memory\n")
    (d / "cpu.stat").write_text(
        "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 8\nnr_throttled 2\nthrottled_usec 300\n"
    )
    s = CgroupCpuReader(d).read()
    assert (s.version, s.usage_ns, s.nr_periods, s.nr_throttled, s.throttled_ns) == (2, 2_000_000, 8, 2, 300_000)


def test_no_quota_means_zero_ratio_and_missing_dir_is_an_error(tmp_path: Path) -> None:
    a = CgroupCpuSample(0.0, 1, 0, 0, 0, 0)
    b = CgroupCpuSample(1.0, 1, 10, 0, 0, 0)
    assert cpu_delta(a, b).throttled_ratio == 0.0
    with pytest.raises(ValueError):
        cpu_delta(b, a)
    with pytest.raises(CollectorError, match="does not exist"):
        CgroupCpuReader(tmp_path / "nope")


def test_real_root_cgroup_if_present() -> None:
    root = Path("/sys/fs/cgroup/cpu")
    if not (root / "cpu.stat").exists():
        pytest.skip("no cgroup v1 cpu hierarchy here")
    s = read_cpu_stats(root)
    assert s.nr_periods is not None and s.nr_periods >= 0
