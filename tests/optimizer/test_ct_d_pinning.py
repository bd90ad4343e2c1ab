"""The CPU-pinning facts reader and advisor on fixture trees (tests/fixtures/numa_trees.py) and this machine."""

from __future__ import annotations

import subprocess
import sys

from collectors.facts import pinning as pin_facts
from optimizer.advisors import pinning
from tests.fixtures.numa_trees import FakeIrq, FakeProc, machine

SERVICE = FakeProc(100, "svc", last_cpu=5, cpu_share=1.5, threads=8, voluntary=5_000_000, involuntary=50_000,
                   pages={1: 50_000})


def _batch(pid: int, share: float) -> FakeProc:
    return FakeProc(pid, f"batch{pid}", last_cpu=0, cpu_share=share, threads=8, voluntary=1_000,
                    involuntary=900_000, pages={0: 50_000})


def _two_socket(tmp_path, *, batch=(8.0, 8.0, 8.0), smt=True, irqs=()):
    procs = [SERVICE] + [_batch(200 + i, s) for i, s in enumerate(batch)]
    return pin_facts.read(root=machine(tmp_path, nodes=2, smt=smt, procs=procs, irqs=irqs))


def test_facts_read_topology_roles_and_cpu_use(tmp_path):
    facts = _two_socket(tmp_path)
    assert len(facts.cpus) == 16
    c9 = next(c for c in facts.cpus if c.cpu == 9)
    assert c9.siblings == (1, 9) and c9.l3 == (0, 1, 2, 3, 8, 9, 10, 11) and c9.node == 0
    by = {p.pid: p for p in facts.processes}
    assert abs(by[100].cpu_share - 1.5) < 0.01 and abs(by[200].cpu_share - 8.0) < 0.01
    assert pinning.role(by[100]) == "latency" and pinning.role(by[200]) == "batch"


def test_dedicated_pool_keeps_smt_siblings_together_in_one_l3_group(tmp_path):
    facts = _two_socket(tmp_path)
    pl = pinning.plan(facts)
    assert pl.kind == "mixed"
    cpus = pl.dedicated[100]
    sib = {c.cpu: set(c.siblings) for c in facts.cpus}
    assert all(sib[c] <= set(cpus) for c in cpus)  # whole cores only
    assert len(cpus) == 2  # 1.5 CPUs -> 2 CPUs 1:1 -> one core of two threads
    l3 = {c.cpu: set(c.l3) for c in facts.cpus}
    assert set(cpus) <= l3[5]  # the L3 group (node 1) it already runs in
    assert not set(cpus) & set(pl.housekeeping) and pl.housekeeping == (0, 8)


def test_shared_pool_overcommit_stays_within_1_5_to_2(tmp_path):
    pl = pinning.plan(_two_socket(tmp_path, batch=(8.0, 8.0, 8.0)))
    assert pl.overcommit is not None and 1.5 <= pl.overcommit <= 2.0
    assert set(pl.shared_pids) == {200, 201, 202}
    # demand 30 CPUs: dedicating 2 of 16 would push the shared pool to 30/14 > 2x: the service stays shared
    pl = pinning.plan(_two_socket(tmp_path / "b", batch=(10.0, 10.0, 10.0)))
    assert pl.dedicated == {} and pl.kind == "shared"
    assert any("overcommit" in n for n in pl.notes)


def test_never_all_cpus_dedicated(tmp_path):
    procs = [FakeProc(100 + i, f"svc{i}", last_cpu=i, cpu_share=2.0, voluntary=5_000_000, involuntary=10,
                      pages={0: 1000})
             for i in range(12)]
    facts = pin_facts.read(root=machine(tmp_path, nodes=2, procs=procs))
    pl = pinning.plan(facts)
    dedicated = {c for cpus in pl.dedicated.values() for c in cpus}
    assert pl.dedicated and 0 not in dedicated and 8 not in dedicated
    assert set(pl.shared) >= {0, 8}
    assert len(dedicated) <= len(facts.cpus) - 2


