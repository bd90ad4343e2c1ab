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
    assert [(r["kind"], r["event"]) for r in recs if r["kind"] == "cgroup"] == [("cgroup", "created"), ("cgroup", "released")]
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
