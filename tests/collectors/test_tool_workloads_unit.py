"""Tool workloads without running any tool: options, fio filename safety, metric names.

The protocol every workload shares is checked in ``test_workload_contract.py``.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

from collectors.errors import WorkloadError
from collectors.safepath import WriteRoots
from collectors.workloads.base import COMMON_METRICS
from collectors.workloads.registry import TOOL_WORKLOADS
from collectors.workloads.tools.adapter import AdapterError, AdapterResult
from collectors.workloads.tools.fio import FioWorkload, check_fio_filename
from collectors.workloads.tools.iperf3 import Iperf3Workload
from collectors.workloads.tools.pgbench import PgbenchWorkload
from collectors.workloads.tools.redis_benchmark import RedisBenchmarkWorkload
from collectors.workloads.tools.stress_ng import StressNgWorkload
from collectors.workloads.tools.workload import ToolWorkload
from collectors.workloads.tools.wrk import WrkWorkload


def test_option_defaults_listed_and_documented() -> None:
    for cls in TOOL_WORKLOADS.values():
        defaults = cls.option_defaults()
        assert defaults == dict(cls.OPTIONS) and defaults
        defaults["x"] = 1  # a copy
        assert "x" not in cls.OPTIONS
        for name in cls.OPTIONS:
            assert f"``{name}``" in (cls.__doc__ or ""), (cls.__name__, name)
        for metric in cls.METRICS:
            assert f"``{metric}``" in (cls.__doc__ or ""), (cls.__name__, metric)


def test_metric_names() -> None:
    expected = {
        "fio": {"throughput", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "errors", "bytes_per_s"},
        "pgbench": {"throughput", "latency_avg_ms", "latency_stddev_ms", "errors", "error_rate", "transactions"},
        "redis-benchmark": {"throughput", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_avg_ms",
                            "errors", "error_rate", "requests"},
        "wrk": {"throughput", "latency_p50_ms", "latency_p75_ms", "latency_p90_ms", "latency_p99_ms",
                "latency_avg_ms", "latency_stddev_ms", "errors", "error_rate", "requests"},
        "iperf3": {"throughput", "errors", "retransmits", "sender_bits_per_s", "bytes"},
        "stress-ng": {"throughput", "errors", "bogo_ops"},
    }
    for name, cls in TOOL_WORKLOADS.items():
        names = cls(Path("/nonexistent/wd")).metric_names()
        assert set(names) == expected[name] and len(names) == len(set(names))
        assert names[0] == "throughput" and "errors" in names


def test_error_rate_from_counts(tmp_path: Path) -> None:
    wl = WrkWorkload(tmp_path)
    res = AdapterResult(tool="wrk", throughput=10.0, throughput_unit="req/s", errors=5, extra={"requests": 100.0})
    m = wl._metrics(res)
    assert m["error_rate"] == pytest.approx(0.05)
    assert math.isnan(m["latency_p50_ms"]) and set(m) == set(wl.metric_names())
    rb = RedisBenchmarkWorkload(tmp_path, requests=100, tests="set,get,incr")
    m = rb._metrics(AdapterResult(tool="redis-benchmark", throughput=1.0, throughput_unit="ops/s"))
    assert m["requests"] == 300 and m["error_rate"] == 0
    assert all(k in COMMON_METRICS for k in ("throughput", "errors", "error_rate"))


@pytest.mark.parametrize(
    ("cls", "options", "needle"),
    [
        (FioWorkload, {"rw": "trim"}, "rw must be one of"),
        (FioWorkload, {"bs": "four"}, "bs must be a size"),
        (FioWorkload, {"bs": "0"}, "bs must be between"),
        (FioWorkload, {"size": "1T"}, "size must be between"),
        (FioWorkload, {"iodepth": 0}, "iodepth must be an integer in [1, 1024]"),
        (FioWorkload, {"iodepth": 2.5}, "iodepth must be an integer"),
        (FioWorkload, {"numjobs": 65}, "numjobs must be an integer in [1, 64]"),
        (FioWorkload, {"direct": "yes"}, "direct must be true or false"),
        (FioWorkload, {"fadvise_hint": "no"}, "fadvise_hint must be true or false"),
        (FioWorkload, {"fsync": -1}, "fsync must be an integer in [0, 1000000]"),
        (FioWorkload, {"fsync": "often"}, "fsync must be an integer"),
        (FioWorkload, {"ioengine": "spdk"}, "ioengine must be one of"),
        (FioWorkload, {"filename": "a:b"}, "filename must be a plain path"),
        (FioWorkload, {"blocksize": "4k"}, "unknown option(s) ['blocksize']; allowed:"),
        (PgbenchWorkload, {"clients": 0}, "clients must be an integer in [1, 1000]"),
        (PgbenchWorkload, {"clients": 2, "threads": 3}, "threads must be an integer in [1, 2]"),
        (PgbenchWorkload, {"scale": 101}, "scale must be an integer in [1, 100]"),
        (PgbenchWorkload, {"scale": True}, "scale must be an integer"),
        (RedisBenchmarkWorkload, {"requests": 0}, "requests must be an integer in [1, 1000000]"),
        (RedisBenchmarkWorkload, {"clients": 1001}, "clients must be an integer in [1, 1000]"),
        (RedisBenchmarkWorkload, {"tests": ("set", "flushall")}, "tests must be a non-empty subset"),
        (RedisBenchmarkWorkload, {"tests": ""}, "tests must be a non-empty subset"),
        (WrkWorkload, {"url": "ftp://127.0.0.1/"}, "url must be http:// or https://"),
        (WrkWorkload, {"url": "http://example.com/"}, "url host must be a literal loopback address"),
        (WrkWorkload, {"url": "http://10.1.2.3:80/"}, "url host must be a loopback address"),
        (WrkWorkload, {"url": "http://127.0.0.1:99999/"}, "malformed"),
        (WrkWorkload, {"connections": 0}, "connections must be an integer"),
        (WrkWorkload, {"connections": 2, "threads": 4}, "threads must be an integer in [1, 2]"),
        (WrkWorkload, {"file_bytes": 0}, "file_bytes must be an integer"),
        (Iperf3Workload, {"streams": 0}, "streams must be an integer in [1, 128]"),
        (Iperf3Workload, {"port": 5201}, "unknown option(s) ['port']"),
        (StressNgWorkload, {"stressor": "fork"}, "stressor must be one of"),
        (StressNgWorkload, {"workers": 0}, "workers must be an integer in [1, 256]"),
    ],
)
def test_bad_options_name_the_option(tmp_path: Path, cls: type[ToolWorkload], options: dict, needle: str) -> None:
    with pytest.raises(AdapterError) as info:
        cls(tmp_path, **options)
    assert isinstance(info.value, WorkloadError)
    msg = str(info.value)
    assert msg.startswith(f"{cls.kind}: ") and needle in msg, msg


def test_good_options_accepted(tmp_path: Path) -> None:
    FioWorkload(tmp_path, rw="randrw", bs="16k", size="64M", iodepth=8, direct=True, numjobs=2, ioengine="libaio")
    PgbenchWorkload(tmp_path, clients=8, threads=2, scale=2)
    rb = RedisBenchmarkWorkload(tmp_path, tests="set, get,set", requests=100, clients=5)
    assert rb.options["tests"] == ("set", "get")
    WrkWorkload(tmp_path, url="http://127.0.0.1:8080/x", connections=8, threads=2)
    WrkWorkload(tmp_path, url="https://[::1]:8443/")
    WrkWorkload(tmp_path, url="http://localhost/")
    Iperf3Workload(tmp_path, streams=4)
    StressNgWorkload(tmp_path, stressor="matrix", workers=2)


@pytest.mark.parametrize(("warmup", "window"), [(-1, 1), (0, 0), (0, -1), (0, 601), (math.nan, 1), (0, True)])
def test_measure_rejects_bad_windows(tmp_path: Path, warmup: float, window: float) -> None:
    with pytest.raises(ValueError):
        StressNgWorkload(tmp_path).measure(warmup_s=warmup, measure_s=window)


# ---------------------------------------------------------------- fio filename safety


def test_fio_default_filename_in_workdir(tmp_path: Path) -> None:
    assert check_fio_filename(None, tmp_path) == Path(os.path.realpath(tmp_path)) / "fio.dat"
    assert check_fio_filename("sub/x.dat", tmp_path) == Path(os.path.realpath(tmp_path)) / "sub" / "x.dat"
    inside = tmp_path / "data.bin"
    assert check_fio_filename(str(inside), tmp_path) == Path(os.path.realpath(inside))


def _block_devices() -> list[Path]:
    return [p for p in Path("/dev").iterdir() if p.is_block_device()]


def test_fio_refuses_every_block_device_even_under_an_allowed_root(tmp_path: Path) -> None:
    blocks = _block_devices()
    if not blocks:
        pytest.skip("no block device on this machine")
    loops = [p for p in blocks if p.name.startswith("loop")][:1]  # loop devices too: they may back a mount
    for dev in [*blocks[:3], *loops]:
        with pytest.raises(AdapterError, match="outside the allowed roots"):
            check_fio_filename(str(dev), tmp_path)
        with pytest.raises(AdapterError, match="is a block device"):
            check_fio_filename(str(dev), WriteRoots.of(tmp_path, ["/dev"]))
        with pytest.raises(AdapterError, match="outside the allowed roots"):
            FioWorkload(tmp_path, filename=str(dev))


def test_fio_refuses_a_symlink_in_the_workdir(tmp_path: Path) -> None:
    link = tmp_path / "innocent.dat"
    link.symlink_to("/etc/passwd")
    with pytest.raises(AdapterError, match="is a symlink"):
        FioWorkload(tmp_path, filename=str(link))
    with pytest.raises(AdapterError, match="is a symlink"):
        FioWorkload(tmp_path, filename="innocent.dat")


def test_fio_refuses_outside_paths_and_what_is_not_a_regular_file(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    with pytest.raises(AdapterError, match="outside the allowed roots"):
        check_fio_filename(str(tmp_path / "elsewhere.dat"), wd)
    with pytest.raises(AdapterError, match="'..' component"):
        check_fio_filename("../escape.dat", wd)
    with pytest.raises(AdapterError, match="is a character device"):
        check_fio_filename("/dev/null", WriteRoots.of(wd, ["/dev"]))
    with pytest.raises(AdapterError, match="is a directory"):
        check_fio_filename(str(wd), wd)
    (tmp_path / "sub").mkdir()
    with pytest.raises(AdapterError, match="is a directory"):
        check_fio_filename(str(tmp_path / "sub"), WriteRoots.of(wd, [tmp_path]))
    fifo = wd / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AdapterError, match="is a FIFO"):
        check_fio_filename(str(fifo), wd)


def test_fio_accepts_a_file_outside_the_workdir_only_under_an_allowed_root(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    named = tmp_path / "mine.dat"
    named.write_bytes(b"\0" * 10)
    with pytest.raises(AdapterError, match="outside the allowed roots"):
        FioWorkload(wd, filename=str(named))
    assert check_fio_filename(str(named), WriteRoots.of(wd, [tmp_path])) == named
    FioWorkload(wd, filename=str(named), allowed_roots=[tmp_path])
    with pytest.raises(AdapterError, match="novatune's own data directory"):
        FioWorkload(wd, filename=str(named), allowed_roots=[tmp_path], protected=[tmp_path])


def test_missing_binary_is_named_with_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    wl = StressNgWorkload(tmp_path / "wd")
    with pytest.raises(WorkloadError, match=r"not found \(Debian package: "):
        wl.start()
    assert wl.pids() == [] and not (tmp_path / "wd").exists()  # nothing happened before the check
    with pytest.raises(WorkloadError, match=r"redis-server not found \(Debian package: redis-server\)"):
        RedisBenchmarkWorkload(tmp_path / "wd").start()
    with pytest.raises(WorkloadError, match=r"iperf3 not found \(Debian package: iperf3\)"):
        Iperf3Workload(tmp_path / "wd").start()


def _need_pg() -> None:
    if shutil.which("pgbench") is None or PgbenchWorkload.pg_bindir() is None:
        pytest.skip("pgbench/initdb not installed (Debian packages: postgresql-contrib, postgresql)")


def test_pgbench_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_pg()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(WorkloadError, match="needs root"):
        PgbenchWorkload(tmp_path / "wd").start()
    assert not (tmp_path / "wd").exists()


def test_pgbench_needs_the_postgres_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_pg()
    import pwd

    def no_user(name: str) -> None:
        raise KeyError(name)

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", no_user)
    with pytest.raises(WorkloadError, match="no 'postgres' user .*Debian package: postgresql"):
        PgbenchWorkload(tmp_path / "wd").start()
    assert not (tmp_path / "wd").exists()


def test_a_file_made_for_a_server_has_the_mode_asked_for_under_novatunes_umask(tmp_path: Path) -> None:
    """novatune runs under umask 077; a file it makes for an unprivileged server (wrk's served page and
    script, 0644) must still be readable by that server (CI caught `Permission denied` as nobody)."""
    old = os.umask(0o077)
    try:
        made = WriteRoots.of(tmp_path).open_file("served.py", mode=0o644)
    finally:
        os.umask(old)
    try:
        assert (tmp_path / "served.py").stat().st_mode & 0o777 == 0o644
    finally:
        made.close()
