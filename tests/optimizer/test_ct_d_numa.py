"""The NUMA facts reader and advisor on 1-, 2- and 4-node fixture trees (tests/fixtures/numa_trees.py)."""

from __future__ import annotations

from collectors.facts import numa as numa_facts
from optimizer.advice import rank
from optimizer.advisors import numa
from tests.fixtures.numa_trees import FakeProc, machine


def _by_title(advices, word):
    return [a for a in advices if word in a.title]


def test_one_node_machine_gives_no_numa_advice_and_says_why(tmp_path):
    root = machine(tmp_path, nodes=1, procs=[FakeProc(100, "db", last_cpu=0, pages={0: 500_000})])
    facts = numa_facts.read(root=root)
    assert len(facts.nodes) == 1
    assert numa.advise(facts) == []
    assert any("1 NUMA node" in n for n in facts.notes)


def test_this_machine_reads_without_raising():
    facts = numa_facts.read()
    assert facts.nodes  # every Linux has node0 (or the notes say why)
    assert isinstance(numa.advise(facts), list)


def test_two_nodes_70_percent_remote_is_bound_to_its_cpu_node(tmp_path):
    # runs on node 0 (last CPU 1), 70 % of its pages on node 1; 0.8 GiB fits node 0's 8 GiB free
    proc = FakeProc(100, "db", last_cpu=1, threads=4, pages={0: 60_000, 1: 140_000})
    root = machine(tmp_path, nodes=2, procs=[proc])
    facts = numa_facts.read(root=root, pids=[100])
    assert [p.pid for p in facts.processes] == [100]
    assert facts.processes[0].pages_by_node == {0: 60_000, 1: 140_000}
    advices = numa.advise(facts)
    bind = _by_title(advices, "bind")
    assert len(bind) == 1
    a = bind[0]
    assert a.target == "pid:100" and "node 0" in a.title
    assert "--membind=0" in (a.manual or "") and "--cpunodebind=0" in (a.manual or "")
    ev = {e.what: e.value for e in a.evidence}
    assert ev["remote share of its pages"] == 0.7
    assert ev["runs on node"] == 0
    assert ev["distance ratio remote/local"] == 2.1
    # 0.3 * 0.7*1.1 / (1 + 0.7*1.1)
    assert abs(a.expected_impact - 0.3 * 0.77 / 1.77) < 1e-3
    assert 0 < a.confidence <= 1 and a.risk > 0


def test_node_zero_cpus_go_through_the_affinity_knob_when_its_layout_can_say_them(tmp_path):
    proc = FakeProc(100, "db", last_cpu=1, pages={0: 60_000, 1: 140_000})
    root = machine(tmp_path, nodes=2, smt=False, procs=[proc])  # node 0 = CPUs 0-3: a compact prefix
    a = _by_title(numa.advise(numa_facts.read(root=root)), "bind")[0]
    assert a.values == {"affinity.cpus": 4, "affinity.placement": "compact"}
    # node 1's CPUs (4-7) are no compact prefix: only the manual action carries them
    proc = FakeProc(100, "db", last_cpu=5, pages={0: 140_000, 1: 60_000})
    root = machine(tmp_path / "b", nodes=2, smt=False, procs=[proc])
    a = _by_title(numa.advise(numa_facts.read(root=root)), "bind")[0]
    assert a.changes == () and "node 1" in a.title and "taskset -a -cp 4-7 100" in (a.manual or "")


def test_local_process_gets_no_bind(tmp_path):
    proc = FakeProc(100, "db", last_cpu=1, pages={0: 190_000, 1: 10_000})
    assert _by_title(numa.advise(numa_facts.read(root=machine(tmp_path, procs=[proc]))), "bind") == []


def test_process_that_would_fill_its_node_gets_preferred_not_bind(tmp_path):
    # 3.8 GiB of pages; node 0 holds 3 GiB free + its 1.1 GiB: 92 % full, so preferred
    proc = FakeProc(100, "db", last_cpu=0, pages={0: 300_000, 1: 700_000})
    root = machine(tmp_path, free_gib={0: 3.0, 1: 8.0}, procs=[proc])
    advices = numa.advise(numa_facts.read(root=root))
    assert _by_title(advices, "bind") == []
    pref = _by_title(advices, "prefer")
    assert len(pref) == 1 and "--preferred=0" in (pref[0].manual or "")


