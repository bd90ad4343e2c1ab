"""collectors.prometheus: exposition of the recorded /proc fixtures (tests/collectors/data/proc-t0,
proc-t1); parsed back with prometheus_client and, when available, checked
by ``promtool check metrics`` (PROMTOOL=/path/to/promtool overrides the PATH lookup)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

from collectors.metrics import MetricsSampler
from collectors.prometheus import build_registry, prom_name, render

DATA = Path(__file__).parent / "data"
T0, T1 = DATA / "proc-t0", DATA / "proc-t1"
PID = 2601
class SwappingSampler:
    """A real MetricsSampler whose root flips from t0 to t1 after the first sample."""

    def __init__(self, tmp_path: Path) -> None:
        self.link = tmp_path / "root"
        os.symlink(T0, self.link)
        ticks = [100.0, 101.0, 102.0, 103.0]
        self.inner = MetricsSampler(root=self.link, targets=[PID], clock=lambda: ticks.pop(0))
        self.calls = 0

    def sample(self) -> dict[str, float]:
        out = self.inner.sample()
        self.calls += 1
        if self.calls == 1:
            tmp = self.link.with_name("root.new")
            os.symlink(T1, tmp)
            os.replace(tmp, self.link)
        return out

    def metrics(self):
        return self.inner.metrics()


def families(body: bytes) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(fams, name):
    return {tuple(sorted(s.labels.items())): s.value for f in fams.values() for s in f.samples if s.name == name}


@pytest.fixture
def exposition(tmp_path) -> bytes:
    sampler = SwappingSampler(tmp_path)
    reg = build_registry(sampler=sampler)
    render(reg)  # first scrape primes the counters: gauges only
    return render(reg)


def test_exposition_parses_with_units_and_labels(exposition):
    fams = families(exposition)
    for name, fam in fams.items():
        assert name.startswith("novatune_"), name
        assert fam.documentation, name
    assert {f.type for f in fams.values()} == {"gauge"}
    util = samples(fams, "novatune_cpu_util_ratio")
    # /proc/stat over the 1 s: 206 jiffies, idle 141, iowait 1 (see test_metrics)
    assert util[(("cpu", "all"),)] == pytest.approx((206 - 141 - 1) / 206)
    assert (("cpu", "0"),) in util and all(0 <= v <= 1 for v in util.values())
    assert samples(fams, "novatune_disk_read_await_seconds")[(("device", "vda"),)] == pytest.approx(1 / 11 / 1000)
    assert samples(fams, "novatune_disk_read_bytes_per_second")[(("device", "vda"),)] == pytest.approx(88 * 512)
    assert samples(fams, "novatune_cpu_ctx_switches_per_second")[()] == pytest.approx(1225.0)
    assert (("interface", "eth0"),) in samples(fams, "novatune_net_rx_drop_per_second")
    assert (("state", "listen"),) in samples(fams, "novatune_tcp_connections")
    assert (("target", f"pid{PID}"),) in samples(fams, "novatune_target_rss_bytes")
    assert (("resource", "io"), ("type", "full")) in samples(fams, "novatune_psi_avg10_ratio")
    assert samples(fams, "novatune_load1")[()] >= 0
    assert "unit: ratio" in fams["novatune_cpu_util_ratio"].documentation
    assert "unit: bytes" in fams["novatune_mem_total_bytes"].documentation
    # no unit abbreviations or percent left in names
    for name in fams:
        parts = name.split("_")
        assert not {"pct", "ms", "s", "iops"} & set(parts), name


def test_prom_name_mapping():
    assert prom_name("cpu.3.iowait_pct", "%").name == "novatune_cpu_iowait_ratio"
    assert prom_name("cpu.3.iowait_pct", "%").labels == (("cpu", "3"),)
    pn = prom_name("target.cgroup:/sys/fs/cgroup/cpu/x.y.cpu_s_per_s", "s/s")
    assert pn.name == "novatune_target_cpu_seconds_per_second"
    assert pn.labels == (("target", "cgroup:/sys/fs/cgroup/cpu/x.y"),)
    assert prom_name("disk.nvme0n1.write_iops", "1/s").name == "novatune_disk_write_ops_per_second"
    assert prom_name("disk.sda.await_ms", "ms").scale == pytest.approx(1e-3)
    assert prom_name("weird-name.x", "furlongs").name == "novatune_weird_name_x"


def _promtool() -> str | None:
    env = os.environ.get("PROMTOOL")
    return env if env and os.access(env, os.X_OK) else shutil.which("promtool")


@pytest.mark.skipif(_promtool() is None, reason="promtool not installed (Debian package 'prometheus'; or set PROMTOOL)")
def test_promtool_check_metrics(exposition):
    proc = subprocess.run([_promtool(), "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
