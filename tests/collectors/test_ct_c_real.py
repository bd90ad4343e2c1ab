"""The IO and network facts on the real machine, on targets the test owns: a loop device backed by its own
file and two network namespaces joined by its own veth pair. Changes go through the journal and are rolled back."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actuators.catalog import Catalog, KnobContext
from actuators.sysroot import SysRoot
from collectors.facts import io as io_facts
from collectors.facts import network as net_facts
from experiments.deploy.apply import apply_config
from experiments.deploy.rollback import rollback
from experiments.settings import Paths
from optimizer.advisors import io as io_advisor
from optimizer.advisors import network as net_advisor

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates a loop device and network namespaces: needs root"),
]


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.fixture
def loopdev(tmp_path: Path) -> Iterator[str]:
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        for _ in range(32):
            f.write(os.urandom(1 << 20))
    dev = _run("losetup", "-f").strip()  # the next free one: its pristine read-ahead, put back after detaching
    ra = Path(f"/sys/block/{os.path.basename(dev)}/queue/read_ahead_kb")
    pristine = ra.read_text()
    _run("losetup", dev, str(backing))  # fails (and the test errors) if another process took it meanwhile
    try:
        yield dev
    finally:
        _run("losetup", "-d", dev)
        if ra.read_text() != pristine:  # attaching sets the window from the backing file; detaching keeps it
            ra.write_text(pristine)


@pytest.mark.skipif(not shutil.which("losetup"), reason="needs losetup")
def test_loop_device_read_with_read_ahead_off_is_advised_a_window(tmp_path: Path, loopdev: str) -> None:
    name = os.path.basename(loopdev)
    paths = Paths(tmp_path / "home").ensure()
    cat = Catalog(SysRoot("/"), KnobContext())
    app = apply_config({f"block.{name}.read_ahead_kb": 0}, paths=paths, source="test", catalog=cat)
    try:
        def reader(_s: float) -> None:  # the workload runs during the sampled interval
            _run("dd", f"if={loopdev}", "of=/dev/null", "bs=64k", "count=256")

        facts = io_facts.read(root="/", sample_s=0.2, sleep=reader)
    finally:
        rollback(app.id, paths=paths, catalog=cat)
    dev = next(d for d in facts.devices if d.name == name)
    assert dev.kind == "loop" and dev.read_ahead_kb == 0 and dev.sampled is not None
    assert dev.sampled.reads >= 4096 and dev.sampled.mean_read_kb == pytest.approx(4.0)
    advice = [a for a in io_advisor.advise(facts) if a.changes[0].knob.startswith(f"block.{name}.")]
    assert [(c.knob, c.value) for a in advice for c in a.changes] == [(f"block.{name}.read_ahead_kb", 1024)]


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str, str]]:
    tag = os.getpid() % 100000
    srv, cli, net = f"ctct-s{tag}", f"ctct-c{tag}", f"10.232.{tag % 250}"
    try:
        _run("ip", "netns", "add", srv)
        _run("ip", "netns", "add", cli)
        _run("ip", "link", "add", f"ctv{tag}a", "netns", srv, "type", "veth", "peer", "name", f"ctv{tag}b",
             "netns", cli)
        for ns, dev, host in ((srv, f"ctv{tag}a", 1), (cli, f"ctv{tag}b", 2)):
            _run("ip", "-n", ns, "addr", "add", f"{net}.{host}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        yield srv, cli, f"{net}.1"
    finally:
        for ns in (cli, srv):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


@pytest.mark.skipif(not shutil.which("iperf3") or not shutil.which("ss"), reason="needs iperf3 and ss")
def test_small_buffers_in_a_namespace_are_advised_from_measured_rtt(
        tmp_path: Path, veth_pair: tuple[str, str, str]) -> None:
    srv, cli, addr = veth_pair
    # one journal per namespace: the same knob in two namespaces is held as one knob by a journal's applications
    journals = [Paths(tmp_path / f"home-{ns}").ensure() for ns in (srv, cli)]
    cats = [Catalog(SysRoot("/"), KnobContext(netns=ns)) for ns in (srv, cli)]
    small = {"net.ipv4.tcp_rmem": [4096, 4096, 8192], "net.ipv4.tcp_wmem": [4096, 4096, 8192]}
    apps = [apply_config(small, paths=p, source="test", catalog=c) for p, c in zip(journals, cats, strict=True)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(["ip", "netns", "exec", srv, "iperf3", "-s", "-1", "-B", addr],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.3)
        procs.append(subprocess.Popen(["ip", "netns", "exec", cli, "iperf3", "-c", addr, "-t", "3"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        facts = net_facts.read(root="/", netns=cli, sample_s=0.5)
    finally:
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for app, p, cat in zip(apps, journals, cats, strict=True):
            rollback(app.id, paths=p, catalog=cat)
    assert facts.tcp.rmem == (4096, 4096, 8192) and facts.netns == cli
    assert [i.management for i in facts.interfaces] == [False]  # the namespace has no default route
    busiest = max(facts.connections, key=lambda c: c.bytes)
    assert busiest.base_rtt_ms is not None and busiest.bytes > 1 << 20
    advice = net_advisor.advise(facts)
    buffers = [a for a in advice if "net.ipv4.tcp_rmem" in a.values]
    assert len(buffers) == 1 and buffers[0].target == f"netns:{cli}"
    assert buffers[0].values["net.ipv4.tcp_rmem"][2] >= 2 * net_advisor.bdp_bytes(10_000e6, busiest.base_rtt_ms)
