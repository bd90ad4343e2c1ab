"""Fixture trees for the IO and network advisors: a ``proc/`` + ``sys/`` tree of a 1-, 2- or 4-node machine
with chosen block devices (sysfs queue files, ``/proc/diskstats``) and NICs (``sys/class/net``, the route
table, the TCP sysctls), plus :class:`FakeRun`, the canned ``ethtool`` / ``ss`` outputs the network reader
takes as ``run``.

Reusable: ``build_ionet_machine(tmp_path / "m", nodes=2, disks=[Disk(...)], nics=[Nic(...)])``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Disk", "FakeRun", "Nic", "build_ionet_machine", "diskstats_line", "ethtool_k", "ethtool_g",
           "set_diskstats", "ss_conn", "standard_disks", "standard_nics"]


@dataclass
class Disk:
    """One whole block device: its queue files and its diskstats counters
    (reads, read merges, read sectors, writes, write merges, write sectors, in flight, io ms, queue ms)."""

    name: str
    rotational: int = 0
    schedulers: str = "[none] mq-deadline kyber"
    read_ahead_kb: int = 128
    nr_requests: int = 256
    hw_queues: int = 1
    driver: str | None = None
    counters: tuple[int, int, int, int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass
class Nic:
    """One interface; ``default_route`` puts it in ``proc/net/route`` as the default route's device."""

    name: str
    driver: str | None = "ixgbe"
    speed: int | None = 10000
    default_route: bool = False
    features: dict[str, str] = field(default_factory=lambda: {"tso": "on", "gso": "on", "gro": "on"})
    rings: tuple[int, int] | None = (512, 4096)  # (current rx, max rx)
    rx_dropped: int = 0


def _w(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def diskstats_line(d: Disk) -> str:
    r, rm, rs, w, wm, ws, inflight, io_ms, q_ms = d.counters
    return f"   1 0 {d.name} {r} {rm} {rs} {r // 10} {w} {wm} {ws} {w // 10} {inflight} {io_ms} {q_ms} 0 0 0 0"


def set_diskstats(root: Path, disks: Sequence[Disk]) -> None:
    """(Re)write ``proc/diskstats`` from the disks' counters."""
    _w(root, "proc/diskstats", "\n".join(diskstats_line(d) for d in disks) + "\n")


def _nodes(root: Path, nodes: int, cpus_per_node: int = 2) -> None:
    n_cpus = nodes * cpus_per_node
    _w(root, "sys/devices/system/cpu/online", f"0-{n_cpus - 1}\n")
    _w(root, "sys/devices/system/node/online", f"0-{nodes - 1}\n" if nodes > 1 else "0\n")
    for n in range(nodes):
        lo = n * cpus_per_node
        _w(root, f"sys/devices/system/node/node{n}/cpulist", f"{lo}-{lo + cpus_per_node - 1}\n")
        _w(root, f"sys/devices/system/node/node{n}/distance",
           " ".join("10" if m == n else "21" for m in range(nodes)) + "\n")


def _disk(root: Path, d: Disk) -> None:
    q = f"sys/block/{d.name}/queue"
    _w(root, f"{q}/rotational", f"{d.rotational}\n")
    if d.schedulers:
        _w(root, f"{q}/scheduler", d.schedulers + "\n")
    _w(root, f"{q}/read_ahead_kb", f"{d.read_ahead_kb}\n")
    _w(root, f"{q}/nr_requests", f"{d.nr_requests}\n")
    for i in range(d.hw_queues):
        (root / f"sys/block/{d.name}/mq/{i}").mkdir(parents=True, exist_ok=True)
    if d.driver:
        drv = root / f"sys/bus/drivers/{d.driver}"
        drv.mkdir(parents=True, exist_ok=True)
        dev = root / f"sys/block/{d.name}/device"
        dev.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(drv, dev), dev / "driver")


def _nic(root: Path, n: Nic) -> None:
    d = f"sys/class/net/{n.name}"
    _w(root, f"{d}/mtu", "1500\n")
    _w(root, f"{d}/operstate", "up\n")
    _w(root, f"{d}/statistics/rx_dropped", f"{n.rx_dropped}\n")
    if n.speed is not None:
        _w(root, f"{d}/speed", f"{n.speed}\n")
    if n.driver:
        drv = root / f"sys/bus/drivers/{n.driver}"
        drv.mkdir(parents=True, exist_ok=True)
        dev = root / d / "device"
        dev.mkdir(parents=True, exist_ok=True)
        if not (dev / "driver").exists():
            os.symlink(os.path.relpath(drv, dev), dev / "driver")


def _tcp(root: Path, rmem: str, wmem: str, cc: str, available: str) -> None:
    p = "proc/sys/net"
    _w(root, f"{p}/ipv4/tcp_rmem", rmem + "\n")
    _w(root, f"{p}/ipv4/tcp_wmem", wmem + "\n")
    _w(root, f"{p}/core/rmem_max", "212992\n")
    _w(root, f"{p}/core/wmem_max", "212992\n")
    _w(root, f"{p}/ipv4/tcp_congestion_control", cc + "\n")
    _w(root, f"{p}/ipv4/tcp_available_congestion_control", available + "\n")
    _w(root, f"{p}/ipv4/tcp_allowed_congestion_control", available + "\n")
    _w(root, f"{p}/core/busy_poll", "0\n")
    _w(root, f"{p}/core/busy_read", "0\n")


