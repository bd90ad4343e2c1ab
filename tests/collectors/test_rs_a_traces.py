"""Usage traces (part A): the CSV contract's reader and its bad inputs, and the Bitbrains reader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from collectors.errors import NovatuneError
from collectors.usage.traces import TraceError, read_bitbrains, read_trace

BITBRAINS = Path("/work/shared/datasets/utilization/bitbrains_rnd")
MB = 1 << 20
HEAD = "vm_id,timestamp,cpu_used_cores,mem_used_gib,cpu_cores_capacity,mem_capacity_gib\n"


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_interleaved_vms_unix_and_iso_times(tmp_path):
    p = write(tmp_path, HEAD + "a,1700000000,1.5,2.0,4,8\n"
                               "b,2023-11-14T22:13:20Z,0.5,1.0,,\n"
                               "a,1700000300,1.0,2.5,4,8\n"
                               "b,2023-11-14T22:18:20+00:00,0.25,1.5,,\n")
    s = read_trace(p, max_bytes=MB)
    assert list(s) == ["a", "b"]
    assert list(s["a"].t) == [1700000000.0, 1700000300.0]
    assert list(s["b"].t) == [1700000000.0, 1700000300.0]
    assert s["a"].current("cpu") == 4.0 and s["b"].current("memory") is None
    assert s["a"].mem_gib[1] == pytest.approx(2.5)


def test_optional_columns_may_be_absent_and_extra_ones_are_ignored(tmp_path):
    p = write(tmp_path, "timestamp,vm_id,mem_used_gib,cpu_used_cores,disk\n1,x,0.5,0.2,9\n2,x,0.5,0.3,9\n")
    s = read_trace(p, max_bytes=MB)["x"]
    assert s.cpu_capacity is None and list(s.cpu_cores) == pytest.approx([0.2, 0.3])


def test_missing_columns_named_with_required_and_optional(tmp_path):
    p = write(tmp_path, "vm_id,timestamp,cpu_used_cores\na,1,1\n")
    with pytest.raises(TraceError) as e:
        read_trace(p, max_bytes=MB)
    msg = str(e.value)
    assert "lacks column(s) mem_used_gib" in msg and "required: vm_id, timestamp" in msg
    assert "optional: cpu_cores_capacity, mem_capacity_gib" in msg


@pytest.mark.parametrize(("rows", "words"), [
    ("a,100,1,1\na,100,1,1\n", ["vm a", "repeats 100", "line 3", "line 2"]),
    ("a,200,1,1\nb,50,1,1\na,100,1,1\n", ["vm a", "goes back to 100", "line 4", "previous 200"]),
])
def test_duplicate_or_non_monotonic_timestamps_name_the_vm(tmp_path, rows, words):
    p = write(tmp_path, "vm_id,timestamp,cpu_used_cores,mem_used_gib\n" + rows)
    with pytest.raises(TraceError) as e:
        read_trace(p, max_bytes=MB)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize(("rows", "words"), [
    ("a,1,1,1\na,2,-0.5,1\n", ["line 3", "cpu_used_cores is -0.5", "vm a", ">= 0"]),
    ("a,1,1,1\nb,2,1,NaN\nb,3,1,\n", ["mem_used_gib is missing or NaN", "vm b", "line(s) 3, 4"]),
    ("a,1,lots,1\n", ["line 2", "'lots' is not a number"]),
    ("a,yesterday,1,1\n", ["line 2", "neither Unix seconds nor ISO 8601"]),
])
def test_negative_nan_or_garbage_usage_named(tmp_path, rows, words):
    p = write(tmp_path, "vm_id,timestamp,cpu_used_cores,mem_used_gib\n" + rows)
    with pytest.raises(TraceError) as e:
        read_trace(p, max_bytes=MB)
    for w in words:
        assert w in str(e.value)


def test_a_vm_with_three_samples_is_read_not_refused(tmp_path):
    from optimizer.rightsizing.recommend import recommend

    p = write(tmp_path, "vm_id,timestamp,cpu_used_cores,mem_used_gib\n" + "".join(
        f"a,{i * 300},1,1\n" for i in range(3)))
    s = read_trace(p, max_bytes=MB)
    assert len(s["a"]) == 3
    assert recommend(s["a"]).finding == "insufficient-data"


def test_a_file_over_the_size_cap_is_refused_before_reading(tmp_path):
    p = tmp_path / "big.csv"
    with p.open("wb") as f:
        f.write(HEAD.encode())
        f.truncate(2 * 1024**3)  # sparse: 2 GiB that take no disk
    assert os.path.getsize(p) == 2 * 1024**3
    with pytest.raises(TraceError) as e:
        read_trace(p, max_bytes=1 << 30)
    msg = str(e.value)
    assert "2.0 GiB (2147483648 bytes)" in msg and "1.0 GiB (1073741824 bytes" in msg and "trace_max_bytes" in msg


def test_not_csv_and_missing_file(tmp_path):
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "nope.csv", max_bytes=MB)
    with pytest.raises(TraceError, match="header"):
        read_trace(write(tmp_path, ""), max_bytes=MB)


def test_trace_error_is_a_user_error():
    assert issubclass(TraceError, NovatuneError) and TraceError.exit_code == 2 and TraceError.http_status == 422


def _bb_line(t, cores, cap_mhz, use_mhz, mem_cap_kib, mem_kib):
    return ";\t".join(str(x) for x in (t, cores, cap_mhz, use_mhz, 0.0, mem_cap_kib, mem_kib, 0, 0, 0, 0)) + "\n"


BB_HEAD = ";\t".join(["Timestamp [ms]", "CPU cores", "CPU capacity provisioned [MHZ]", "CPU usage [MHZ]",
                      "CPU usage [%]", "Memory capacity provisioned [KB]", "Memory usage [KB]",
                      "Disk read throughput [KB/s]", "Disk write throughput [KB/s]",
                      "Network received throughput [KB/s]", "Network transmitted throughput [KB/s]"]) + "\n"


def test_bitbrains_units_and_tolerated_oddities(tmp_path):
    (tmp_path / "m1").mkdir()
    (tmp_path / "m2").mkdir()
    (tmp_path / "m1" / "7.csv").write_text(
        BB_HEAD + _bb_line(1000, 2, 5000, 2500, 2**22, 2**21)  # 1 core used of 2, 2 GiB of 4
        + _bb_line(1300, 2, 5000, 2500, 2**22, 2**21)
        + _bb_line(1300, 2, 5000, 5000, 2**22, 2**21)  # a repeated timestamp: the first is kept
        + _bb_line(1500, 4, 10000, 7500, 0, 2**20))  # core count changes; memory capacity 0 = unknown
    (tmp_path / "m2" / "7.csv").write_text(BB_HEAD + _bb_line(90000, 4, 10000, 2500, 2**22, 2**20))
    s = read_bitbrains(tmp_path)["7"]
    assert list(s.t) == [1000, 1300, 1500, 90000]
    assert list(s.cpu_cores) == pytest.approx([1.0, 1.0, 3.0, 1.0])
    assert list(s.mem_gib) == pytest.approx([2.0, 2.0, 1.0, 1.0])
    assert np.isnan(s.mem_capacity[2]) and s.cpu_capacity[2] == 4.0


def test_bitbrains_bad_directory(tmp_path):
    with pytest.raises(TraceError, match="not a directory"):
        read_bitbrains(tmp_path / "none")
    with pytest.raises(TraceError, match="no .csv"):
        read_bitbrains(tmp_path)
    (tmp_path / "1.csv").write_text("a;\tb\n1;\t2\n")
    with pytest.raises(TraceError, match="lacks column"):
        read_bitbrains(tmp_path)


@pytest.mark.skipif(not BITBRAINS.is_dir(), reason="the shared Bitbrains data set is not here")
def test_the_shared_bitbrains_set_reads_as_its_readme_says():
    s = read_bitbrains(BITBRAINS)
    assert len(s) == 19 and "118" in s
    assert 8616 <= len(s["30"]) <= 8627
    assert s["56"].current("cpu") == 8.0
    assert float(np.percentile(s["56"].cpu_cores / s["56"].cpu_capacity, 95)) == pytest.approx(1.038, abs=0.01)
    assert 0.3 < float(np.nanmin(s["118"].mem_capacity)) < 0.5
