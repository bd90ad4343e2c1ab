"""On the real machine, through the journal, always restored (``-m root``).

Only things the test creates (a loop device, a cgroup, a child process) plus
vm.swappiness, which is restored and checked byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actuators import Catalog, ChangeSession, Journal, KnobContext, SysRoot, WorkloadCgroup, recover

pytestmark = pytest.mark.root

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acts on the real machine: needs root")


def _require(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this machine")


@pytest.fixture
def loop_dev(tmp_path: Path) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to attach a loop device")
    if shutil.which("losetup") is None or not os.path.exists("/dev/loop-control"):
        pytest.skip("no losetup or /dev/loop-control")
    img = tmp_path / "loop.img"
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    free = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
    if free.returncode != 0:
        pytest.skip(f"no free loop device: {free.stderr.strip()}")
    dev = free.stdout.strip()
    name = os.path.basename(dev)
    # attaching sets the queue's read-ahead (e.g. 128 -> 2560) and detaching keeps it:
    # save what the device had, to leave the machine as found
    root = SysRoot("/")
    saved = {}
    for leaf in ("read_ahead_kb", "scheduler"):
        rel = f"sys/block/{name}/queue/{leaf}"
        if root.exists(rel):
            saved[rel] = root.read(rel)
    res = subprocess.run(["losetup", "--show", dev, str(img)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"losetup failed: {res.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        for rel, raw in saved.items():
            if root.read(rel) != raw:
                root.restore(rel, raw)


def _raw(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@needs_root
def test_loop_device_scheduler_and_read_ahead(loop_dev: str, journal: Journal) -> None:
    cat = Catalog()
    sched = cat.get(f"block.{loop_dev}.scheduler")
    ra = cat.get(f"block.{loop_dev}.read_ahead_kb")
    if sched.available() is not None:
        pytest.skip(f"block.{loop_dev}.scheduler: {sched.available()}")
    before = {k.path: _raw(k.path) for k in (sched, ra)}
    current = sched.read()
    other = next(c for c in sched.domain.choices if c != current)
    new_ra = 256 if ra.read() != 256 else 512
    with ChangeSession(journal, run_id="real-loop", trial=0) as s:
        s.apply_many({sched: other, ra: new_ra})
        assert sched.read() == other and f"[{other}]" in _raw(sched.path).decode()
        assert ra.read() == new_ra
    assert {k.path: _raw(k.path) for k in (sched, ra)} == before
    assert Journal.open_entries(journal.records()) == []


@needs_root
def test_workload_cgroup_vcpus_and_remove(journal: Journal) -> None:
    _require("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    cg = WorkloadCgroup.create(f"pytest-{os.getpid()}", journal=journal, run_id="real-cg")
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert cg.version == 1 and cg.path == Path(f"/sys/fs/cgroup/cpu/novatune-pytest-{os.getpid()}")
        cg.attach(child.pid)
        assert cg.pids() == [child.pid]
        knob = Catalog(context=KnobContext(cgroup=cg)).get("sizing.vcpus")
        assert knob.available() is None
        quota = cg.path / "cpu.cfs_quota_us"
        before = quota.read_bytes()
        with ChangeSession(journal, run_id="real-cg", trial=0) as s:
            s.apply(knob, 0.5)
            period = int((cg.path / "cpu.cfs_period_us").read_text())
            assert int(quota.read_text()) == round(0.5 * period)
            assert knob.read() == pytest.approx(0.5)
        assert quota.read_bytes() == before
        cg.remove()
        assert child.wait(timeout=5) == -9
        assert not cg.path.exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if cg.path.exists():
            cg.remove()
    recs = journal.records()
    cgroup_events = [(r["kind"], r["event"]) for r in recs if r["kind"] == "cgroup"]
    assert cgroup_events == [("cgroup", "created"), ("cgroup", "released")]
    assert recover(journal).runs == []


@needs_root
def test_affinity_on_spawned_process(journal: Journal, sleeper: subprocess.Popen[bytes]) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs at least 2 allowed CPUs")
    before = os.sched_getaffinity(sleeper.pid)
    knob = Catalog(context=KnobContext(pids=lambda: [sleeper.pid])).get("affinity.cpus")
    with ChangeSession(journal, run_id="real-aff", trial=0) as s:
        s.apply(knob, 1)
        assert os.sched_getaffinity(sleeper.pid) == {allowed[0]}
        assert knob.read() == 1
    assert os.sched_getaffinity(sleeper.pid) == before


@needs_root
def test_swappiness_through_the_journal(journal: Journal) -> None:
    path = "/proc/sys/vm/swappiness"
    _require(path)
    before = _raw(path)
    knob = Catalog().get("vm.swappiness")
    new = 61 if knob.read() != 61 else 59
    try:
        with ChangeSession(journal, run_id="real-swap", trial=0) as s:
            s.apply(knob, new)
            assert knob.read() == new
        assert _raw(path) == before
    finally:
        if _raw(path) != before:  # belt and braces: the journal knows the old value
            recover(journal, root=SysRoot("/"), force=True)
    assert _raw(path) == before


def _host_net() -> dict[str, bytes]:
    out = {}
    for d in ("/proc/sys/net/core", "/proc/sys/net/ipv4"):
        for f in sorted(os.listdir(d)):
            p = os.path.join(d, f)
            try:
                out[p] = _raw(p)
            except OSError:
                continue
    return out


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    if shutil.which("ip") is None:
        pytest.skip("no ip(8)")
    name = f"novatune-test-{os.getpid()}-{os.urandom(3).hex()}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"ip netns add failed: {res.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in_ns(name: str, path: str) -> str:
    return subprocess.run(["ip", "netns", "exec", name, "cat", path], capture_output=True, text=True, check=True).stdout


@needs_root
def test_net_knobs_inside_a_namespace_only(netns: str, journal: Journal) -> None:
    host_before = _host_net()
    cat = Catalog(context=KnobContext(netns=netns))
    somax = cat.get("net.core.somaxconn")
    rmem = cat.get("net.ipv4.tcp_rmem")
    cc = cat.get("net.ipv4.tcp_congestion_control")
    ssai = cat.get("net.ipv4.tcp_slow_start_after_idle")
    for k in (somax, rmem, cc, ssai):
        assert k.available() is None, k.available()
    assert "host-wide" in (cat.get("net.core.busy_poll").available() or "")
    ns_before = {k.name: _in_ns(netns, k.path) for k in (somax, rmem, cc, ssai)}
    other_cc = next((c for c in cc.domain.choices if c != cc.read()), None)
    new_somax = 8192 if somax.read() != 8192 else 4096
    new_rmem = (4096, 65536, 8388608) if rmem.read() != (4096, 65536, 8388608) else (4096, 131072, 8388608)
    values: dict[Any, Any] = {somax: new_somax, rmem: new_rmem, ssai: 1 - ssai.read()}
    if other_cc is not None:
        values[cc] = other_cc
    with ChangeSession(journal, run_id="real-netns", trial=0) as s:
        s.apply_many(values)
        for k, v in values.items():
            assert k.verify(v), k.name
        assert int(_in_ns(netns, somax.path)) == new_somax
        assert _host_net() == host_before, "the host's own net.* values must not change"
    assert {k.name: _in_ns(netns, k.path) for k in (somax, rmem, cc, ssai)} == ns_before
    assert _host_net() == host_before
    assert Journal.open_entries(journal.records()) == []


@needs_root
def test_loop_device_queue_integers(loop_dev: str, journal: Journal) -> None:
    cat = Catalog()
    values = {"nr_requests": 64, "rq_affinity": 2, "nomerges": 1, "wbt_lat_usec": 4000}
    knobs = {}
    for leaf, v in values.items():
        k = cat.get(f"block.{loop_dev}.{leaf}")
        if k.available() is None and k.read() != v:
            knobs[k] = v
    if not knobs:
        pytest.skip("no queue integer to change on the loop device")
    before = {k.path: _raw(k.path) for k in knobs}
    with ChangeSession(journal, run_id="real-loopq", trial=0) as s:
        s.apply_many(knobs)
        for k, v in knobs.items():
            assert k.read() == v, k.name
    assert {k.path: _raw(k.path) for k in knobs} == before


@needs_root
def test_irq_default_affinity_read_and_noop(journal: Journal) -> None:
    _require("/proc/irq/default_smp_affinity")
    before = _raw("/proc/irq/default_smp_affinity")
    knob = Catalog().get("irq.default_affinity")
    current = knob.read()
    assert current and knob.validate(current) == current
    with ChangeSession(journal, run_id="real-irq", trial=0) as s:
        s.apply(knob, current)  # same set: nothing is written
    assert _raw("/proc/irq/default_smp_affinity") == before


def test_real_catalog_breadth_and_reasons() -> None:
    from collections import Counter

    knobs = Catalog().knobs()
    families = Counter(k.family for k in knobs)
    assert len(knobs) >= 30 and len(families) >= 8, families
    for k in knobs:
        reason = k.available()
        assert reason is None or (isinstance(reason, str) and reason.strip()), k.name
        if reason is None and k.family not in ("sizing", "affinity"):
            k.read()  # every usable knob reads
    if not os.path.isdir("/sys/devices/system/cpu/cpu0/cpufreq"):
        gov = Catalog().get("cpufreq.governor")
        assert gov.available() == "no cpufreq driver (/sys/devices/system/cpu/cpu0/cpufreq missing)"
