"""The shared /proc reader of the NUMA and pinning facts: odd names, vanished processes, numa_maps sums."""

from __future__ import annotations

import os

from collectors.facts.procinfo import numa_pages, read_proc_info, top_pids
from collectors.rootfs import RootReader
from tests.fixtures.numa_trees import FakeProc, machine


def test_a_name_with_spaces_and_parentheses_does_not_shift_the_fields(tmp_path):
    root = machine(tmp_path, procs=[FakeProc(100, "a) b (c", last_cpu=6, cpu_share=1.0, pages={0: 10, 1: 5})])
    info = read_proc_info(RootReader(root), 100)
    assert info is not None
    assert info.name == "a) b (c" and info.last_cpu == 6 and info.cpu_ticks == 500_000
    assert info.allowed_cpus == tuple(range(16)) and info.rss_bytes == 15 * 4096
    assert numa_pages(RootReader(root), 100) == {0: 10, 1: 5}


def test_vanished_process_and_missing_numa_maps(tmp_path):
    root = machine(tmp_path, procs=[FakeProc(100, "x", pages={0: 10})])
    (root / "proc/100/numa_maps").unlink()
    fs = RootReader(root)
    assert read_proc_info(fs, 4242) is None
    assert numa_pages(fs, 100) is None


def test_top_pids_takes_largest_and_busiest_and_skips_kernel_threads(tmp_path):
    procs = [FakeProc(100 + i, f"p{i}", pages={0: 1000 * (i + 1)}, cpu_share=0.1 * (20 - i)) for i in range(20)]
    procs.append(FakeProc(99, "kworker", pages={0: 10**6}, kernel=True))
    root = machine(tmp_path, procs=procs)
    fs = RootReader(root)
    infos = [i for p in procs if (i := read_proc_info(fs, p.pid)) is not None]
    top = {i.pid for i in top_pids(infos, limit=3)}
    assert top == {119, 118, 117, 100, 101, 102}


def test_this_process():
    info = read_proc_info(RootReader("/"), os.getpid())
    assert info is not None and info.rss_bytes > 0 and info.last_cpu in os.sched_getaffinity(0)
