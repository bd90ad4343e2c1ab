"""The right-sizing workflow on a real running target (a cgroup of our own with a bounded child): apply through
the journal, read the kernel files back, roll back to the exact old bytes, validate (and roll back on a forced
degradation), and every refusal before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actuators import Catalog, Journal, SysRoot
from collectors.passive.allowed import PassivePolicy, TargetRefused
from experiments.deploy.applications import ApplyConflict, ApplyError, history, status
from experiments.deploy.apply import apply_config, apply_to_target
from experiments.deploy.rollback import rollback as rollback_application
from experiments.rightsizing import workflow
from experiments.rightsizing.health import CgroupHealthSampler, Health
from experiments.rightsizing.proposals import InvalidTransition, ProposalError, ProposalStore
from experiments.settings import Paths, Settings
from tests.actuators.conftest import REPO
from tests.actuators.rightsize_target import RealTarget, real_target

GIB = 1024**3
FILES = (("cpu", "cpu.cfs_quota_us"), ("memory", "memory.limit_in_bytes"), ("cpuset", "cpuset.cpus"))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home")


@pytest.fixture
def store(paths: Paths) -> ProposalStore:
    return ProposalStore(paths.rightsizing_db)


@pytest.fixture
def busy() -> Iterator[RealTarget]:
    with real_target("busy") as t:
        yield t


@pytest.fixture
def idle() -> Iterator[RealTarget]:
    with real_target("idle") as t:
        yield t


def _bytes(t: RealTarget) -> dict[str, bytes]:
    return {leaf: t.file(ctl, leaf).read_bytes() for ctl, leaf in FILES}


def _allowing(t: RealTarget) -> Settings:
    return Settings(allowed_targets=[f"cgroup:{t.cgroup}"])


def _approved(store: ProposalStore, target: str, values: dict[str, Any]) -> str:
    pid = store.create(target=target, profile="balanced", recommendation={"finding": "over-provisioned"},
                       values=values, who="recommender").id
    workflow.approve(store, pid, who="alice", note="ok")
    return pid


def test_apply_then_rollback_restores_exact_bytes(busy: RealTarget, store: ProposalStore, paths: Paths) -> None:
    before = _bytes(busy)
    pid = _approved(store, f"cgroup:{busy.cgroup}",
                    {"rightsize.cpu_cores": 0.75, "rightsize.memory_gib": 0.5, "rightsize.cpuset_cpus": "0"})
    p = workflow.apply(store, pid, paths=paths, settings=_allowing(busy), who="bob")
    assert p.state == "applied" and p.application is not None
    assert p.history[-1].who == "bob" and "rightsize.cpu_cores" in (p.history[-1].note or "")
    assert busy.file("cpu", "cpu.cfs_quota_us").read_text() == "75000\n"
    assert int(busy.file("memory", "memory.limit_in_bytes").read_text()) == GIB // 2
    assert busy.file("cpuset", "cpuset.cpus").read_text() == "0\n"
    app = next(a for a in history(paths) if a.id == p.application)
    assert app.state == "applied" and app.target == f"cgroup:{busy.cgroup}"
    assert {k.target for k in app.knobs} == {f"sys/fs/cgroup/{c}{busy.cgroup}/{leaf}" for c, leaf in FILES}
    live = status(paths, catalog=Catalog(SysRoot("/")))  # each knob bound back to the target from its record
    assert live["drift"] == [] and {k["knob"]: k["live"] for k in live["active"][0]["knobs"]}["rightsize.cpu_cores"] \
        == 0.75
    p = workflow.rollback(store, pid, paths=paths, who="carol", note="manual")
    assert p.state == "rolled_back" and p.history[-1].who == "carol"
    assert _bytes(busy) == before
    assert next(a for a in history(paths) if a.id == p.application).state == "rolled_back"


def test_novatune_rollback_of_the_application_then_the_proposal(idle: RealTarget, store: ProposalStore,
                                                                paths: Paths) -> None:
    before = _bytes(idle)
    pid = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 0.5, "rightsize.memory_gib": 0.5})
    p = workflow.apply(store, pid, paths=paths, settings=_allowing(idle), who="bob")
    assert p.application is not None
    done = rollback_application(p.application, paths=paths)  # `novatune rollback ID`, default catalog
    assert sorted(k.knob for k in done.knobs) == ["rightsize.cpu_cores", "rightsize.memory_gib"]
    assert _bytes(idle) == before
    p = workflow.rollback(store, pid, paths=paths, who="carol")
    assert p.state == "rolled_back" and _bytes(idle) == before


def test_two_targets_are_independent_and_one_file_is_held(busy: RealTarget, idle: RealTarget, store: ProposalStore,
                                                          paths: Paths) -> None:
    settings = Settings(allowed_targets=[f"cgroup:{busy.cgroup}", f"cgroup:{idle.cgroup}"])
    a = _approved(store, f"cgroup:{busy.cgroup}", {"rightsize.cpu_cores": 1.5})
    b = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 0.5})
    c = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 0.25})
    workflow.apply(store, a, paths=paths, settings=settings, who="bob")
    workflow.apply(store, b, paths=paths, settings=settings, who="bob")  # another cgroup: not held by a
    with pytest.raises(ApplyConflict, match="held by application"):  # the same file: roll b back first
        workflow.apply(store, c, paths=paths, settings=settings, who="bob")
    assert idle.file("cpu", "cpu.cfs_quota_us").read_text() == "50000\n"
    assert store.get(c).state == "approved"
    for pid in (b, a):
        workflow.rollback(store, pid, paths=paths, who="carol")


def test_target_not_allowed_is_refused_and_nothing_written(idle: RealTarget, store: ProposalStore,
                                                          paths: Paths) -> None:
    before = _bytes(idle)
    pid = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 0.5, "rightsize.memory_gib": 0.5})
    for settings in (Settings(allowed_targets=[]), Settings(allowed_targets=["cgroup:/somewhere-else"])):
        with pytest.raises(TargetRefused, match="not an allowed target") as err:
            workflow.apply(store, pid, paths=paths, settings=settings, who="bob")
        assert err.value.http_status == 422
    assert _bytes(idle) == before
    assert Journal(paths.journal).records() == []
    assert store.get(pid).state == "approved"


def test_root_cgroup_is_refused(store: ProposalStore, paths: Paths) -> None:
    quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    before = quota.read_bytes() if quota.exists() else None
    pid = _approved(store, "cgroup:/", {"rightsize.cpu_cores": 0.5, "rightsize.memory_gib": 0.5})
    with pytest.raises(ProposalError, match="root cgroup"):
        workflow.apply(store, pid, paths=paths, settings=Settings(), who="bob")
    with pytest.raises(ApplyError, match="root cgroup"):
        apply_to_target({"rightsize.cpu_cores": 0.5}, target="/", policy=PassivePolicy(), paths=paths, source="t")
    with pytest.raises(ValueError, match="root cgroup"):
        Settings(allowed_targets=["cgroup:/"])
    assert (quota.read_bytes() if quota.exists() else None) == before


def _cpu_cgroup_of_self() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctl, path = line.split(":", 2)
        if "cpu" in ctl.split(","):
            return path
    pytest.skip("no cgroup v1 cpu line in /proc/self/cgroup")


def test_cgroup_holding_this_process_is_refused(idle: RealTarget, store: ProposalStore, paths: Paths) -> None:
    """This pytest process moves (cpu hierarchy only) into the test's own cgroup for the test, then back: whatever
    happens, a broken check could only write the test's cgroup, never one of the machine's."""
    home = _cpu_cgroup_of_self()
    before = _bytes(idle)
    pid = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 0.5})
    idle.file("cpu", "cgroup.procs").write_text(str(os.getpid()))
    try:
        with pytest.raises(TargetRefused, match="novatune itself"):
            workflow.apply(store, pid, paths=paths, settings=_allowing(idle), who="bob")
    finally:
        Path(f"/sys/fs/cgroup/cpu{home}/cgroup.procs".replace("//", "/")).write_text(str(os.getpid()))
    assert _cpu_cgroup_of_self() == home
    assert _bytes(idle) == before and Journal(paths.journal).records() == []


def test_values_out_of_bounds_refused_naming_knob_value_and_range(idle: RealTarget, store: ProposalStore,
                                                                 paths: Paths) -> None:
    before = _bytes(idle)
    pid = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 1000.0, "rightsize.memory_gib": 4096.0})
    with pytest.raises(ApplyError) as err:
        workflow.apply(store, pid, paths=paths, settings=_allowing(idle), who="bob")
    msg = str(err.value)
    assert "rightsize.cpu_cores: 1000.0" in msg and "rightsize.memory_gib: 4096.0" in msg and "allowed" in msg
    assert "[0.05, " in msg
    assert _bytes(idle) == before and Journal(paths.journal).records() == []
    assert store.get(pid).state == "approved"


def test_apply_needs_approval_and_other_paths_stay_closed(idle: RealTarget, store: ProposalStore,
                                                         paths: Paths) -> None:
    before = _bytes(idle)
    pid = store.create(target=f"cgroup:{idle.cgroup}", profile="balanced", recommendation={},
                       values={"rightsize.cpu_cores": 0.5}).id
    with pytest.raises(InvalidTransition, match="allowed next: approved, rejected"):
        workflow.apply(store, pid, paths=paths, settings=_allowing(idle), who="bob")
    workflow.reject(store, pid, who="alice", note="no")
    with pytest.raises(InvalidTransition, match="rejected"):
        workflow.approve(store, pid, who="alice")
    with pytest.raises(ApplyError, match="vm.swappiness"):  # host knobs do not take this path
        apply_to_target({"vm.swappiness": 10}, target=idle.cgroup, policy=PassivePolicy.of([f"cgroup:{idle.cgroup}"]),
                        paths=paths, source="t")
    with pytest.raises(ApplyError, match="rightsize.cpu_cores"):  # nor do rightsize knobs take the host path
        apply_config({"rightsize.cpu_cores": 0.5}, paths=paths, source="t", catalog=Catalog(SysRoot("/")))
    assert _bytes(idle) == before


def _validate(store: ProposalStore, paths: Paths, pid: str, t: RealTarget, sampler: CgroupHealthSampler,
              baseline: Health, **kw: Any) -> Any:
    return workflow.validate(store, pid, baseline=baseline, duration_s=kw.pop("duration_s", 2.5), sample=sampler,
                             paths=paths, interval_s=0.5, **kw)


@pytest.mark.slow
def test_harmless_change_is_validated_and_stays(busy: RealTarget, store: ProposalStore, paths: Paths) -> None:
    sampler = CgroupHealthSampler(busy.cgroup)
    baseline = sampler()
    pid = _approved(store, f"cgroup:{busy.cgroup}", {"rightsize.cpu_cores": 1.8, "rightsize.memory_gib": 1.0})
    workflow.apply(store, pid, paths=paths, settings=_allowing(busy), who="bob")
    p = _validate(store, paths, pid, busy, sampler, baseline)
    assert p.state == "validated", p.history[-1]
    assert "no degradation" in (p.history[-1].note or "")
    assert busy.file("cpu", "cpu.cfs_quota_us").read_text() == "180000\n"
    workflow.rollback(store, pid, paths=paths, who="carol")


@pytest.mark.slow
def test_heavy_throttling_rolls_back(busy: RealTarget, store: ProposalStore, paths: Paths) -> None:
    before = _bytes(busy)
    sampler = CgroupHealthSampler(busy.cgroup)
    baseline = sampler()
    assert not baseline.throttled_ratio
    pid = _approved(store, f"cgroup:{busy.cgroup}", {"rightsize.cpu_cores": 0.1, "rightsize.memory_gib": 1.0})
    workflow.apply(store, pid, paths=paths, settings=_allowing(busy), who="bob")
    p = _validate(store, paths, pid, busy, sampler, baseline)
    assert p.state == "rolled_back"
    assert (p.history[-1].note or "").startswith("automatic rollback: throttling")
    assert _bytes(busy) == before


@pytest.mark.slow
def test_oom_kill_rolls_back(idle: RealTarget, store: ProposalStore, paths: Paths) -> None:
    if "oom_kill " not in idle.file("memory", "memory.oom_control").read_text():
        pytest.skip("this kernel's memory.oom_control has no oom_kill counter")
    before = _bytes(idle)
    sampler = CgroupHealthSampler(idle.cgroup)
    baseline = sampler()
    pid = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 1.0, "rightsize.memory_gib": 0.0625})
    workflow.apply(store, pid, paths=paths, settings=_allowing(idle), who="bob")
    idle.grow(200)  # far above the 64 MiB limit: the kernel kills it
    idle.child.wait(timeout=20)
    p = _validate(store, paths, pid, idle, sampler, baseline)
    assert p.state == "rolled_back"
    assert (p.history[-1].note or "").startswith("automatic rollback: OOM kill")
    assert _bytes(idle) == before


def test_stopped_validation_rolls_back(idle: RealTarget, store: ProposalStore, paths: Paths) -> None:
    before = _bytes(idle)
    sampler = CgroupHealthSampler(idle.cgroup)
    baseline = sampler()
    pid = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 1.0, "rightsize.memory_gib": 1.0})
    workflow.apply(store, pid, paths=paths, settings=_allowing(idle), who="bob")
    stop = threading.Event()
    stop.set()
    p = _validate(store, paths, pid, idle, sampler, baseline, stop=stop.is_set, duration_s=60)
    assert p.state == "rolled_back" and "stopped" in (p.history[-1].note or "")
    assert _bytes(idle) == before
    with pytest.raises(InvalidTransition):
        _validate(store, paths, pid, idle, sampler, baseline)


def test_target_names() -> None:
    assert workflow.target_cgroup("cgroup:/a/b") == "/a/b"
    assert workflow.target_cgroup("unit:nginx.service") == "/system.slice/nginx.service"
    for bad in ("cgroup:/", "cgroup:/a/../b", "exe:/bin/sh", "unit:../x.service", "pid:abc", "nginx"):
        with pytest.raises(ProposalError):
            workflow.target_cgroup(bad)


KILL_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from actuators import rightsize
from experiments.rightsizing import workflow
from experiments.rightsizing.proposals import ProposalStore
from experiments.settings import Paths, Settings


def stall(self, token):  # the memory intent is journaled (fsynced); the process dies before writing it
    print("ready", flush=True)
    time.sleep(120)


rightsize.MemoryGibKnob.commit = stall
paths = Paths(Path(sys.argv[2]))
workflow.apply(ProposalStore(paths.rightsizing_db), sys.argv[3], paths=paths,
               settings=Settings(allowed_targets=["cgroup:" + sys.argv[4]]), who="doomed")
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9-then-recover", "ctrl-c"])
def test_killed_mid_apply_leaves_the_target_as_found(idle: RealTarget, store: ProposalStore, paths: Paths,
                                                     tmp_path: Path, sig: signal.Signals) -> None:
    """Killed between the journal write and the write: kill -9 leaves the journal to `novatune recover`, which
    restores both files; Ctrl-C restores them in the process itself (recover then finds nothing to do)."""
    before = _bytes(idle)
    pid = _approved(store, f"cgroup:{idle.cgroup}", {"rightsize.cpu_cores": 0.3, "rightsize.memory_gib": 0.5})
    script = tmp_path / "apply.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), REPO, str(paths.home), pid, idle.cgroup],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert idle.file("cpu", "cpu.cfs_quota_us").read_text() == "30000\n"  # the first knob was written
        proc.send_signal(sig)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if sig == signal.SIGINT:
        assert _bytes(idle) == before  # put back before the process ended
    env = {**os.environ, "NOVATUNE_HOME": str(paths.home)}
    rec = subprocess.run([sys.executable, "-m", "experiments", "recover", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert rec.returncode == 0, rec.stderr
    knobs = sorted(k["knob"] for k in json.loads(rec.stdout)["knobs"])
    assert knobs == ([] if sig == signal.SIGINT else ["rightsize.cpu_cores", "rightsize.memory_gib"])
    assert _bytes(idle) == before
    assert store.get(pid).state == "approved"  # never recorded as applied
    assert [a.state for a in history(paths)] == ["failed"]
