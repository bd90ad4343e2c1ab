"""Sampling real targets: a cgroup of the test's own holding bounded children (busy loops, allocations), its
quota and memory limit set by the test; targets the policy refuses; a target that vanishes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from collectors.passive.allowed import PassivePolicy, TargetRefused
from collectors.usage.errors import TargetNotFound, UsageError
from collectors.usage.history import UsageStore
from collectors.usage.observe import Observer
from collectors.usage.sampler import UsageSampler
from collectors.usage.target import parse_target, resolve_target

from .conftest import ALLOC, BUSY

pytestmark = pytest.mark.slow
MIB = 2**20 / 2**30  # one MiB in GiB


def _policy(*rules: str) -> PassivePolicy:
    return PassivePolicy.of(rules)


def _cpu_s(*procs: subprocess.Popen[str]) -> float:
    """The CPU seconds the children used so far (the independent truth: the machine's 2 cores are shared, so a
    busy loop of fraction f gets at most f of a core)."""
    return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs)


def test_cpu_is_the_busy_fraction_and_memory_the_working_set_allocated(live_cgroup):
    busy = live_cgroup.spawn(BUSY, 0.5, 6)
    live_cgroup.spawn(ALLOC, 200, 6, wait_ready=True)
    target = resolve_target(f"cgroup:{live_cgroup.rel}", policy=_policy(f"cgroup:{live_cgroup.rel}"))
    assert set(target.dirs) == {"cpu", "cpuacct", "memory"} and target.tree == frozenset()
    c0, t0 = _cpu_s(busy), time.monotonic()
    sampler = UsageSampler(target)
    time.sleep(3)
    s = sampler.sample()
    truth = (_cpu_s(busy) - c0) / (time.monotonic() - t0)
    assert s.cpu_cores == pytest.approx(truth, rel=0.15, abs=0.03), (s, truth)
    assert 0.2 <= s.cpu_cores <= 0.6, s  # the busy fraction, less what the shared cores did not give it
    assert 200 * MIB <= s.mem_gib <= 280 * MIB, s
    assert s.mem_usage_gib >= s.mem_gib
    assert s.cpu_capacity == len(os.sched_getaffinity(0)) or s.cpu_capacity >= 1  # no quota: the CPUs
    assert s.throttled_ratio == 0.0 and s.oom_kills == 0
    assert s.psi_source in ("host", "")


def test_a_quota_set_on_the_cgroup_is_its_capacity_and_throttles_a_busy_child(live_cgroup):
    live_cgroup.write("cpu", "cpu.cfs_period_us", "100000")
    live_cgroup.write("cpu", "cpu.cfs_quota_us", "20000")
    live_cgroup.spawn(BUSY, 1.0, 5)
    sampler = UsageSampler(resolve_target(f"cgroup:{live_cgroup.rel}", policy=_policy(f"cgroup:{live_cgroup.rel}")))
    time.sleep(2.5)
    s = sampler.sample()
    assert s.cpu_capacity == pytest.approx(0.2)
    assert 0.12 <= s.cpu_cores <= 0.25, s
    assert s.throttled_ratio > 0.5, s


def test_an_allocation_beyond_the_memory_limit_is_an_oom_kill(live_cgroup):
    live_cgroup.write("memory", "memory.limit_in_bytes", str(64 * 2**20))
    target = resolve_target(f"cgroup:{live_cgroup.rel}", policy=_policy(f"cgroup:{live_cgroup.rel}"))
    sampler = UsageSampler(target)
    p = live_cgroup.spawn(ALLOC, 200, 5)
    assert p.wait(timeout=30) == -9  # killed by the OOM killer
    s = sampler.sample()
    assert s.oom_kills >= 1
    assert s.mem_capacity == pytest.approx(64 * MIB)
    assert sampler.sample().oom_kills == 0  # counted once


def test_a_pid_in_the_root_cpu_cgroup_is_read_from_its_process_tree():
    with open("/proc/self/cgroup") as fh:
        if not any(line.split(":")[1:] == ["cpuacct", "/\n"] for line in fh):
            pytest.skip("this process is not in the root cpuacct cgroup")
    child = subprocess.Popen([sys.executable, "-c", BUSY, "0.5", "6"], text=True)
    try:
        exe = os.path.realpath(f"/proc/{child.pid}/exe")
        target = resolve_target(f"pid:{child.pid}", policy=_policy(f"exe:{exe}"))
        assert "cpu" in target.tree and target.pid == child.pid
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        own_memcg = next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory")
        assert ("memory" in target.tree) == (own_memcg != "/")  # shared with this test (and more): the tree
        c0, t0 = _cpu_s(child), time.monotonic()
        sampler = UsageSampler(target)
        time.sleep(3)
        s = sampler.sample()
        truth = (_cpu_s(child) - c0) / (time.monotonic() - t0)
        assert s.cpu_cores == pytest.approx(truth, rel=0.15, abs=0.03), (s, truth)
        assert 0.2 <= s.cpu_cores <= 0.6, s
        rss = psutil.Process(child.pid).memory_info().rss / 2**30
        assert s.mem_gib == pytest.approx(rss, rel=0.2), (s, rss)
    finally:
        child.kill()
        child.wait()


def test_targets_the_policy_refuses(live_cgroup):
    live_cgroup.spawn(BUSY, 0.1, 5)
    with pytest.raises(TargetRefused, match="not an allowed target"):
        resolve_target(f"cgroup:{live_cgroup.rel}", policy=_policy("cgroup:/something-else"))
    with pytest.raises(TargetRefused, match="init"):
        resolve_target("pid:1", policy=_policy("cgroup:/"[:-1] + "/x", "exe:/sbin/init"))
    with pytest.raises(TargetRefused, match="novatune itself"):
        resolve_target(f"pid:{os.getpid()}", policy=_policy(f"exe:{os.path.realpath(sys.executable)}"))
    with pytest.raises(UsageError, match="root cgroup"):
        resolve_target("cgroup:/", policy=_policy(f"cgroup:{live_cgroup.rel}"))


def test_bad_specs_and_missing_targets_say_what_is_allowed():
    for bad in ("nginx", "pid:0", "pid:x", "cgroup:relative", "unit:nginx", 7):
        with pytest.raises(UsageError, match="cgroup:/PATH"):
            parse_target(bad)
    assert str(parse_target("unit:nginx.service")) == "unit:nginx.service"
    with pytest.raises(TargetNotFound, match="systemd"):
        resolve_target("unit:nt-rs-c-none.service", policy=_policy("unit:nt-rs-c-none.service"))
    with pytest.raises(TargetNotFound, match="no such cgroup"):
        resolve_target("cgroup:/nt-rs-c-none", policy=_policy("cgroup:/nt-rs-c-none"))
    with pytest.raises(TargetNotFound, match="no such process"):
        resolve_target("pid:999999999", policy=_policy("exe:/bin/true"))


def test_the_observer_stores_every_interval_and_survives_a_target_that_vanishes(live_cgroup, tmp_path):
    live_cgroup.spawn(BUSY, 0.3, 30)
    policy = _policy(f"cgroup:{live_cgroup.rel}", f"exe:{os.path.realpath(sys.executable)}")
    other = subprocess.Popen([sys.executable, "-c", BUSY, "0.1", "30"])
    try:
        targets = [resolve_target(f"cgroup:{live_cgroup.rel}", policy=policy),
                   resolve_target(f"pid:{other.pid}", policy=policy)]
        store = UsageStore(tmp_path / "usage.db")
        stop = threading.Event()
        obs = Observer(targets, store, interval_s=0.3, stop=stop)
        thread = threading.Thread(target=obs.run)
        thread.start()
        time.sleep(1.5)
        other.kill()
        other.wait()
        time.sleep(1.0)
        status = obs.status()
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    name = f"cgroup:{live_cgroup.rel}"
    assert status["observing"] == [name]
    assert list(status["gone"]) == [f"pid:{other.pid}"] and "exited" in status["gone"][f"pid:{other.pid}"]
    assert obs.summary.stored[name] >= 6 and 1 <= obs.summary.stored[f"pid:{other.pid}"] <= 6
    series = store.series(name)
    assert len(series) == obs.summary.stored[name]
    assert 0.15 <= float(series.cpu_cores[1:].mean()) <= 0.45


def test_a_pid_alone_in_a_cgroup_is_read_from_that_cgroup(live_cgroup):
    busy = live_cgroup.spawn(BUSY, 0.3, 5)
    target = resolve_target(f"pid:{busy.pid}", policy=_policy(f"cgroup:{live_cgroup.rel}"))
    assert target.tree == frozenset() and target.dirs["memory"].endswith(live_cgroup.name)
    live_cgroup.spawn(BUSY, 0.1, 5)  # another process joins: the cgroup is shared now
    target = resolve_target(f"pid:{busy.pid}", policy=_policy(f"cgroup:{live_cgroup.rel}"))
    assert target.tree == frozenset({"cpu", "memory"})
    live_cgroup.write("memory", "memory.limit_in_bytes", str(512 * 2**20))
    s = UsageSampler(target).sample()
    assert s.mem_capacity == pytest.approx(512 * MIB)  # the shared cgroup's limit is still the capacity
