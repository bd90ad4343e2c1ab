"""recover() puts back every kind of journaled change, with no live knob object.

A session applies and is then abandoned, as a crash would leave it (its
entries stay open); ``recover(force=True)`` — the owner is this live process —
must bring each target back from the journal alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from actuators import Catalog, ChangeSession, Journal, KnobContext, SysRoot, recover
from tests.actuators.conftest import tree_bytes


def _crash_after_apply(journal: Journal, knobs_values) -> None:
    session = ChangeSession(journal, run_id=f"crashed-{uuid.uuid4().hex[:6]}", trial=1)
    for knob, value in knobs_values:
        session.apply(knob, value)
    session._stack.clear()  # the process "dies": nothing restores in-process


def test_multi_file_cpufreq_and_irq_on_the_fake_tree(fake_root: SysRoot, journal: Journal) -> None:
    before = tree_bytes(fake_root.root)
    cat = Catalog(fake_root)
    _crash_after_apply(journal, [(cat.get("cpufreq.governor"), "performance"), (cat.get("irq.24.affinity"), "0"),
                                 (cat.get("irq.default_affinity"), "1")])
    assert tree_bytes(fake_root.root) != before
    report = recover(journal, root=fake_root, force=True)
    assert report.failed == [] and len(report.restored) == 3, report
    assert tree_bytes(fake_root.root) == before


THREADED = ("import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "time.sleep(60)\n")


def test_process_settings_of_a_live_target(journal: Journal) -> None:
    child = subprocess.Popen([sys.executable, "-c", THREADED])
    try:
        deadline = time.monotonic() + 10  # both threads exist before the change (else a late one keeps the old value)
        while len(os.listdir(f"/proc/{child.pid}/task")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        cat = Catalog(context=KnobContext(pids=lambda: [child.pid]))
        nice0, pol0 = os.getpriority(os.PRIO_PROCESS, child.pid), os.sched_getscheduler(child.pid)
        _crash_after_apply(journal, [(cat.get("sched.nice"), 9), (cat.get("sched.policy"), "batch")])
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 9
        report = recover(journal, force=True)
        assert report.failed == [], report
        assert (os.getpriority(os.PRIO_PROCESS, child.pid), os.sched_getscheduler(child.pid)) == (nice0, pol0)
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("ethtool"),
                    reason="needs root, ip and ethtool: acts in a network namespace the test creates")
def test_netns_sysctl_and_nic_in_a_private_namespace(journal: Journal) -> None:
    ns = f"novatune-rec-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "nva", "type", "veth", "peer", "name", "nvb"], check=True)

        def state():
            sysctl = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/net/core/somaxconn"],
                                    capture_output=True, text=True, check=True).stdout
            feats = subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-k", "nva"],
                                   capture_output=True, text=True, check=True).stdout
            return sysctl, feats

        somaxconn = Path("/proc/sys/net/core/somaxconn")
        host_before = somaxconn.read_text()
        before = state()
        cat = Catalog(context=KnobContext(netns=ns))
        gro = cat.get("nic.nva.gro")
        flipped = "on" if gro.read() == "off" else "off"
        _crash_after_apply(journal, [(cat.get("net.core.somaxconn"), 1234), (gro, flipped)])
        assert state() != before
        report = recover(journal, force=True)
        assert report.failed == [], report
        assert state() == before
        assert somaxconn.read_text() == host_before
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_entries_of_a_namespace_that_is_gone_are_reported_gone(journal: Journal) -> None:
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and ip")
    ns = f"novatune-gone-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        _crash_after_apply(journal, [(Catalog(context=KnobContext(netns=ns)).get("net.core.somaxconn"), 2345)])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    report = recover(journal, force=True)
    assert report.failed == [] and [k["outcome"] for k in report.knobs] == ["gone"], report.knobs
