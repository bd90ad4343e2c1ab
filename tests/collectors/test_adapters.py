"""Unit tests of the tool adapters: parsers on recorded real outputs, malformed input, commands."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from collectors.workloads.tools.adapter import ADAPTERS, AdapterBase, AdapterError, AdapterResult, get_adapter
from collectors.workloads.tools.fio import FioAdapter, parse_fio
from collectors.workloads.tools.iperf3 import Iperf3Adapter, parse_iperf3
from collectors.workloads.tools.pgbench import PgbenchAdapter, parse_pgbench
from collectors.workloads.tools.redis_benchmark import RedisBenchmarkAdapter, parse_redis_benchmark
from collectors.workloads.tools.stress_ng import StressNgAdapter, parse_stress_ng
from collectors.workloads.tools.wrk import WrkAdapter, parse_wrk

DATA = Path(__file__).parent / "data" / "tools"


def read(name: str) -> str:
    return (DATA / name).read_text()


# --- recorded outputs; expected values copied by hand from the files ---------------------------


def test_fio_recorded() -> None:
    r = parse_fio(read("fio.json"))
    assert r.tool == "fio" and r.throughput_unit == "ops/s"
    assert r.throughput == pytest.approx(16097.951024)  # jobs[0].read.iops
    assert r.extra["bytes_per_s"] == pytest.approx(65937207)  # read.bw_bytes
    assert r.latency_p50_ms == pytest.approx(0.056064)  # clat_ns percentile 50 = 56064 ns
    assert r.latency_p95_ms == pytest.approx(0.099840)  # 99840 ns
    assert r.latency_p99_ms == pytest.approx(0.121344)  # 121344 ns
    assert r.errors == 0


def test_pgbench_recorded() -> None:
    r = parse_pgbench(read("pgbench.txt"))
    assert r.throughput == pytest.approx(3615.288956) and r.throughput_unit == "tx/s"
    assert r.latency_avg_ms == pytest.approx(0.551)
    assert r.latency_stddev_ms == pytest.approx(0.311)
    assert math.isnan(r.latency_p50_ms) and math.isnan(r.latency_p99_ms)
    assert r.errors == 0 and r.extra["transactions"] == 10838
    assert [p["tps"] for p in r.raw["progress"]] == [3629.7, 3861.1, 3345.0]


def test_redis_benchmark_recorded() -> None:
    r = parse_redis_benchmark(read("redis-benchmark.csv"))
    assert r.raw["tests"]["SET"]["rps"] == pytest.approx(111111.11)
    assert r.raw["tests"]["GET"]["p99_latency_ms"] == pytest.approx(0.127)
    assert r.throughput == pytest.approx(2 / (1 / 111111.11 + 1 / 125000.00)) and r.throughput_unit == "ops/s"
    # worst over SET/GET
    assert (r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms) == pytest.approx((0.055, 0.087, 0.135))
    assert r.latency_avg_ms == pytest.approx(0.058)


def test_wrk_recorded() -> None:
    r = parse_wrk(read("wrk.txt"))
    assert r.throughput == pytest.approx(1725.60) and r.throughput_unit == "req/s"
    assert r.latency_p50_ms == pytest.approx(2.18)
    assert r.latency_p99_ms == pytest.approx(4.46)
    assert math.isnan(r.latency_p95_ms)
    assert r.extra["latency_p75_ms"] == pytest.approx(2.65) and r.extra["latency_p90_ms"] == pytest.approx(3.21)
    assert r.latency_avg_ms == pytest.approx(2.29) and r.latency_stddev_ms == pytest.approx(0.78259)
    assert r.extra["requests"] == 3624 and r.errors == 0


def test_iperf3_recorded() -> None:
    r = parse_iperf3(read("iperf3.json"))
    assert r.throughput == pytest.approx(23310332052.261337) and r.throughput_unit == "bit/s"
    assert r.extra["sender_bits_per_s"] == pytest.approx(23310809826.39686)
    assert r.extra["retransmits"] == 16 and r.extra["bytes"] == 5828771840
    assert math.isnan(r.latency_p50_ms)


def test_stress_ng_recorded() -> None:
    r = parse_stress_ng(read("stress-ng.yaml"))
    assert r.throughput == pytest.approx(1511.982885) and r.throughput_unit == "bogo-ops/s"
    assert r.extra["bogo_ops"] == 3025


def test_metrics_flat() -> None:
    m = parse_iperf3(read("iperf3.json")).metrics()
    assert m["retransmits"] == 16.0 and m["errors"] == 0.0 and all(isinstance(v, float) for v in m.values())


# --- variants ---------------------------------------------------------------------------------

WRK_ERRORS = """Running 2s test @ http://127.0.0.1:1/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.01s   500.00ms   1.90s    70.00%
    Req/Sec     3.00      1.00     5.00     80.00%
  Latency Distribution
     50%  900.00us
     75%    1.20ms
     90%    1.50s
     99%    1.90s
  12 requests in 2.00s, 1.00KB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:      6.00
