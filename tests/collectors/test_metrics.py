"""collectors.metrics on two snapshots recorded from a real machine, 1 s apart
(tests/collectors/data/proc-t0, proc-t1; re-record with record_proc.py there)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import json
import pytest

from collectors.errors import CollectorError
from collectors.metrics import KINDS, MetricsSampler, parse_target

DATA = Path(__file__).parent / "data"
T0, T1 = DATA / "proc-t0", DATA / "proc-t1"
PID = 2601  # the recorded process (tests/collectors/data/proc-t*/proc/2601)
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, *ticks: float) -> None:
        self.ticks = list(ticks)

    def __call__(self) -> float:
        return self.ticks.pop(0)


@pytest.fixture
def swap_root(tmp_path):
    """A root path (symlink) that the test points at t0, then at t1."""
    link = tmp_path / "root"

    def point(tree: Path) -> Path:
        tmp = tmp_path / "root.new"
        os.symlink(tree, tmp)
        os.replace(tmp, link)
        return link

    point(T0)
    return point


def two_samples(swap_root, **kw):
    s = MetricsSampler(root=swap_root(T0), clock=Clock(100.0, 101.0), **kw)
    first = s.sample()
    swap_root(T1)
    return s, first, s.sample()


def test_registry_has_40_metrics_with_unit_kind_source():
    s = MetricsSampler(root=T0, targets=[PID])
    infos = s.metrics()
    assert len(infos) >= 40
    assert len({m.name for m in infos}) == len(infos)
    for m in infos:
        assert m.unit and m.kind in KINDS and m.source.startswith("/"), m
    names = {m.name for m in infos}
    for expected in ("cpu.user_pct", "cpu.0.steal_pct", "load.15m", "cpu.ctx_switches_per_s", "cpu.procs_blocked",
                     "psi.io.full.avg10", "psi.memory.some.stall_pct", "mem.available_bytes", "swap.used_bytes",
                     "vm.pgmajfault_per_s", "vm.numa_miss_per_s", "vm.compact_stall_per_s", "disk.vda.await_ms",
                     "disk.vda.queue_depth", "disk.vda.util_pct", "net.eth0.rx_drop_per_s", "tcp.retrans_segs_per_s",
                     "tcp.conn.established", "tcp.conn.listen", f"target.pid{PID}.cpu_s_per_s",
                     f"target.pid{PID}.rss_bytes", f"target.pid{PID}.write_bytes_per_s"):
        assert expected in names, expected


def test_first_sample_primes_then_rates_match_hand_computation(swap_root):
    s, first, v = two_samples(swap_root, targets=[PID, "/sys/fs/cgroup/cpu"])
    assert "cpu.ctx_switches_per_s" not in first and first["load.1m"] >= 0  # gauges only
    assert s.gaps == {}
    # /proc/stat ctxt 7510715 -> 7511940 over 1 s
    assert v["cpu.ctx_switches_per_s"] == pytest.approx(1225.0)
    # cpu line deltas: user 57 nice 0 system 4 idle 141 iowait 1 irq 0 softirq 2 steal 1 = 206 jiffies
    assert v["cpu.user_pct"] == pytest.approx(100 * 57 / 206)
    assert v["cpu.idle_pct"] == pytest.approx(100 * 141 / 206)
    assert v["cpu.util_pct"] == pytest.approx(100 * (206 - 141 - 1) / 206)
    assert sum(v[f"cpu.{m}_pct"] for m in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")) == pytest.approx(100)
    # diskstats vda: reads 284297 -> 284308, sectors 10253322 -> 10253410, read ms 167111 -> 167112,
    # weighted ms 309145 -> 309148, io_ticks unchanged, no writes
    assert v["disk.vda.read_iops"] == pytest.approx(11.0)
    assert v["disk.vda.write_iops"] == 0.0
    assert v["disk.vda.read_bytes_per_s"] == pytest.approx(88 * 512)
    assert v["disk.vda.read_await_ms"] == pytest.approx(1 / 11)
    assert v["disk.vda.await_ms"] == pytest.approx(1 / 11)
    assert v["disk.vda.queue_depth"] == pytest.approx(0.003)
    assert v["disk.vda.util_pct"] == 0.0
    # cgroup v1 root: cpuacct.usage 3660269354765 -> 3660864479195 ns
    assert v["target.cgroup:/sys/fs/cgroup/cpu.cpu_s_per_s"] == pytest.approx(0.59512443)
    assert v["tcp.out_segs_per_s"] >= 0 and v[f"target.pid{PID}.rss_bytes"] > 0
    # every registered metric has a value once primed
    assert set(v) == {m.name for m in s.metrics()}


def test_missing_psi_reported_once_not_raised(tmp_path, caplog):
    root = tmp_path / "nopsi"
    shutil.copytree(T0, root)
    shutil.rmtree(root / "proc" / "pressure")
    s = MetricsSampler(root=root)
    with caplog.at_level(logging.WARNING, logger="collectors.metrics"):
        for _ in range(3):
            values = s.sample()
    assert set(s.gaps) == {"psi.cpu", "psi.memory", "psi.io"}
    assert "No such file" in s.gaps["psi.cpu"]
    assert len([r for r in caplog.records if "psi." in r.getMessage()]) == 3
    assert not any(k.startswith("psi.") for k in values)
    assert len(values) >= 40


def test_vanished_pid_reported_in_gaps_and_sampling_goes_on(tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(T0, root)
    s = MetricsSampler(root=root, targets=[PID])
    assert f"target.pid{PID}.rss_bytes" in s.sample()
    shutil.rmtree(root / "proc" / str(PID))
    values = s.sample()
    values = s.sample()
    assert f"process {PID} exited" in s.gaps[f"target.pid{PID}"]
    assert not any(k.startswith("target.") for k in values)
    assert "cpu.user_pct" in values


def test_real_process_that_exits_is_reported():
    p = subprocess.Popen(["sleep", "30"])
    try:
        s = MetricsSampler(targets=[p.pid])
        assert f"target.pid{p.pid}.threads" in s.sample()
    finally:
        p.kill()
        p.wait()
    s.sample()
    assert f"target.pid{p.pid}" in s.gaps


def test_bad_targets_raise_collector_error():
    with pytest.raises(CollectorError, match="no process"):
        parse_target("99999999", root=T0)
    with pytest.raises(CollectorError, match="not a pid and not a cgroup"):
        parse_target("/no/such/cgroup", root=T0)
    with pytest.raises(CollectorError, match=r"\.\."):
        parse_target("cpu/../../etc", root=T0)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments", "metrics", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_once_json_lists_40_metrics_with_units():
    r = run_cli("--once", "--json", "--interval", "0.3")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = doc["metrics"]
    assert len(rows) >= 40
    for row in rows:
        assert set(row) >= {"name", "value", "unit", "kind", "source"} and row["unit"], row
    assert any(row["kind"] == "counter" for row in rows)  # rates came from the two samples


@pytest.mark.parametrize("target", ["99999999", "/no/such/cgroup", "not-a-thing/.."])
def test_cli_bad_target_exits_2_without_traceback(target):
    r = run_cli("--once", "--target", target)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--target" in r.stderr