def test_irqs_are_steered_off_dedicated_cpus(tmp_path):
    irqs = [FakeIrq(40, "nvme0q1", {15: 90_000, 0: 10}, "0-15"), FakeIrq(41, "eth0-rx", {0: 5_000}, "0"),
            FakeIrq(42, "eth0-tx", {7: 100}, "7"), FakeIrq(43, "idle", {}, "0-15")]
    facts = _two_socket(tmp_path, irqs=irqs)
    assert {q.irq: q.counts.get(15) for q in facts.irqs}["40"] == 90_000
    assert facts.default_irq_affinity == tuple(range(16))
    advices = pinning.advise(facts)
    irq = [a for a in advices if "steer IRQs" in a.title]
    assert len(irq) == 1
    pl = pinning.plan(facts)
    dedicated = set(pl.dedicated[100])
    vals = irq[0].values
    assert set(vals) == {"irq.40.affinity", "irq.42.affinity", "irq.default_affinity"}  # not 41 (CPU 0), 43 (idle)
    for v in vals.values():
        cpus = {int(x) for part in v.split(",") for x in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)}
        assert cpus and not cpus & dedicated and 0 in cpus


def test_advice_binds_affinity_to_pids_and_carries_evidence(tmp_path):
    facts = _two_socket(tmp_path, smt=False, batch=(5.0,))  # 8 CPUs, no SMT: dedicated CPU 7, shared 0-6
    pl = pinning.plan(facts)
    assert pl.dedicated == {100: (6, 7)} and pl.shared == (0, 1, 2, 3, 4, 5)
    advices = {a.target: a for a in pinning.advise(facts)}
    svc, batch = advices["pid:100"], advices["pid:200"]
    assert svc.changes == () and "taskset -a -cp 6-7 100" in (svc.manual or "")  # no compact prefix
    assert batch.values == {"affinity.cpus": 6, "affinity.placement": "compact"}  # 0-5 is one
    assert svc.metric == "p99_latency_ms" and svc.expected_impact > 0
    what = {e.what for e in svc.evidence}
    assert "CPU use of pid 100 (svc)" in what and "SMT sibling groups" in what and "shared-L3 groups" in what


def test_only_batch_work_or_one_core_gives_no_pinning_advice(tmp_path):
    procs = [_batch(200, 3.0), _batch(201, 1.0)]
    facts = pin_facts.read(root=machine(tmp_path, nodes=2, procs=procs))
    assert pinning.plan(facts).kind == "shared" and pinning.advise(facts) == []
    facts = pin_facts.read(root=machine(tmp_path / "b", nodes=1, cores_per_node=1, smt=True,
                                        procs=[SERVICE, _batch(200, 1.0)]))
    assert pinning.plan(facts).kind == "none" and pinning.advise(facts) == []


def test_caller_named_roles_override_the_heuristic(tmp_path):
    facts = _two_socket(tmp_path, batch=(4.0,))
    pl = pinning.plan(facts, latency_pids=[200], batch_pids=[100])
    assert 200 in pl.dedicated and 100 not in pl.dedicated


def test_this_machine_with_a_sampled_busy_child():
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        facts = pin_facts.read(pids=[child.pid], sample_s=0.5)
        assert [p.pid for p in facts.processes] == [child.pid]
        assert facts.processes[0].cpu_share > 0 and facts.sample_s == 0.5
        assert facts.cpus and isinstance(pinning.advise(facts), list)
    finally:
        child.kill()
        child.wait()


def test_a_preempted_server_is_still_latency_sensitive():
    # under contention a server is preempted as often as a busy loop; its many short voluntary sleeps tell it apart
    server = pinning.PinProcessFacts(1, "svc", cpu_share=0.3, voluntary_per_s=450, involuntary_per_s=900)
    loop = pinning.PinProcessFacts(2, "loop", cpu_share=0.3, voluntary_per_s=0.5, involuntary_per_s=900)
    idle = pinning.PinProcessFacts(3, "idle", cpu_share=0.01, voluntary_per_s=5)
    assert [pinning.role(p) for p in (server, loop, idle)] == ["latency", "batch", "idle"]
