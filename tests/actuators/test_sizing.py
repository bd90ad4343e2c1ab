"""sizing.cpu_weight / memory_gib / cpuset_*: the contract on a fake v1 tree, and on a real cgroup."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actuators import ChangeSession, Journal, OutOfBounds, SysRoot, WorkloadCgroup
from actuators.sizing import SIZING, sizing_knob
from collectors.kernelfiles import parse_cpu_list
from tests.actuators.conftest import tree_bytes

GIB = 1024**3
UNLIMITED = "9223372036854771712\n"
#: what the fake kernel puts in a new directory of each v1 hierarchy
NEW_DIR = {
    "cpu": {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n", "cpu.shares": "1024\n", "cgroup.procs": ""},
    "memory": {"memory.limit_in_bytes": UNLIMITED, "memory.usage_in_bytes": f"{200 * 1024**2}\n",
               "memory.stat": f"cache 0\ntotal_inactive_file {40 * 1024**2}\n", "cgroup.procs": ""},
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n", "cgroup.procs": ""},
}


def _tree(base: Path) -> Path:
    files = {
        "proc/meminfo": "MemTotal:       16384000 kB\nMemFree:        1000 kB\n",
        "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": UNLIMITED,
        "sys/fs/cgroup/cpuset/cpuset.cpus": "0-3\n",
        "sys/fs/cgroup/cpuset/cpuset.mems": "0-1\n",
    }
    for rel, text in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return base


@pytest.fixture
def fake_cgroup(tmp_path, monkeypatch):
    """A WorkloadCgroup with cpu, memory and cpuset on a fake v1 tree; mkdir plays the kernel."""
    root = SysRoot(_tree(tmp_path / "root"))
    real_mkdir = os.mkdir

    def kernel_mkdir(path, mode=0o777, **kw):
        real_mkdir(path, mode, **kw)
        ctl = Path(path).parent.name
        for name, text in NEW_DIR.get(ctl, {}).items():
            (Path(path) / name).write_text(text)

    monkeypatch.setattr(os, "mkdir", kernel_mkdir)
    journal = Journal(tmp_path / "journal.jsonl")
    cg = WorkloadCgroup.create("t", journal=journal, run_id="r", root=root, controllers=("cpu", "memory", "cpuset"))
    return cg, journal, tmp_path / "root"


def test_cgroup_has_a_directory_per_controller(fake_cgroup):
    cg, _, base = fake_cgroup
    assert set(cg.dirs) == {"cpu", "memory", "cpuset"}
    assert (base / "sys/fs/cgroup/cpuset/novatune-t/cpuset.cpus").read_text() == "0-3"  # from the parent
    assert len(cg.procs_files) == 3
    cg.remove()
    assert not any((base / "sys/fs/cgroup" / c / "novatune-t").exists() for c in ("cpu", "memory", "cpuset"))


@pytest.mark.parametrize("comounted", [False, True])
def test_accounting_controllers_get_a_directory_unless_comounted_with_cpu(tmp_path, comounted):
    base = _tree(tmp_path / "root")
    cg_root = base / "sys/fs/cgroup"
    if comounted:  # the usual systemd layout: cpu and cpuacct -> cpu,cpuacct
        (cg_root / "cpu").rename(cg_root / "cpu,cpuacct")
        (cg_root / "cpu,cpuacct" / "cpuacct.usage").write_text("0\n")
        (cg_root / "cpu").symlink_to("cpu,cpuacct")
        (cg_root / "cpuacct").symlink_to("cpu,cpuacct")
    else:
        (cg_root / "cpuacct").mkdir()
        (cg_root / "cpuacct/cpuacct.usage").write_text("0\n")
    (cg_root / "blkio").mkdir()
    (cg_root / "blkio/blkio.throttle.io_service_bytes").write_text("Total 0\n")
    journal = Journal(tmp_path / "journal.jsonl")
    cg = WorkloadCgroup.create("acct", journal=journal, run_id="r", root=SysRoot(base),
                               controllers=("cpu", "cpuacct", "blkio"))
    assert cg.dir_for("blkio") == "sys/fs/cgroup/blkio/novatune-acct"
    if comounted:
        assert cg.dir_for("cpuacct") == cg.dir_for("cpu")
        assert len(cg.procs_files) == 2
    else:
        assert cg.dir_for("cpuacct") == "sys/fs/cgroup/cpuacct/novatune-acct"
        assert (cg_root / "cpuacct/novatune-acct").is_dir() and len(cg.procs_files) == 3
    cg.remove()
    assert not [p for p in cg_root.rglob("novatune-acct")]
    assert Journal.open_resources(journal.records(), "cgroup") == []  # every directory journaled and released


@pytest.mark.parametrize(
    "name, value, written",
    [
        ("sizing.cpu_weight", 50, ("cpu", "cpu.shares", "512")),
        ("sizing.memory_gib", 1.0, ("memory", "memory.limit_in_bytes", str(GIB))),
        ("sizing.cpuset_cpus", "0-1", ("cpuset", "cpuset.cpus", "0-1")),
        ("sizing.cpuset_mems", "0", ("cpuset", "cpuset.mems", "0")),
    ],
)
def test_contract_apply_verify_restore_is_byte_identical(fake_cgroup, name, value, written):
    cg, journal, base = fake_cgroup
    before = tree_bytes(base)
    knob = sizing_knob(name, cg)
    assert knob.available() is None
    with ChangeSession(journal, run_id="r", trial=0) as session:
        session.apply(knob, value)
        ctl, leaf, text = written
        assert (base / "sys/fs/cgroup" / ctl / "novatune-t" / leaf).read_text() == text
        assert knob.verify(value)
    assert tree_bytes(base) == before


def test_defaults_read_back(fake_cgroup):
    cg, _, _ = fake_cgroup
    assert sizing_knob("sizing.cpu_weight", cg).read() == 100
    assert sizing_knob("sizing.memory_gib", cg).read() == pytest.approx(16384000 * 1024 / GIB)  # no limit = RAM
    assert sizing_knob("sizing.cpuset_cpus", cg).domain.choices == ("0", "0-1", "0-2", "0-3")
    assert sizing_knob("sizing.cpuset_mems", cg).domain.choices == ("0", "0-1")


def test_memory_is_floored_above_the_working_set(fake_cgroup):
    cg, _, base = fake_cgroup
    knob = sizing_knob("sizing.memory_gib", cg)
    before = tree_bytes(base)
    # working set = 200 MiB - 40 MiB inactive file = 160 MiB; x1.25 = 200 MiB
    with pytest.raises(OutOfBounds, match=r"below 1.25x the workload's working set; allowed: \[0.195"):
        knob.apply(0.15)
    knob.validate(0.25)  # 256 MiB is above the floor
    assert tree_bytes(base) == before


def _in_weight_range(text: str) -> bool:
    """A string the domain accepts as a number in [1, 10000] (e.g. "1") is a valid weight, not a bad input."""
    try:
        v = float(text.strip())
    except ValueError:
        return False
    return v.is_integer() and 1 <= v <= 10000


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=10001), st.floats(allow_nan=True).filter(
    lambda f: not (1 <= f <= 10000) or f != f), st.booleans(),
    st.text(max_size=5).filter(lambda t: not _in_weight_range(t))))
def test_cpu_weight_out_of_bounds_writes_nothing(fake_cgroup, value):
    cg, _, base = fake_cgroup
    before = tree_bytes(base)
    with pytest.raises(OutOfBounds, match="sizing.cpu_weight"):
        sizing_knob("sizing.cpu_weight", cg).apply(value)
    assert tree_bytes(base) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.floats(max_value=0.06), st.floats(min_value=15.7, allow_infinity=True)))
def test_memory_out_of_bounds_writes_nothing(fake_cgroup, value):
    cg, _, base = fake_cgroup
    before = tree_bytes(base)
    with pytest.raises(OutOfBounds, match="sizing.memory_gib"):
        sizing_knob("sizing.memory_gib", cg).apply(value)
    assert tree_bytes(base) == before


@pytest.mark.parametrize("value", ["0-7", "1", "0,2", "../x", ""])
def test_cpuset_outside_the_parent_is_refused(fake_cgroup, value):
    cg, _, base = fake_cgroup
    before = tree_bytes(base)
    with pytest.raises(OutOfBounds, match="choices"):
        sizing_knob("sizing.cpuset_cpus", cg).apply(value)
    assert tree_bytes(base) == before


def test_without_a_cgroup_every_sizing_knob_is_unavailable_with_a_reason():
    for name in SIZING:
        assert "no workload cgroup" in sizing_knob(name, None).available()


def test_parse_cpu_list():
    assert parse_cpu_list("0-2,4\n") == (0, 1, 2, 4)
    with pytest.raises(ValueError):
        parse_cpu_list("3-1")


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
                    reason="needs root and cgroup v1 memory + cpuset hierarchies")
def test_real_cgroup_memory_weight_cpuset(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    name = f"test-{uuid.uuid4().hex[:8]}"
    cg = WorkloadCgroup.create(name, journal=journal, run_id=name, controllers=("cpu", "memory", "cpuset"))
    proc = subprocess.Popen(["sleep", "30"])
    try:
        cg.attach(proc.pid)
        knobs = {n: sizing_knob(n, cg) for n in SIZING}
        with ChangeSession(journal, run_id=name, trial=0) as s:
            s.apply(knobs["sizing.memory_gib"], 0.5)
            s.apply(knobs["sizing.cpu_weight"], 50)
            s.apply(knobs["sizing.cpuset_cpus"], "0")
            mem = Path(f"/sys/fs/cgroup/memory/novatune-{name}/memory.limit_in_bytes").read_text()
            assert int(mem) == GIB // 2
            assert Path(f"/sys/fs/cgroup/cpu/novatune-{name}/cpu.shares").read_text().strip() == "512"
            assert os.sched_getaffinity(proc.pid) == {0}  # the kernel applied the cpuset
        assert knobs["sizing.cpu_weight"].read() == 100
        assert knobs["sizing.memory_gib"].read() > 1
    finally:
        cg.remove()
        proc.wait(timeout=10)
    for ctl in ("cpu", "memory", "cpuset"):
        assert not Path(f"/sys/fs/cgroup/{ctl}/novatune-{name}").exists()


def test_cgroup_v2_enables_and_disables_the_controllers_it_needs(tmp_path):
    from actuators import Catalog, KnobContext, recover

    base = tmp_path / "v2"
    (base / "sys/fs/cgroup").mkdir(parents=True)
    (base / "proc").mkdir()
    (base / "proc/meminfo").write_text("MemTotal:       16384000 kB\n")
    (base / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (base / "sys/fs/cgroup/cgroup.subtree_control").write_text("cpu\n")  # cpu on already: not ours to disable
    (base / "sys/fs/cgroup/cpuset.cpus.effective").write_text("0-1\n")
    root = SysRoot(base)
    journal = Journal(tmp_path / "j.jsonl")
    cg = WorkloadCgroup.create("v2", journal=journal, run_id="r", root=root, controllers=("cpu", "memory", "cpuset"))
    assert cg.enabled_in_parent == ["memory", "cpuset"]
    for name, text in {"memory.max": "max\n", "memory.current": f"{100 * 1024**2}\n",
                       "memory.stat": "inactive_file 0\n",
                       "cpu.weight": "100\n", "cpuset.cpus": "\n", "cgroup.procs": ""}.items():
        (cg.path / name).write_text(text)
    cat = Catalog(root, KnobContext(cgroup=cg))
    mem, weight = cat.get("sizing.memory_gib"), cat.get("sizing.cpu_weight")
    assert mem.read() == pytest.approx(16384000 / 1024**2) and weight.read() == 100
    with ChangeSession(journal, run_id="r", trial=0) as s:
        s.apply(mem, 1.0)
        s.apply(weight, 300)
        assert (cg.path / "memory.max").read_text() == str(GIB) and (cg.path / "cpu.weight").read_text() == "300"
    assert (cg.path / "memory.max").read_text() == "max\n"
    cg.remove()
    assert (base / "sys/fs/cgroup/cgroup.subtree_control").read_text() == "-memory"  # plain file: the last write
    rec = [r for r in journal.records() if r["target"] == "sys/fs/cgroup/cgroup.subtree_control"]
    assert rec[0]["controllers"] == ["memory", "cpuset"] and rec[-1]["event"] == "released"
    assert recover(journal, root=root, force=True).cgroups_removed == []  # nothing left open


def test_recover_disables_v2_controllers_a_killed_run_enabled(tmp_path):
    from actuators import recover

    base = tmp_path / "v2"
    (base / "sys/fs/cgroup").mkdir(parents=True)
    (base / "sys/fs/cgroup/cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (base / "sys/fs/cgroup/cgroup.subtree_control").write_text("\n")
    root = SysRoot(base)
    journal = Journal(tmp_path / "j.jsonl")
    WorkloadCgroup.create("dead", journal=journal, run_id="dead", root=root, controllers=("cpu", "memory"))
    # the run "dies" here: its cgroup and the controllers it enabled stay
    report = recover(journal, root=root, force=True)
    assert report.cgroups_removed == ["sys/fs/cgroup/novatune-dead"] and report.failed == []
    assert not (base / "sys/fs/cgroup/novatune-dead").exists()
    assert (base / "sys/fs/cgroup/cgroup.subtree_control").read_text() == "-cpu"  # -memory, then -cpu: reverse order
