"""collectors.topology against a recorded VM tree, a generated 2-socket SMT server, and the live machine."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from collectors.errors import CollectorError
from collectors.kernelfiles import parse_cpu_list, parse_size
from collectors.topology import read_cpu_topology, read_topology

DATA = Path(__file__).parent / "data"
VM = DATA / "topo-vm"

L3_BYTES = 30 * 1024 * 1024  # "30720K" per package


def _w(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")


def build_2s_smt(root: Path) -> Path:
    """A 2-package x 4-core x 2-thread server (Intel numbering: cpu0-7 first threads, cpu8-15 siblings)."""
    cpu = "sys/devices/system/cpu"
    _w(root, f"{cpu}/online", "0-15")
    for n in range(16):
        first = n % 8             # the first thread of this core
        pkg, core = first // 4, first % 4
        sib = f"{first},{first + 8}"
        pkg_cpus = f"{pkg * 4}-{pkg * 4 + 3},{pkg * 4 + 8}-{pkg * 4 + 11}"
        d = f"{cpu}/cpu{n}"
        _w(root, f"{d}/topology/physical_package_id", str(pkg))
        _w(root, f"{d}/topology/die_id", "0")
        _w(root, f"{d}/topology/core_id", str(core))
        _w(root, f"{d}/topology/thread_siblings_list", sib)
        for idx, (level, typ, size, shared) in enumerate([
            (1, "Data", "32K", sib), (1, "Instruction", "32K", sib), (2, "Unified", "1024K", sib),
            (3, "Unified", "30720K", pkg_cpus),
        ]):
            c = f"{d}/cache/index{idx}"
            _w(root, f"{c}/level", str(level))
            _w(root, f"{c}/type", typ)
            _w(root, f"{c}/size", size)
            _w(root, f"{c}/shared_cpu_list", shared)
    node = "sys/devices/system/node"
    for n, dist in ((0, "10 21"), (1, "21 10")):
        _w(root, f"{node}/node{n}/cpulist", f"{n * 4}-{n * 4 + 3},{n * 4 + 8}-{n * 4 + 11}")
        _w(root, f"{node}/node{n}/distance", dist)
        _w(root, f"{node}/node{n}/meminfo",
           f"Node {n} MemTotal:       65536000 kB\nNode {n} MemFree:        60000000 kB")
    _w(root, f"{node}/online", "0-1")
    for name, rot, sched, model, sectors in (
        ("nvme0n1", "0", "[none] mq-deadline", "Samsung SSD 980 PRO 1TB", 1953525168),
        ("sda", "1", "mq-deadline [bfq] none", "ST4000NM0035-1V4", 7814037168),
    ):
        _w(root, f"sys/block/{name}/queue/rotational", rot)
        _w(root, f"sys/block/{name}/queue/scheduler", sched)
        _w(root, f"sys/block/{name}/queue/read_ahead_kb", "128")
        _w(root, f"sys/block/{name}/size", str(sectors))
        _w(root, f"sys/block/{name}/device/model", model)
    net = "sys/class/net/ens1f0"
    for f, v in (("speed", "25000"), ("mtu", "9000"), ("operstate", "up")):
        _w(root, f"{net}/{f}", v)
    for q in range(8):
        (root / net / "queues" / f"rx-{q}").mkdir(parents=True)
        (root / net / "queues" / f"tx-{q}").mkdir(parents=True)
    (root / net / "device").mkdir()
    os.symlink("../../../../bus/pci/drivers/ice", root / net / "device" / "driver")
    _w(root, "sys/class/net/lo/mtu", "65536")
    return root


@pytest.fixture
def server(tmp_path: Path) -> Path:
    return build_2s_smt(tmp_path / "topo-2s-smt")


def test_parsers() -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert parse_cpu_list("") == ()
    assert parse_size("48K") == 48 * 1024 and parse_size("32M") == 32 << 20 and parse_size("512") == 512
    with pytest.raises(ValueError):
        parse_size("lots")


def test_server_cpus_and_smt(server: Path) -> None:
    t = read_topology(root=server)
    assert t.gaps == ()
    assert t.online == tuple(range(16)) and len(t.cpus) == 16
    assert t.packages() == (0, 1)
    assert len(t.cores()) == 8
    for c in t.cpus:
        assert len(c.siblings) == 2 and c.cpu in c.siblings
        assert c.siblings == (c.cpu % 8, c.cpu % 8 + 8)
    assert t.cpu(9).package == 0 and t.cpu(9).core == 1
    assert t.cpu(12).package == 1 and t.cpu(12).core == 0


def test_server_caches(server: Path) -> None:
    t = read_topology(root=server)
    for c in t.cpus:
        by_level = {(k.level, k.type): k for k in c.caches}
        assert set(by_level) == {(1, "Data"), (1, "Instruction"), (2, "Unified"), (3, "Unified")}
        assert by_level[(1, "Data")].size_bytes == 32768
        assert by_level[(2, "Unified")].shared_cpus == c.siblings
        l3 = by_level[(3, "Unified")]
        assert l3.size_bytes == L3_BYTES and len(l3.shared_cpus) == 8
        assert all(t.cpu(o).package == c.package for o in l3.shared_cpus)


def test_server_numa(server: Path) -> None:
    t = read_topology(root=server)
    assert [n.node for n in t.nodes] == [0, 1]
    assert t.distance_matrix() == ((10, 21), (21, 10))
    assert t.nodes[1].cpus == (4, 5, 6, 7, 12, 13, 14, 15)
    assert t.nodes[0].mem_total_bytes == 65536000 * 1024


def test_server_disks_and_nic(server: Path) -> None:
    t = read_topology(root=server)
    disks = {d.name: d for d in t.disks}
    nvme, sda = disks["nvme0n1"], disks["sda"]
    assert nvme.nvme and nvme.rotational is False
    assert nvme.schedulers == ("none", "mq-deadline") and nvme.scheduler == "none"
    assert not sda.nvme and sda.rotational is True
    assert sda.schedulers == ("mq-deadline", "bfq", "none") and sda.scheduler == "bfq"
    assert sda.model == "ST4000NM0035-1V4" and sda.size_bytes == 7814037168 * 512 and sda.read_ahead_kb == 128
    assert [n.name for n in t.nics] == ["ens1f0"]  # lo skipped
    nic = t.nics[0]
    assert (nic.speed_mbps, nic.driver, nic.rx_queues, nic.tx_queues, nic.mtu, nic.operstate) == (
        25000, "ice", 8, 8, 9000, "up")
    json.dumps(t.as_dict())  # JSON-ready


def test_missing_cache_dir_is_a_gap(server: Path) -> None:
    shutil.rmtree(server / "sys/devices/system/cpu/cpu3/cache")
    (server / "sys/devices/system/node/node1/distance").unlink()
    (server / "sys/class/net/ens1f0/speed").unlink()
    t = read_topology(root=server)
    assert t.cpu(3).caches == () and t.cpu(3).core == 3
    assert any("cpu3/cache" in g for g in t.gaps)
    assert t.nodes[1].distances is None and any("node1/distance" in g for g in t.gaps)
    assert t.nics[0].speed_mbps is None  # unknown, not a crash


def test_garbage_is_a_gap_not_a_crash(server: Path) -> None:
    _w(server, "sys/devices/system/cpu/cpu0/cache/index3/size", "huge")
    _w(server, "sys/devices/system/cpu/cpu0/topology/core_id", "")
    t = read_topology(root=server)
    assert t.cpu(0).caches[3].size_bytes is None and t.cpu(0).core is None
    assert len(t.gaps) == 2


def test_empty_root_is_all_gaps(tmp_path: Path) -> None:
    t = read_topology(root=tmp_path)
    assert t.cpus == () and t.disks == () and t.nics == () and t.gaps
    with pytest.raises(CollectorError):
        read_topology(root=tmp_path / "nope")


def test_recorded_vm() -> None:
    t = read_topology(root=VM)
    assert len(t.cpus) == 2 and t.packages() == (0,)
    assert len(t.nodes) == 1 and t.nodes[0].distances == (10,)
    assert t.nodes[0].cpus == (0, 1) and t.nodes[0].mem_total_bytes
    vda = {d.name: d for d in t.disks}["vda"]
    assert vda.scheduler == "mq-deadline" and not vda.nvme and vda.size_bytes
    eth0 = {n.name: n for n in t.nics}["eth0"]
    assert eth0.driver == "virtio_net" and eth0.speed_mbps is None and eth0.rx_queues == 1
    assert all(c.caches for c in t.cpus)
    json.dumps(t.as_dict())


def test_live_machine() -> None:
    t = read_topology()
    assert len(t.cpus) == os.cpu_count()
    assert all(c.package is not None for c in t.cpus)
    json.dumps(t.as_dict())


def test_cli_topology(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from experiments.cli import main

    assert main(["topology", "--json", "--root", str(VM)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["cpus"]) == 2 and data["nodes"][0]["distances"] == [10]
    assert main(["topology", "--root", str(build_2s_smt(tmp_path / "s"))]) == 0
    assert "25000" in capsys.readouterr().out
    assert main(["topology", "--root", str(tmp_path / "missing")]) == 2
    assert "not a directory" in " ".join(capsys.readouterr().err.split())


def test_cpu_topology_and_online_cpus(server: Path) -> None:
    from collectors.rootfs import RootReader
    from collectors.topology import online_cpus

    t = read_cpu_topology(root=server)
    assert t.online == tuple(range(16)) and t.nodes == () and t.disks == () and t.nics == () and t.gaps == ()
    assert t.core_map()[9] == (0, 1) and t.core_map()[12] == (1, 0) and len(t.core_map()) == 16
    assert read_cpu_topology(root=RootReader(server)).core_map() == t.core_map()
    assert online_cpus(server) == tuple(range(16)) and online_cpus(server / "nope") == ()


def test_a_symlink_out_of_the_root_is_a_gap(server: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("7\n")
    mtu = server / "sys/class/net/ens1f0/mtu"
    mtu.unlink()
    os.symlink(outside, mtu)
    t = read_topology(root=server)
    assert t.nics[0].mtu is None and any("ens1f0/mtu" in g and "outside" in g for g in t.gaps)
