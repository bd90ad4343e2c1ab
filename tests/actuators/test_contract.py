"""The contract every knob family keeps, on the fake tree (TuneD-style shared suite)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actuators import (
    Catalog,
    Journal,
    Knob,
    KnobContext,
    OutOfBounds,
    SysRoot,
    UnknownKnob,
    WorkloadCgroup,
)
from tests.actuators.conftest import fake_cgroup_files, fake_target_cgroup, tree_bytes

#: every knob of the fake tree's catalog (all families) -> a value that changes it
FAMILIES = {
    "vm.swappiness": 35,
    "vm.dirty_ratio": 30,
    "vm.dirty_background_ratio": 5,
    "vm.dirty_expire_centisecs": 1500,
    "vm.dirty_writeback_centisecs": 1000,
    "vm.vfs_cache_pressure": 50,
    "vm.min_free_kbytes": 90112,
    "vm.zone_reclaim_mode": 1,
    "vm.stat_interval": 2,
    "kernel.sched_autogroup_enabled": 0,
    "kernel.numa_balancing": 1,
    "kernel.timer_migration": 0,
    "net.core.somaxconn": 8192,
    "net.core.netdev_max_backlog": 5000,
    "net.core.rmem_max": 8388608,
    "net.core.wmem_max": 8388608,
    "net.core.busy_poll": 50,
    "net.core.busy_read": 50,
    "net.ipv4.tcp_rmem": (4096, 262144, 16777216),
    "net.ipv4.tcp_wmem": "4096 65536 16777216",
    "net.ipv4.tcp_congestion_control": "reno",
    "net.ipv4.tcp_slow_start_after_idle": 0,
    "net.ipv4.tcp_notsent_lowat": 131072,
    "net.ipv4.tcp_autocorking": 0,
    "net.ipv4.tcp_fastopen": 3,
    "thp.enabled": "never",
    "thp.defrag": "defer",
    "ksm.run": 1,
    "block.loop0.read_ahead_kb": 256,
    "block.loop0.scheduler": "mq-deadline",
    "block.loop0.nr_requests": 64,
    "block.loop0.rq_affinity": 2,
    "block.loop0.nomerges": 1,
    "block.loop0.wbt_lat_usec": 4000,
    "block.vda.scheduler": "kyber",
    "block.vda.read_ahead_kb": 4096,
    "block.vda.nr_requests": 128,
    "block.vda.wbt_lat_usec": 0,
    "cpufreq.governor": "performance",
    "cpufreq.epp": "power",
    "irq.default_affinity": "1",
    "irq.24.affinity": "0",
    "irq.25.affinity": [1],
    "sizing.vcpus": 0.5,
    "sizing.cpu_weight": 50,
    "sizing.memory_gib": 0.5,
    "sizing.cpuset_cpus": "0",
    "sizing.cpuset_mems": "0",
    "rightsize.cpu_cores": 0.5,
    "rightsize.memory_gib": 0.5,
    "rightsize.cpuset_cpus": "0",
    "affinity.cpus": 1,
    "affinity.placement": "spread",
    "sched.policy": "batch",
    "sched.nice": 5,
    "ioprio.class": "idle",
    "ioprio.level": 4,
}
#: families that act on something a fake tree cannot hold: run on a target the test owns
OWNED_TARGETS = {
    "nic.nva.gro": "on",  # a veth pair in a network namespace the test creates
}
PROCESS_KNOBS = ("affinity.cpus", "affinity.placement", "sched.policy", "sched.nice", "ioprio.class", "ioprio.level")


@dataclass
class Case:
    knob: Knob
    new: Any
    state: Callable[[], Any]


def _placements_equal() -> bool:
    from actuators.affinity import cpu_topology
    from optimizer.placement import PLACEMENTS, layout

    allowed, topo = sorted(os.sched_getaffinity(0)), cpu_topology()
    return all(len({tuple(layout(n, p, allowed, topo)) for p in PLACEMENTS}) == 1 for n in range(1, len(allowed) + 1))


def _thread_settings(pid: int) -> Any:
    import psutil

    return (
        sorted(os.sched_getaffinity(pid)),
        os.sched_getscheduler(pid),
        os.getpriority(os.PRIO_PROCESS, pid),
        tuple(int(x) for x in psutil.Process(pid).ionice()),
    )


@pytest.fixture(params=[*FAMILIES, *OWNED_TARGETS])
def case(request: pytest.FixtureRequest, fake_root: SysRoot, journal: Journal, kernel_mkdir: None) -> Iterator[Case]:
    name = request.param
    ctx = KnobContext()
    child = None
    cg = None
    netns = None
    if name == "sizing.vcpus":
        cg = WorkloadCgroup.create("contract", journal=journal, run_id="r", root=fake_root)
        ctx = KnobContext(cgroup=cg)
    elif name.startswith("sizing."):
        cg = WorkloadCgroup.create("contract", journal=journal, run_id="r", root=fake_root,
                                   controllers=("cpu", "memory", "cpuset"))
        ctx = KnobContext(cgroup=cg)
    elif name.startswith("rightsize."):
        fake_target_cgroup(fake_root.root, "/svc.slice/contract.service")
        ctx = KnobContext(target_cgroup="/svc.slice/contract.service")
    if name in PROCESS_KNOBS:
        if name == "affinity.cpus" and len(os.sched_getaffinity(0)) < 2:
            pytest.skip("affinity.cpus needs at least 2 allowed CPUs to make a change")
        if name == "affinity.placement" and _placements_equal():
            pytest.skip("every placement gives the same CPUs on this topology (too few CPUs); "
                        "layouts are checked on the 2-socket SMT fixture in test_placement.py")
        child = subprocess.Popen(["sleep", "60"])
        ctx = KnobContext(pids=lambda: [child.pid])
    if name.startswith("nic."):
        if os.geteuid() != 0 or shutil.which("ethtool") is None or shutil.which("ip") is None:
            pytest.skip("nic.* runs on a veth pair in a private namespace: needs root, ip and ethtool")
        netns = f"novatune-contract-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "add", "nva", "type", "veth", "peer", "name", "nvb"], check=True)
        ctx = KnobContext(netns=netns)

    def state() -> Any:
        procs = _thread_settings(child.pid) if child is not None else None
        nic = None
        if netns is not None:
            nic = subprocess.run(["ip", "netns", "exec", netns, "ethtool", "-k", "nva"],
                                 capture_output=True, text=True, check=True).stdout
        return tree_bytes(fake_root.root), procs, nic

    try:
        yield Case(Catalog(fake_root, ctx).get(name), {**FAMILIES, **OWNED_TARGETS}[name], state)
    finally:
        if child is not None:
            child.kill()
            child.wait()
        if cg is not None:
            cg.remove()
        if netns is not None:
            subprocess.run(["ip", "netns", "del", netns], check=False)


def test_read_apply_verify_restore_is_byte_identical(case: Case) -> None:
    knob = case.knob
    before = case.state()
    assert knob.available() is None
    old = knob.read()
    change = knob.plan(case.new)
    assert change.changes and change.knob == knob.name and knob.same(change.old, old)
    assert case.state() == before, "plan must not write"
    token = knob.apply(case.new)
    assert knob.verify(case.new)
    assert knob.same(knob.read(), knob.normalise(case.new))
    assert case.state() != before
    knob.restore(token)
    assert case.state() == before
    assert knob.same(knob.read(), old)


def _outside(knob: Knob) -> st.SearchStrategy[Any]:
    d = knob.domain
    if d.kind == "int":
        return st.one_of(st.integers(max_value=int(d.low) - 1), st.integers(min_value=int(d.high) + 1))
    return st.one_of(
        st.floats(max_value=d.low, exclude_max=True, allow_nan=False),
        st.floats(min_value=d.high, exclude_min=True, allow_nan=False),
        st.just(math.nan),
    )


def test_out_of_bounds_refused_and_nothing_written(case: Case) -> None:
    knob = case.knob
    before = case.state()
    if knob.domain.kind == "categorical":
        for bad in ("bogus", "", "[none]", 1, None):
            with pytest.raises(OutOfBounds, match=knob.name):
                knob.apply(bad)
        assert case.state() == before
        return

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=_outside(knob))
    def check(value: Any) -> None:
        with pytest.raises(OutOfBounds) as err:
            knob.apply(value)
        assert knob.name in str(err.value)
        assert case.state() == before

    check()
    for bad in (True, "x", None, [1]):
        with pytest.raises(OutOfBounds):
            knob.apply(bad)
    assert case.state() == before


def test_validate_never_writes(case: Case) -> None:
    before = case.state()
    assert case.knob.validate(case.new) == case.knob.normalise(case.new)
    assert case.state() == before


@pytest.mark.parametrize(
    "name",
    [
        "vm/../../etc",
        "vm.swappiness/../../etc/passwd",
        "block.../scheduler",
        "block.loop0/../x.scheduler",
        "block..scheduler",
        "block.loop0.nr_bogus",
        "block.loop0.queue/nr_requests",
        "irq.999.affinity",
        "irq.24.smp_affinity",
        "irq.24",
        "irq.-1.affinity",
        "irq.default_smp_affinity",
        "net.core.bogus",
        "net.ipv4.tcp_rmem.max",
        "cpufreq.cpu0.governor",
        "ksm.pages_to_scan",
        "kernel.panic",
        "block.sda.scheduler",
        "block.loop0",
        "vm.swappiness\x00",
        "vm.swap piness",
        " vm.swappiness",
        "vm.overcommit_memory",
        "kernel.sched_foo",
        "",
        "etc.passwd",
    ],
)
def test_unknown_and_escaping_names_refused(fake_root: SysRoot, name: str) -> None:
    with pytest.raises(UnknownKnob) as err:
        Catalog(fake_root).get(name)
    msg = str(err.value)
    assert "allowed" in msg and "vm.swappiness" in msg and "block.<dev>.scheduler" in msg


def test_catalog_lists_concrete_knobs(fake_root: SysRoot) -> None:
    cat = Catalog(fake_root)
    names = [k.name for k in cat.knobs()]
    assert names[:3] == ["vm.swappiness", "vm.dirty_ratio", "vm.dirty_background_ratio"]
    assert sorted(n for n in names if n != "instance.type") == sorted(FAMILIES), (
        "every knob of the fake tree is in the contract table"
    )
    blocks = [n for n in names if n.startswith("block.")]
    assert blocks == [
        "block.loop0.read_ahead_kb",
        "block.loop0.scheduler",
        "block.loop0.nr_requests",
        "block.loop0.rq_affinity",
        "block.loop0.nomerges",
        "block.loop0.wbt_lat_usec",
        "block.vda.read_ahead_kb",
        "block.vda.scheduler",
        "block.vda.nr_requests",
        "block.vda.wbt_lat_usec",
    ]
    assert names[-1] == "instance.type"  # plan only: see test_plan_only_family
    assert cat.get("vm.swappiness").sysctl_key == "vm.swappiness"
    assert cat.get("thp.enabled").sysctl_key is None
    assert cat.get("block.vda.scheduler").domain.choices == ("none", "mq-deadline", "kyber", "bfq")
    assert cat.get("block.vda.scheduler").read() == "mq-deadline"
    assert cat.get("thp.enabled").read() == "madvise"
    assert cat.get("sizing.vcpus").available() is not None
    assert "no workload processes" in (cat.get("affinity.cpus").available() or "")
    assert "block.<dev>.read_ahead_kb" in cat.patterns()


def test_unavailable_reasons(fake_root: SysRoot) -> None:
    (fake_root.root / "proc/sys/vm/swappiness").unlink()
    knob = Catalog(fake_root).get("vm.swappiness")
    assert "does not exist" in (knob.available() or "")
    no_pids = Catalog(fake_root, KnobContext(pids=lambda: [])).get("affinity.cpus")
    assert "no running process" in (no_pids.available() or "")


def test_sysroot_refuses_escapes(fake_root: SysRoot) -> None:
    from actuators.errors import ActuatorError, UnsafePath

    os.symlink("/etc", fake_root.root / "proc/sys/vm/evil")
    for rel in ("../x", "proc/../../etc/passwd", "proc/sys/vm/evil/passwd", "a\x00b", "", "/"):
        with pytest.raises(UnsafePath):
            fake_root.path(rel)
    with pytest.raises(ActuatorError):
        fake_root.write("proc/sys/vm/does_not_exist", "1")
    assert not (fake_root.root / "proc/sys/vm/does_not_exist").exists()


def test_read_ahead_rounds_to_pages(fake_root: SysRoot) -> None:
    knob = Catalog(fake_root).get("block.loop0.read_ahead_kb")
    page = os.sysconf("SC_PAGE_SIZE") // 1024
    assert knob.validate(page * 3 + 1) == page * 3


def test_vcpus_v1_quota_math(fake_root: SysRoot, journal: Journal) -> None:
    cg = WorkloadCgroup.create("math", journal=journal, run_id="r", root=fake_root)
    fake_cgroup_files(cg.path)
    knob = Catalog(fake_root, KnobContext(cgroup=cg)).get("sizing.vcpus")
    assert knob.read() == float(os.cpu_count() or 1)  # -1: no limit
    knob.apply(0.25)
    assert (cg.path / "cpu.cfs_quota_us").read_text() == "25000"
    assert (cg.path / "cpu.cfs_period_us").read_text() == "100000\n"
    assert knob.read() == 0.25
    cg.remove()
    assert not cg.path.exists()
    events = [(r["kind"], r["event"]) for r in journal.records()]
    assert events == [("cgroup", "created"), ("cgroup", "released")]


def test_cgroup_name_validated(fake_root: SysRoot, journal: Journal) -> None:
    from actuators import ActuatorError

    for bad in ("../x", "a/b", "", "x" * 65, "a b", ".."):
        with pytest.raises(ActuatorError):
            WorkloadCgroup.create(bad, journal=journal, run_id="r", root=fake_root)
    assert journal.records() == []


def test_vcpus_cgroup_v2(tmp_path: Path, journal: Journal) -> None:
    base = tmp_path / "v2"
    (base / "sys/fs/cgroup").mkdir(parents=True)
    (base / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (base / "sys/fs/cgroup/cgroup.subtree_control").write_text("memory\n")
    root = SysRoot(base)
    cg = WorkloadCgroup.create("v2", journal=journal, run_id="r", root=root)
    assert cg.version == 2 and cg.path == root.root / "sys/fs/cgroup/novatune-v2"
    assert (base / "sys/fs/cgroup/cgroup.subtree_control").read_text() == "+cpu"
    (cg.path / "cpu.max").write_text("max 100000\n")
    (cg.path / "cgroup.procs").write_text("")
    knob = Catalog(root, KnobContext(cgroup=cg)).get("sizing.vcpus")
    assert knob.read() == float(os.cpu_count() or 1)
    token = knob.apply(0.5)
    assert (cg.path / "cpu.max").read_text() == "50000 100000"
    assert knob.verify(0.5)
    knob.restore(token)
    assert (cg.path / "cpu.max").read_text() == "max 100000\n"
    cg.remove()
    targets = [(r["event"], r["target"]) for r in journal.records()]
    assert targets == [
        ("created", "sys/fs/cgroup/cgroup.subtree_control"),
        ("created", "sys/fs/cgroup/novatune-v2"),
        ("released", "sys/fs/cgroup/novatune-v2"),
        ("released", "sys/fs/cgroup/cgroup.subtree_control"),
    ]
    assert (base / "sys/fs/cgroup/cgroup.subtree_control").read_text() == "-cpu"  # plain file: what was written


def test_no_cgroup_controller(tmp_path: Path, journal: Journal) -> None:
    from actuators import KnobUnavailable

    with pytest.raises(KnobUnavailable, match="no cgroup cpu controller"):
        WorkloadCgroup.create("x", journal=journal, run_id="r", root=SysRoot(tmp_path))


def test_plan_only_family_never_writes(fake_root: SysRoot) -> None:
    """instance.type is the one family that is never applied: it refuses, and writes nothing."""
    from actuators import KnobUnavailable

    knob = Catalog(fake_root, KnobContext(instance_types=("m5.large", "c5.large"))).get("instance.type")
    before = tree_bytes(fake_root.root)
    assert "plan only" in (knob.available() or "")
    with pytest.raises(OutOfBounds):
        knob.apply("z9.huge")
    with pytest.raises(KnobUnavailable, match="plan only"):
        knob.apply("c5.large")
    assert tree_bytes(fake_root.root) == before
