"""affinity.placement on this machine, and the topology it reads (2-socket SMT server as a fixture tree).

The layouts themselves are pure planning: tests/optimizer/test_placement.py.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from actuators import Catalog, ChangeSession, Journal, KnobContext, OutOfBounds, SysRoot
from actuators.affinity import cpu_topology
from optimizer.placement import layout

# 2 packages x 2 cores x 2 threads, numbered like Intel servers: cpu0-3 first threads, cpu4-7 their siblings
TWO_SOCKET_SMT = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1), 4: (0, 0), 5: (0, 1), 6: (1, 0), 7: (1, 1)}


@pytest.fixture
def server_tree(tmp_path):
    for cpu, (pkg, core) in TWO_SOCKET_SMT.items():
        d = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology"
        d.mkdir(parents=True)
        (d / "physical_package_id").write_text(f"{pkg}\n")
        (d / "core_id").write_text(f"{core}\n")
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-7\n")
    return SysRoot(tmp_path)


def test_topology_is_read_from_the_tree(server_tree):
    assert cpu_topology(server_tree) == TWO_SOCKET_SMT


def test_on_this_machine_count_and_placement_apply_and_restore(tmp_path):
    child = subprocess.Popen(["sleep", "60"])
    try:
        cat = Catalog(context=KnobContext(pids=lambda: [child.pid]))
        cpus, placement = cat.get("affinity.cpus"), cat.get("affinity.placement")
        before = os.sched_getaffinity(child.pid)
        assert placement.read() in ("compact", "spread", "smt-siblings")
        with pytest.raises(OutOfBounds, match="choices"):
            placement.apply("random")
        with ChangeSession(Journal(tmp_path / "j.jsonl"), run_id="r", trial=0) as s:
            # the placement is listed first but applied after the count (apply_order)
            s.apply_many({placement: "spread", cpus: 1})
            want = layout(1, "spread", sorted(os.sched_getaffinity(0)), cpu_topology())
            assert sorted(os.sched_getaffinity(child.pid)) == want
            assert cpus.read() == 1
        assert os.sched_getaffinity(child.pid) == before
    finally:
        child.kill()
        child.wait()