def build_ionet_machine(root: Path, *, nodes: int = 1, disks: Sequence[Disk] = (), nics: Sequence[Nic] = (),
                        uptime_s: float = 1000.0, rmem: str = "4096 131072 6291456",
                        wmem: str = "4096 16384 4194304", cc: str = "cubic",
                        available_cc: str = "reno cubic bbr") -> Path:
    """Write the tree under ``root`` and return it."""
    _nodes(root, nodes)
    for d in disks:
        _disk(root, d)
    set_diskstats(root, disks)
    _w(root, "proc/uptime", f"{uptime_s:.2f} 100.00\n")
    (root / "sys/class/net/lo").mkdir(parents=True, exist_ok=True)
    for n in nics:
        _nic(root, n)
    rows = ["Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT"]
    for n in nics:
        if n.default_route:
            rows.append(f"{n.name}\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0")
        rows.append(f"{n.name}\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0")
    _w(root, "proc/net/route", "\n".join(rows) + "\n")
    _w(root, "proc/net/ipv6_route", "")
    _tcp(root, rmem, wmem, cc, available_cc)
    (root / "run/netns").mkdir(parents=True, exist_ok=True)
    return root


def ethtool_k(features: dict[str, str]) -> str:
    names = {"tso": "tcp-segmentation-offload", "gso": "generic-segmentation-offload",
             "gro": "generic-receive-offload"}
    return "Features for x:\nrx-checksumming: on\n" + "".join(f"{names[k]}: {v}\n" for k, v in features.items())


def ethtool_g(rx: int, rx_max: int) -> str:
    return (f"Ring parameters for x:\nPre-set maximums:\nRX:\t\t{rx_max}\nRX Mini:\tn/a\nTX:\t\t{rx_max}\n"
            f"Current hardware settings:\nRX:\t\t{rx}\nRX Mini:\tn/a\nTX:\t\t{rx}\n")


def ss_conn(local: str, peer: str, *, rtt_ms: float, rate_bps: int, acked: int, received: int = 0,
            rwnd_pct: float | None = None, segs: int = 1000, cc: str = "cubic") -> str:
    limited = f" busy:1000ms rwnd_limited:{int(rwnd_pct * 10)}ms({rwnd_pct}%)" if rwnd_pct is not None else ""
    return (f"ESTAB 0 0 {local} {peer}\n\t {cc} wscale:7,7 rto:204 rtt:{rtt_ms}/0.02 mss:1448 cwnd:10 "
            f"bytes_acked:{acked} bytes_received:{received} segs_out:{segs} segs_in:{segs} "
            f"send 100bps delivery_rate {rate_bps}bps{limited} minrtt:{rtt_ms}\n")


class FakeRun:
    """Canned command outputs for the network reader's ``run``: ``ethtool -k|-g IFACE`` and ``ss -tinH``.
    Records every command it was asked to run in ``calls``."""

    def __init__(self, nics: Sequence[Nic] = (), ss: str = "") -> None:
        self.nics = {n.name: n for n in nics}
        self.ss = ss
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str | None:
        argv = list(argv)
        self.calls.append(argv)
        if argv[:1] == ["ss"]:
            return self.ss
        if argv[:1] == ["ethtool"] and len(argv) == 3 and argv[2] in self.nics:
            nic = self.nics[argv[2]]
            if argv[1] == "-k":
                return ethtool_k(nic.features)
            if argv[1] == "-g" and nic.rings is not None:
                return ethtool_g(*nic.rings)
        return None


def standard_disks() -> list[Disk]:
    """An NVMe, a rotational SATA disk, a virtio disk and a loop device, all busy with different patterns."""
    return [
        # NVMe under mq-deadline, 4 hardware queues, random 4 KiB reads at high IOPS
        Disk("nvme0n1", 0, "none [mq-deadline] kyber", 128, 1023, 4, "nvme",
             (200_000, 100, 1_600_000, 50_000, 50, 400_000, 2, 9_000, 40_000)),
        # SATA disk under none, random 4 KiB reads, read-ahead 4096
        Disk("sda", 1, "[none] mq-deadline bfq", 4096, 64, 1, "sd",
             (50_000, 200, 400_000, 5_000, 100, 80_000, 1, 900_000, 1_500_000)),
        # virtio disk, large sequential reads under a small read-ahead window
        Disk("vda", 0, "none [mq-deadline]", 256, 256, 2, "virtio_blk",
             (20_000, 15_000, 10_240_000, 2_000, 200, 32_000, 0, 50_000, 60_000)),
        # loop device, idle
        Disk("loop0", 0, "[none] mq-deadline", 128, 128, 1, None, (10, 0, 80, 0, 0, 0, 0, 1, 1)),
        # left out by the reader
        Disk("ram0", 0, "", 16, 128, 0, None),
        Disk("dm-0", 0, "", 128, 128, 0, None),
    ]


def standard_nics() -> list[Nic]:
    """The management NIC (default route, GRO off), a data NIC with offloads off and drops, a virtual one."""
    return [
        Nic("eth0", "virtio_net", None, default_route=True, features={"tso": "off", "gso": "off", "gro": "off"},
            rings=(256, 1024), rx_dropped=50),
        Nic("ens5", "ixgbe", 10000, features={"tso": "off", "gso": "on", "gro": "off [fixed]"},
            rings=(512, 4096), rx_dropped=1200),
        Nic("veth1", None, 10000, features={"tso": "off", "gso": "on", "gro": "off"}, rings=None),
    ]