Transfer/sec:    512.00B
"""


def test_wrk_units_and_errors() -> None:
    r = parse_wrk(WRK_ERRORS)
    assert r.latency_p50_ms == pytest.approx(0.9) and r.latency_p99_ms == pytest.approx(1900.0)
    assert r.latency_avg_ms == pytest.approx(1010.0) and r.errors == 10


def test_redis_old_format_without_header() -> None:
    r = parse_redis_benchmark('"SET","1000.00"\n"GET","4000.00"\n')
    assert r.throughput == pytest.approx(1600.0) and math.isnan(r.latency_p99_ms)


def test_pgbench_failed_transactions() -> None:
    text = read("pgbench.txt").replace("number of failed transactions: 0 (0.000%)",
                                       "number of failed transactions: 7 (0.065%)")
    assert parse_pgbench(text).errors == 7


def test_iperf3_error_object() -> None:
    with pytest.raises(AdapterError, match=r"^iperf3: reported error: unable to connect"):
        parse_iperf3('{"start": {}, "intervals": [], "end": {}, "error": "unable to connect to server"}')


# --- malformed input: a clear AdapterError naming the tool, never another exception -----------

PARSERS = {
    "fio": parse_fio,
    "pgbench": parse_pgbench,
    "redis-benchmark": parse_redis_benchmark,
    "wrk": parse_wrk,
    "iperf3": parse_iperf3,
    "stress-ng": parse_stress_ng,
}
RECORDED = {
    "fio": "fio.json",
    "pgbench": "pgbench.txt",
    "redis-benchmark": "redis-benchmark.csv",
    "wrk": "wrk.txt",
    "iperf3": "iperf3.json",
    "stress-ng": "stress-ng.yaml",
}
GARBAGE = ["", "   \n", "garbage", "{", "[1, 2]", '{"jobs": []}', "{'a': 1}", "- 1\n- 2\n", "\x00\xff",
           '"test","rps"\n"SET","fast"\n', "metrics: [{bogo-ops: 1}]", '{"end": {"sum_sent": 1}}',
           '{"jobs": [{"read": {"iops": "x"}}]}', '{"jobs": [{"read": {}}]}', "tps = abc\n"]


@pytest.mark.parametrize("tool", sorted(PARSERS))
@pytest.mark.parametrize("text", GARBAGE)
def test_malformed_raises_adapter_error(tool: str, text: str) -> None:
    with pytest.raises(AdapterError) as info:
        PARSERS[tool](text)
    assert str(info.value).startswith(f"{tool}: ") and info.value.tool == tool


@pytest.mark.parametrize("tool", sorted(PARSERS))
def test_truncated_recorded_output(tool: str) -> None:
    text = read(RECORDED[tool])
    for cut in (len(text) // 4, len(text) // 2):
        with pytest.raises(AdapterError, match=rf"^{tool}: "):
            PARSERS[tool](text[:cut])


def test_recorded_parsers_are_pure_and_repeatable() -> None:
    for tool, fn in PARSERS.items():
        a, b = fn(read(RECORDED[tool])), fn(read(RECORDED[tool]))
        assert isinstance(a, AdapterResult) and a == b


# --- commands ---------------------------------------------------------------------------------


def test_commands_bounded_and_loopback(tmp_path: Path) -> None:
    fio = FioAdapter(filename=str(tmp_path / "f"), runtime_s=2).command()
    assert fio[0] == "fio" and "--time_based" in fio and "--runtime=2" in fio and "--size=32M" in fio
    assert "--output-format=json" in fio and "--fadvise_hint=1" in fio  # fio's own default, said
    assert "--fadvise_hint=0" in FioAdapter(filename="/tmp/x", ioengine="mmap", fadvise_hint=False).command()
    assert not [a for a in fio if a.startswith("--fsync")]  # never unless asked
    assert "--fsync=32" in FioAdapter(filename="/tmp/x", rw="randwrite", fsync=32).command()
    pg = PgbenchAdapter(port=5433, run_as="postgres").command()
    assert pg[:4] == ["runuser", "-u", "postgres", "--"] and pg[pg.index("-T") + 1] == "3"
    assert pg[pg.index("-h") + 1] == "127.0.0.1" and "-n" in pg
    assert PgbenchAdapter(port=5433).init_command()[-5:] == ["-i", "-s", "1", "-q", "postgres"]
    rb = RedisBenchmarkAdapter(port=6380).command()
    assert rb[rb.index("-n") + 1] == "5000" and "--csv" in rb and rb[rb.index("-h") + 1] == "127.0.0.1"
    srv = RedisBenchmarkAdapter(port=6380).server_command()
    assert srv[srv.index("--save") + 1] == "" and srv[srv.index("--appendonly") + 1] == "no"
    wrk = WrkAdapter(url="http://127.0.0.1:8080/").command()
    assert wrk[wrk.index("-d") + 1] == "2s" and "--latency" in wrk
    ip = Iperf3Adapter(port=5201).command()
    assert ip[ip.index("-t") + 1] == "2" and "-J" in ip and ip[ip.index("-c") + 1] == "127.0.0.1"
    assert Iperf3Adapter(port=5201).server_command()[:3] == ["iperf3", "-s", "-1"]
    sng = StressNgAdapter(yaml_path=str(tmp_path / "y")).command()
    assert sng[sng.index("--timeout") + 1] == "2s" and "--metrics-brief" in sng


@pytest.mark.parametrize(
    "adapter",
    [
        FioAdapter(filename="/tmp/x", runtime_s=0),
        FioAdapter(filename="/tmp/x", runtime_s=10_000),
        FioAdapter(filename="/tmp/x", rw="trim-everything"),
        PgbenchAdapter(port=70000),
        PgbenchAdapter(port=5432, duration_s=float("inf")),
        RedisBenchmarkAdapter(port=6379, requests=0),
        RedisBenchmarkAdapter(port=6379, tests=("flushall",)),
        WrkAdapter(url="file:///etc/passwd"),
        WrkAdapter(url="http://127.0.0.1/", duration_s=-1),
        Iperf3Adapter(port=0),
        StressNgAdapter(yaml_path="/tmp/y", stressor="fork-bomb"),
        StressNgAdapter(yaml_path="/tmp/y", timeout_s=True),
    ],
)
def test_command_refuses_unbounded_or_bad(adapter) -> None:
    with pytest.raises(AdapterError, match=rf"^{adapter.tool}: "):
        adapter.command()


def test_registry() -> None:
    assert get_adapter("wrk") is WrkAdapter and set(ADAPTERS) == set(PARSERS)
    with pytest.raises(AdapterError, match="known"):
        get_adapter("ab")


# --- run_adapter (no real tool needed) --------------------------------------------------------


class _Fake(AdapterBase):
    tool = "fake"

    def __init__(self, code: str) -> None:
        import sys

        self.argv = [sys.executable, "-c", code]

    def command(self) -> list[str]:
        return self.argv

    def max_runtime_s(self) -> float:
        return 5.0

    def parse(self, text: str) -> AdapterResult:
        return AdapterResult(tool="fake", throughput=float(text), throughput_unit="ops/s")


def test_run_adapter_ok_fail_timeout() -> None:
    from collectors.workloads.tools.adapter import run_adapter

    assert run_adapter(_Fake("print(42)")).throughput == 42.0
    with pytest.raises(AdapterError, match=r"^fake: exited with 3; stderr: boom"):
        run_adapter(_Fake("import sys; sys.stderr.write('boom'); sys.exit(3)"))
    with pytest.raises(AdapterError, match=r"^fake: timed out after 0.5 s"):
        run_adapter(_Fake("import time; time.sleep(30)"), timeout_s=0.5)


def test_run_adapter_missing_binary_names_debian_package(monkeypatch, tmp_path: Path) -> None:
    import collectors.workloads.tools.adapter as base
    from collectors.workloads.tools.adapter import run_adapter

    monkeypatch.setattr(base.shutil, "which", lambda name: None)
    with pytest.raises(AdapterError, match=r"^stress-ng: stress-ng not found \(Debian package: stress-ng\)"):
        run_adapter(StressNgAdapter(yaml_path=str(tmp_path / "y")))
    with pytest.raises(AdapterError, match=r"^pgbench: runuser not found"):
        run_adapter(PgbenchAdapter(port=5432, run_as="postgres"))
