"""The sampler on a fake cgroup v2 tree: which file gives which figure (the real v1 machine is
test_rs_c_live's)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from collectors.passive.allowed import PassivePolicy, TargetRefused
from collectors.usage.errors import TargetVanished, UsageError
from collectors.usage.sampler import UsageSampler
from collectors.usage.target import resolve_target

GIB = 2**30


def _tree(root: Path, *, cpu_max: str = "50000 100000", usage_usec: int = 1_000_000) -> Path:
    cg = root / "sys/fs/cgroup"
    d = cg / "app.slice/web"
    d.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu memory io\n")
    (d / "cgroup.controllers").write_text("cpu memory io\n")
    (d / "cgroup.procs").write_text("")
    files = {
        "cpu.stat": f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 1\nnr_periods 100\nnr_throttled 10\n"
                    "throttled_usec 5\n",
        "cpu.max": cpu_max + "\n",
        "cpuset.cpus.effective": "0-3\n",
        "memory.current": str(3 * GIB) + "\n",
        "memory.stat": f"anon {GIB}\ninactive_file {GIB}\nactive_file 5\n",
        "memory.max": str(4 * GIB) + "\n",
        "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n",
        "cpu.pressure": "some avg10=12.50 avg60=1.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 "
                        "total=0\n",
        "memory.pressure": "some avg10=3.00 avg60=0.00 avg300=0.00 total=0\n",
        "io.pressure": "some avg10=0.25 avg60=0.00 avg300=0.00 total=0\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(f"30 1 0:26 / {cg} rw - cgroup2 cgroup2 rw\n")
    (root / "proc/meminfo").write_text("MemTotal:       16384000 kB\n")
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/online").write_text("0-7\n")
    return d


def _policy(root: Path, *rules: str) -> PassivePolicy:
    return PassivePolicy(PassivePolicy.of(rules).targets, proc=root / "proc")


def test_v2_files_give_usage_working_set_capacity_throttling_oom_and_cgroup_psi(tmp_path):
    d = _tree(tmp_path)
    target = resolve_target("cgroup:/app.slice/web", policy=_policy(tmp_path, "cgroup:/app.slice"), root=tmp_path)
    assert target.version == 2 and target.dirs == {"unified": "sys/fs/cgroup/app.slice/web"}
    sampler = UsageSampler(target, root=tmp_path)
    (d / "cpu.stat").write_text("usage_usec 1500000\nnr_periods 200\nnr_throttled 60\nthrottled_usec 9\n")
    (d / "memory.events").write_text("oom_kill 5\n")
    s = sampler.sample()
    assert s.cpu_cores > 0 and math.isfinite(s.cpu_cores)  # 0.5 s of CPU over the (short) wall time
    assert s.throttled_ratio == pytest.approx(0.5)  # 50 of 100 periods
    assert s.mem_gib == pytest.approx(2.0) and s.mem_usage_gib == pytest.approx(3.0)
    assert s.cpu_capacity == pytest.approx(0.5) and s.mem_capacity == pytest.approx(4.0)
    assert s.oom_kills == 3
    assert (s.psi_cpu, s.psi_memory, s.psi_io, s.psi_source) == (12.5, 3.0, 0.25, "cgroup")


def test_without_limits_capacity_is_the_cpuset_or_online_cpus_and_memtotal(tmp_path):
    d = _tree(tmp_path, cpu_max="max 100000")
    (d / "memory.max").write_text("max\n")
    target = resolve_target("cgroup:/app.slice/web", policy=_policy(tmp_path, "cgroup:/app.slice/web"), root=tmp_path)
    s = UsageSampler(target, root=tmp_path).sample()
    assert s.cpu_capacity == 4.0  # cpuset 0-3
    assert s.mem_capacity == pytest.approx(16384000 * 1024 / GIB)
    (d / "cpuset.cpus.effective").unlink()
    assert UsageSampler(target, root=tmp_path).sample().cpu_capacity == 8.0  # online 0-7


def test_a_removed_cgroup_vanishes_and_the_root_and_unlisted_cgroups_are_refused(tmp_path):
    d = _tree(tmp_path)
    with pytest.raises(TargetRefused, match="not an allowed target"):
        resolve_target("cgroup:/app.slice/web", policy=_policy(tmp_path, "cgroup:/other"), root=tmp_path)
    sampler = UsageSampler(resolve_target("cgroup:/app.slice/web", policy=_policy(tmp_path, "cgroup:/app.slice"),
                                          root=tmp_path), root=tmp_path)
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    with pytest.raises(TargetVanished, match="removed"):
        sampler.sample()


def test_one_sample_reads_each_file_once(tmp_path, monkeypatch):
    from collectors.rootfs import RootReader

    _tree(tmp_path)
    target = resolve_target("cgroup:/app.slice/web", policy=_policy(tmp_path, "cgroup:/app.slice"), root=tmp_path)
    sampler = UsageSampler(target, root=tmp_path)
    reads: list[str] = []
    real = RootReader.read_bytes

    def counted(self: RootReader, rel: str) -> bytes:
        reads.append(f"{self.root}/{rel}")
        return real(self, rel)

    monkeypatch.setattr(RootReader, "read_bytes", counted)
    sampler.sample()
    assert reads and len(reads) == len(set(reads)), sorted(reads)


def test_the_observer_stores_ages_the_store_and_drops_a_vanished_target(tmp_path):
    import threading

    from collectors.usage.history import UsageStore
    from collectors.usage.observe import Observer

    d = _tree(tmp_path)
    target = resolve_target("cgroup:/app.slice/web", policy=_policy(tmp_path, "cgroup:/app.slice"), root=tmp_path)
    store = UsageStore(tmp_path / "usage.db")
    aged: list[float] = []
    real = store.downsample
    store.downsample = lambda now: aged.append(now) or real(now)  # type: ignore[method-assign]
    stop = threading.Event()
    obs = Observer([target], store, interval_s=0.05, stop=stop, root=str(tmp_path), maintenance_s=0.1)
    summary = obs.run(duration_s=0.5)
    assert 8 <= summary.stored[target.name] <= 10 and summary.gone == {}
    assert len(store.series(target.name)) == summary.stored[target.name]
    assert 2 <= len(aged) <= 6  # at start and about every 0.1 s, not every tick
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    summary = obs.run(duration_s=5)  # ends at once: nothing left to observe
    assert summary.ended_s - summary.started_s < 5 and list(summary.gone) == [target.name]
    assert "removed" in summary.gone[target.name] and obs.status()["observing"] == []
    with pytest.raises(UsageError, match="nothing to observe"):
        Observer([], store, interval_s=1, stop=stop)
