"""IO and network facts read from fixture trees of 1-, 2- and 4-node machines, and the advice they lead to."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from collectors.errors import CollectorError
from collectors.facts import io as io_facts
from collectors.facts import network as net_facts
from collectors.facts.ss import parse_ss
from optimizer.advisors import io as io_advisor
from optimizer.advisors import network as net_advisor
from tests.ionet_fixtures import (
    Disk,
    FakeRun,
    Nic,
    build_ionet_machine,
    set_diskstats,
    ss_conn,
    standard_disks,
    standard_nics,
)

NODES = (1, 2, 4)


def _values(advice: list) -> dict:
    return {c.knob: c.value for a in advice for c in a.changes}


@pytest.mark.parametrize("nodes", NODES)
def test_io_facts_per_device(tmp_path: Path, nodes: int) -> None:
    root = build_ionet_machine(tmp_path / f"m{nodes}", nodes=nodes, disks=standard_disks())
    facts = io_facts.read(root=root)
    by = {d.name: d for d in facts.devices}
    assert sorted(by) == ["loop0", "nvme0n1", "sda", "vda"]  # ram and dm left out
    assert {n: by[n].kind for n in by} == {"loop0": "loop", "nvme0n1": "nvme", "sda": "scsi", "vda": "virtio"}
    assert by["sda"].rotational is True and by["nvme0n1"].rotational is False
    assert by["nvme0n1"].scheduler == "mq-deadline" and by["nvme0n1"].schedulers == ("none", "mq-deadline", "kyber")
    assert by["nvme0n1"].hw_queues == 4 and by["nvme0n1"].nr_requests == 1023
    p = by["vda"].since_boot
    assert p is not None and not p.sampled and by["vda"].sampled is None
    assert p.interval_s == 1000.0 and p.reads == 20_000 and p.mean_read_kb == 256.0
    assert p.read_merge_ratio == pytest.approx(15_000 / 35_000)
    assert by["sda"].since_boot is not None and by["sda"].since_boot.queue_depth == pytest.approx(1.5)
    assert facts.gaps == ()


@pytest.mark.parametrize("nodes", NODES)
def test_io_advice_on_fixture_machines(tmp_path: Path, nodes: int) -> None:
    root = build_ionet_machine(tmp_path / f"m{nodes}", nodes=nodes, disks=standard_disks())
    advice = io_advisor.advise(io_facts.read(root=root))
    assert _values(advice) == {
        "block.nvme0n1.scheduler": "none",  # NVMe -> none
        "block.sda.scheduler": "mq-deadline",  # rotational + random small reads -> mq-deadline ...
        "block.sda.read_ahead_kb": 32,  # ... and a small read-ahead
        "block.vda.read_ahead_kb": 1024,  # large merged reads -> a larger window
    }  # loop0 is idle: nothing
    for a in advice:
        assert a.advisor == "io" and 0 < a.confidence <= 0.5  # since boot: capped
        assert any(e.source.startswith("proc/diskstats since boot") for e in a.evidence)


def test_sampled_pattern_and_queue_depth(tmp_path: Path) -> None:
    disk = Disk("sdb", 1, "none [mq-deadline] bfq", 128, 64, 1, "sd", (1000,) * 9)
    root = build_ionet_machine(tmp_path / "m", nodes=2, disks=[disk])
    later = replace(disk, counters=(1000 + 40_000, 1000, 1000 + 320_000, 1000, 1000, 1000, 70, 1000 + 2_000,
                                    1000 + 150_000))
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        set_diskstats(root, [later])

    dev = io_facts.read(root=root, sample_s=2.0, sleep=sleep).devices[0]
    assert slept == [2.0]
    p = dev.sampled
    assert p is not None and p.sampled and p.reads == 40_000 and p.in_flight == 70 and p.interval_s >= 2.0
    advice = io_advisor.advise_device(replace(dev, sampled=replace(p, interval_s=2.0)))
    assert _values(advice)["block.sdb.nr_requests"] == 128  # 75 queued on average against 64
    assert max(a.confidence for a in advice) > 0.5  # a sampled interval is worth more than the boot average


def test_idle_sample_gives_no_advice(tmp_path: Path) -> None:
    root = build_ionet_machine(tmp_path / "m", disks=standard_disks())
    facts = io_facts.read(root=root, sample_s=0.01, sleep=lambda s: None)  # nothing moved while sampling
    assert all(d.sampled is not None and d.sampled.requests == 0 for d in facts.devices)
    assert io_advisor.advise(facts) == []


def test_io_read_never_raises_on_a_bare_root(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    facts = io_facts.read(root=tmp_path / "empty")
    assert facts.devices == () and any("sys/block" in g for g in facts.gaps)
    with pytest.raises(CollectorError):
        io_facts.read(root=tmp_path / "missing")
    with pytest.raises(CollectorError, match="sample_s"):
        io_facts.read(root=tmp_path / "empty", sample_s=-1)


def test_diskstats_parser_and_kinds() -> None:
    text = "   7 0 loop3 1 2 3 4 5 6 7 8 9 10 11 0 0 0 0\n bad line\n"
    assert io_facts.parse_diskstats(text) == {"loop3": (1, 2, 3, 5, 6, 7, 9, 10, 11)}
    with pytest.raises(ValueError):
        io_facts.parse_diskstats("7 0 x a b c d e f g h i j k")
    assert io_facts.device_kind("vdb") == "virtio" and io_facts.device_kind("xyz", "virtio_blk") == "virtio"
    assert io_facts.device_kind("md127") == "md" and io_facts.device_kind("zram0") == "zram"


def _net_machine(tmp_path: Path, nodes: int, *, ss: str = "", rmem: str = "4096 131072 6291456",
                 nics: list[Nic] | None = None) -> tuple[Path, FakeRun]:
    nics = standard_nics() if nics is None else nics
    root = build_ionet_machine(tmp_path / f"n{nodes}", nodes=nodes, nics=nics, rmem=rmem, wmem=rmem)
    return root, FakeRun(nics, ss)


@pytest.mark.parametrize("nodes", NODES)
def test_net_facts_and_management(tmp_path: Path, nodes: int) -> None:
    root, run = _net_machine(tmp_path, nodes)
    facts = net_facts.read(root=root, run=run)
    by = {i.name: i for i in facts.interfaces}
    assert sorted(by) == ["ens5", "eth0", "veth1"]
    assert by["eth0"].management and by["eth0"].management_why == "carries a default route"
    assert not by["ens5"].management and by["ens5"].driver == "ixgbe" and by["ens5"].physical
    assert by["ens5"].offloads == {"tso": False, "gso": True, "gro": False} and by["ens5"].fixed == ("gro",)
    assert by["ens5"].rings == {"rx_max": 4096, "tx_max": 4096, "rx": 512, "tx": 512}
    assert not by["veth1"].physical and by["veth1"].rings is None
    assert ["ethtool", "-k", "eth0"] not in run.calls  # the management interface is not even probed
    assert facts.tcp.rmem == (4096, 131072, 6291456) and facts.tcp.congestion_control == "cubic"
    assert facts.tcp.available_cc == ("reno", "cubic", "bbr") and facts.tcp.busy_poll == 0


@pytest.mark.parametrize("nodes", NODES)
def test_management_interface_never_advised(tmp_path: Path, nodes: int) -> None:
    root, run = _net_machine(tmp_path, nodes)
    advice = net_advisor.advise(net_facts.read(root=root, run=run))
    knobs = _values(advice)
    assert not any(k.startswith("nic.eth0.") for k in knobs)
    assert knobs == {"nic.ens5.tso": "on", "nic.ens5.rx_ring": 2048}  # gro is fixed; veth1 is virtual
    both = net_advisor.advise(net_facts.read(root=root, run=run, protected=("default-route", "ens5")))
    assert both == []  # ens5 listed in protected_interfaces, eth0 carries the default route
    only = _values(net_advisor.advise(net_facts.read(root=root, run=run, protected=("ens5",))))
    assert only and all(k.startswith("nic.eth0.") for k in only)  # the rule is the setting's, not a name


def test_unreadable_route_table_protects_every_interface(tmp_path: Path) -> None:
    root, run = _net_machine(tmp_path, 2)
    (root / "proc/net/route").unlink()
    facts = net_facts.read(root=root, run=run)
    assert all(i.management for i in facts.interfaces)
    assert net_advisor.advise(facts) == []


@pytest.mark.parametrize("nodes", NODES)
def test_bdp_buffers_and_bbr_from_connections(tmp_path: Path, nodes: int) -> None:
    ss = (ss_conn("10.0.0.1:40000", "10.0.0.2:5201", rtt_ms=20.0, rate_bps=400_000_000, acked=900_000_000,
                  rwnd_pct=60.0)
          + ss_conn("10.0.0.1:22", "10.0.0.9:50000", rtt_ms=0.3, rate_bps=1_000_000, acked=20_000))
    root, run = _net_machine(tmp_path, nodes, ss=ss, rmem="4096 87380 1048576")
    facts = net_facts.read(root=root, run=run)
    assert len(facts.connections) == 2 and facts.connections[0].rwnd_limited_pct == 60.0
    advice = {a.title.split()[0]: a for a in net_advisor.advise(facts)}
    buf = advice["TCP"]
    bdp = net_advisor.bdp_bytes(10_000e6, 20.0)  # the link speed of ens5 (the data NIC) x RTT
    want = _values([buf])["net.ipv4.tcp_rmem"][2]
    assert want >= 2 * bdp and _values([buf])["net.core.rmem_max"] == want
    assert buf.confidence == 0.8 and any(e.what == "BDP" and e.value == bdp for e in buf.evidence)
    assert _values([advice["congestion"]]) == {"net.ipv4.tcp_congestion_control": "bbr"}


def test_no_connection_no_buffer_advice_and_big_buffers_kept(tmp_path: Path) -> None:
    root, run = _net_machine(tmp_path, 1, nics=[Nic("ens5", default_route=True)])
    assert net_advisor.advise(net_facts.read(root=root, run=run)) == []
    ss = ss_conn("10.0.0.1:1", "10.0.0.2:2", rtt_ms=0.05, rate_bps=9_000_000_000, acked=5_000_000_000)
    root, run = _net_machine(tmp_path / "b", 1, ss=ss, rmem="4096 131072 6291456",
                             nics=[Nic("ens5", speed=10000, default_route=True)])
    assert net_advisor.advise(net_facts.read(root=root, run=run)) == []  # 6 MiB >= 2 x 62 KiB; BDP small: no bbr


def test_busy_poll_for_many_small_requests(tmp_path: Path) -> None:
    ss = "".join(ss_conn(f"10.0.0.1:{8000 + i}", f"10.0.0.2:{9000 + i}", rtt_ms=0.1, rate_bps=2_000_000,
                         acked=60_000, received=60_000, segs=400) for i in range(6))
    root, run = _net_machine(tmp_path, 2, ss=ss, nics=[Nic("ens5", default_route=True)])
    assert _values(net_advisor.advise(net_facts.read(root=root, run=run))) == {
        "net.core.busy_poll": 50, "net.core.busy_read": 50}


def test_fixture_root_runs_no_command_and_netns_is_checked(tmp_path: Path) -> None:
    root, _ = _net_machine(tmp_path, 1)
    facts = net_facts.read(root=root)
    assert all(i.offloads is None for i in facts.interfaces) and facts.connections == ()
    assert any("not run on a fixture root" in g for g in facts.gaps)
    with pytest.raises(CollectorError, match="no network namespace 'nope'"):
        net_facts.read(root=root, netns="nope")


def test_ss_parser_real_output() -> None:
    text = (
        "ESTAB 0      6952      10.231.0.2:41128   10.231.0.1:5201\n"
        "\t bbr wscale:7,7 rto:204 rtt:0.03/0.022 mss:1448 bytes_sent:154050485 bytes_acked:154038894 "
        "segs_out:110204 segs_in:45128 bbr:(bw:1448000000bps,mrtt:0.005) send 55217066667bps "
        "pacing_rate 1433520000bps delivery_rate 1448000000bps delivered:110199 busy:1708ms "
        "rwnd_limited:756ms(44.3%) sndbuf_limited:8ms(0.5%) unacked:4 minrtt:0.005\n"
        "LISTEN 0 5 0.0.0.0:5201 0.0.0.0:*\n\t cubic rto:1000\n"
    )
    (c,) = parse_ss(text)
    assert (c.local, c.peer, c.cc) == ("10.231.0.2:41128", "10.231.0.1:5201", "bbr")
    assert (c.rtt_ms, c.min_rtt_ms) == (0.03, 0.005)
    assert c.delivery_rate_bps == 1.448e9 and c.bytes_acked == 154038894
    assert (c.rwnd_limited_pct, c.sndbuf_limited_pct, c.segs_out) == (44.3, 0.5, 110204)


def test_live_host_reads_without_raising() -> None:
    io = io_facts.read(root="/")
    assert io.devices and all(d.kind in io_advisor.KINDS for d in io.devices)
    net = net_facts.read(root="/")
    assert all(isinstance(i.management, bool) for i in net.interfaces)
    defaults = [i for i in net.interfaces if i.management_why == "carries a default route"]
    assert not any(c.knob.startswith(f"nic.{i.name}.") for i in defaults
                   for a in net_advisor.advise(net) for c in a.changes)