def test_four_nodes_big_spanning_process_is_interleaved(tmp_path):
    # 24 threads > 8 CPUs per node, 12 GiB > one node: larger than a node, 80 % of pages on node 0
    pages = {0: 2_500_000, 1: 300_000, 2: 200_000, 3: 125_000}
    proc = FakeProc(200, "olap", last_cpu=0, threads=24, shmem_mib=8000, pages=pages)
    root = machine(tmp_path, nodes=4, mem_gib=8, procs=[proc])
    facts = numa_facts.read(root=root)
    assert len(facts.nodes) == 4 and facts.nodes[0].distances == (10, 21, 31, 21)
    advices = numa.advise(facts)
    inter = _by_title(advices, "interleave")
    assert len(inter) == 1 and "--interleave=all" in (inter[0].manual or "")
    assert _by_title(advices, "bind") == []
    ev = {e.what: e.value for e in inter[0].evidence}
    assert ev["largest share on one node"] == 0.8
    assert inter[0].expected_impact > 0


def test_four_nodes_evenly_spread_big_process_needs_nothing(tmp_path):
    pages = {n: 800_000 for n in range(4)}
    proc = FakeProc(200, "olap", last_cpu=0, threads=24, pages=pages)
    root = machine(tmp_path, nodes=4, mem_gib=8, procs=[proc])
    assert _by_title(numa.advise(numa_facts.read(root=root)), "interleave") == []


def test_balancing_off_when_every_large_process_is_bound(tmp_path):
    procs = [FakeProc(100, "a", cpus="0-3,8-11", last_cpu=0, pages={0: 100_000}),
             FakeProc(101, "b", cpus="4-7,12-15", last_cpu=4, pages={1: 100_000})]
    advices = numa.advise(numa_facts.read(root=machine(tmp_path, procs=procs, numa_balancing=1)))
    off = [a for a in advices if "kernel.numa_balancing" in a.values]
    assert len(off) == 1 and off[0].values["kernel.numa_balancing"] == 0


def test_balancing_on_when_unbound_processes_use_remote_memory(tmp_path):
    procs = [FakeProc(100, "a", last_cpu=0, pages={0: 40_000, 1: 60_000}, threads=16)]
    advices = numa.advise(numa_facts.read(root=machine(tmp_path, procs=procs, numa_balancing=0)))
    on = [a for a in advices if "kernel.numa_balancing" in a.values]
    assert len(on) == 1 and on[0].values["kernel.numa_balancing"] == 1
    assert any("pid 100" in e.what for e in on[0].evidence)
    # already on: nothing to say about balancing
    advices = numa.advise(numa_facts.read(root=machine(tmp_path / "b", procs=procs, numa_balancing=1)))
    assert not [a for a in advices if "kernel.numa_balancing" in a.values]


def test_node_numastat_cross_share_alone_turns_balancing_on(tmp_path):
    root = machine(tmp_path, numa_balancing=0, numastat={1: {"local_node": 600, "other_node": 400}})
    facts = numa_facts.read(root=root)
    assert facts.nodes[1].remote_share == 0.4
    on = [a for a in numa.advise(facts) if "kernel.numa_balancing" in a.values]
    assert len(on) == 1


def test_small_and_missing_processes(tmp_path):
    procs = [FakeProc(100, "tiny", last_cpu=0, pages={1: 1000})]  # 4 MiB: not worth it
    root = machine(tmp_path, procs=procs)
    facts = numa_facts.read(root=root, pids=[100, 4242])
    assert numa.advise(facts) == []
    assert any("4242" in n for n in facts.notes)


def test_missing_numa_files_are_notes_not_errors(tmp_path):
    root = machine(tmp_path, numa_balancing=None)
    (root / "sys/devices/system/node/node1/numastat").unlink()
    facts = numa_facts.read(root=root)
    assert facts.numa_balancing is None and facts.nodes[1].remote_share is None
    assert any("numastat" in n for n in facts.notes) and any("numa_balancing" in n for n in facts.notes)


def test_advices_rank_and_serialise(tmp_path):
    procs = [FakeProc(100, "db", last_cpu=1, pages={0: 60_000, 1: 140_000})]
    advices = numa.advise(numa_facts.read(root=machine(tmp_path, procs=procs, numa_balancing=0)))
    ranked = rank(advices)
    assert ranked and all(a.advisor == "numa" for a in ranked)
    assert all("evidence" in a.as_dict() for a in ranked)


def test_cpu_list_form():
    assert numa.cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert numa.cpu_list([]) == ""
