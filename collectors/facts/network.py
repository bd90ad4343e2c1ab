"""Network facts: interfaces, TCP settings and the established connections, of this namespace or another.

:func:`read` fills :class:`optimizer.advisors.network.NetFacts`. Files are read through the one safe
reader (:class:`collectors.rootfs.RootReader`) under ``root`` (a fixture tree or ``/``); with ``netns``
they are read inside the namespace (``ip netns exec NETNS cat|ls|readlink PATH``: ``ip`` remounts
``/sys`` for it, so ``/sys/class/net`` lists the namespace's interfaces). Offloads and rings come from
``ethtool -k`` / ``-g``, connections from ``ss -tin`` (``rtt``, ``delivery_rate``, ``rwnd_limited``,
``sndbuf_limited``); commands are argument lists, names are matched against what was listed, and on a
fixture root no command runs unless the caller passes ``run`` (tests pass canned outputs).

The management interface: every interface carrying a default route (``proc/net/route``,
``proc/net/ipv6_route``) when ``protected`` holds ``default-route`` (the default, as the setting
``protected_interfaces``), and every interface ``protected`` names. When the route table cannot be read
every interface counts as management (the rule of :func:`actuators.nic.protected`). Nothing here raises on
a machine that lacks a file or a tool: what could not be read is a gap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence

from collectors.errors import CollectorError
from collectors.facts.ss import parse_ss
from collectors.rootfs import RootReader
from optimizer.advisors.network import Interface, NetFacts, TcpSettings

__all__ = ["DEFAULT_ROUTE", "Run", "default_route_interfaces", "parse_ethtool_features", "parse_ethtool_rings",
           "read"]

#: runs a command (argument list) and returns its stdout, or None when it failed
Run = Callable[[Sequence[str]], "str | None"]
DEFAULT_ROUTE = "default-route"
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
_FEATURES = {"tcp-segmentation-offload": "tso", "generic-segmentation-offload": "gso",
             "generic-receive-offload": "gro"}
_TIMEOUT_S = 10.0
_MAX_SAMPLE_S = 60.0


def _run(argv: Sequence[str]) -> str | None:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def default_route_interfaces(route: str, ipv6_route: str) -> set[str]:
    """Interfaces carrying an IPv4 (``proc/net/route``: destination and mask 0, RTF_UP) or IPv6
    (``proc/net/ipv6_route``: ``::/0``) default route."""
    out = set()
    for line in route.splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and int(f[3], 16) & 0x1:
            out.add(f[0])
    for line in ipv6_route.splitlines():
        f = line.split()
        if len(f) >= 10 and f[0] == "0" * 32 and f[1] == "00" and int(f[8], 16) & 0x1 and f[9] != "lo":
            out.add(f[9])
    return out


def parse_ethtool_features(text: str) -> tuple[dict[str, bool], tuple[str, ...]]:
    """``ethtool -k`` -> (tso/gso/gro -> on, the ones marked ``[fixed]``)."""
    on: dict[str, bool] = {}
    fixed = []
    for line in text.splitlines():
        key, _, rest = line.strip().partition(":")
        if key in _FEATURES:
            on[_FEATURES[key]] = rest.split()[0] == "on" if rest.split() else False
            if "[fixed]" in rest:
                fixed.append(_FEATURES[key])
    return on, tuple(fixed)


def parse_ethtool_rings(text: str) -> dict[str, int]:
    """``ethtool -g`` -> ``rx_max``, ``tx_max`` (pre-set maximums) and ``rx``, ``tx`` (current)."""
    out: dict[str, int] = {}
    part = ""
    for line in text.splitlines():
        low = line.strip().lower()
        if low.startswith("pre-set maximums"):
            part = "_max"
        elif low.startswith("current hardware settings"):
            part = ""
        key, _, val = low.partition(":")
        if key in ("rx", "tx") and val.strip().isdigit():
            out[key + part] = int(val.strip())
    return out


class _Source:
    """Files of the root, or of a namespace through ``ip netns exec``; each failure once as a gap."""

    def __init__(self, fs: RootReader, netns: str | None, run: Run | None) -> None:
        self.fs, self.netns, self.run = fs, netns, run
        self.gaps: list[str] = []

    def cmd(self, *argv: str) -> str | None:
        if self.run is None:
            return None
        full = ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)
        out = self.run(full)
        if out is None:
            self.gaps.append(f"{' '.join(full)}: failed")
        return out

    def text(self, rel: str, *, quiet: bool = False) -> str | None:
        if self.netns:
            out = self.cmd("cat", "/" + rel) if not quiet else (self.run or (lambda a: None))(
                ["ip", "netns", "exec", self.netns, "cat", "/" + rel])
            return None if out is None else out.strip()
        try:
            return self.fs.read_bytes(rel).decode("utf-8", "replace").strip()
        except OSError as e:
            if not quiet:
                self.gaps.append(f"{rel}: {e.strerror or type(e).__name__}")
        except self.fs.unsafe_error as e:
            self.gaps.append(f"{rel}: {e}")
        return None

    def integer(self, rel: str, *, quiet: bool = False) -> int | None:
        raw = self.text(rel, quiet=quiet)
        try:
            return None if raw is None else int(raw)
        except ValueError:
            return None

    def listdir(self, rel: str) -> list[str]:
        if self.netns:
            out = self.cmd("ls", "-1", "/" + rel)
            return sorted(n for n in (out or "").split() if _NAME.fullmatch(n))
        try:
            return [n for n in self.fs.listdir(rel, strict=True) if _NAME.fullmatch(n)]
        except (OSError, self.fs.unsafe_error) as e:
            self.gaps.append(f"{rel}: {e}")
            return []

    def driver(self, iface: str) -> str | None:
        rel = f"sys/class/net/{iface}/device/driver"
        if self.netns:
            out = self.run(["ip", "netns", "exec", self.netns, "readlink", "/" + rel]) if self.run else None
            return None if not out else os.path.basename(out.strip())
        try:
            return os.path.basename(self.fs.readlink(rel))
        except (OSError, self.fs.unsafe_error):
            return None


def _management(src: _Source, names: list[str], protected: tuple[str, ...]) -> dict[str, str]:
    out = {n: "listed in protected_interfaces" for n in names if n in protected}
    if DEFAULT_ROUTE in protected:
        route, route6 = src.text("proc/net/route"), src.text("proc/net/ipv6_route", quiet=True)
        if route is None:
            return {n: "the route table cannot be read: every interface is protected" for n in names}
        for n in sorted(default_route_interfaces(route, route6 or "")):
            out.setdefault(n, "carries a default route")
    return out


def _interface(src: _Source, name: str, why: str | None) -> Interface:
    d = f"sys/class/net/{name}"
    driver = src.driver(name)
    speed = src.integer(f"{d}/speed", quiet=True)
    features = src.cmd("ethtool", "-k", name) if why is None else None
    rings = src.cmd("ethtool", "-g", name) if why is None and driver is not None else None
    on, fixed = parse_ethtool_features(features) if features else (None, ())
    return Interface(
        name=name, driver=driver, speed_mbps=speed if speed is not None and speed > 0 else None,
        mtu=src.integer(f"{d}/mtu"), operstate=src.text(f"{d}/operstate"), physical=driver is not None,
        management=why is not None, management_why=why, offloads=on, fixed=fixed,
        rings=parse_ethtool_rings(rings) if rings else None,
        rx_dropped=src.integer(f"{d}/statistics/rx_dropped", quiet=True),
    )


def _triplet(raw: str | None) -> tuple[int, int, int] | None:
    parts = (raw or "").split()
    return (int(parts[0]), int(parts[1]), int(parts[2])) if len(parts) == 3 and all(
        p.isdigit() for p in parts) else None


def _tcp(src: _Source) -> TcpSettings:
    p = "proc/sys/net"
    return TcpSettings(
        rmem=_triplet(src.text(f"{p}/ipv4/tcp_rmem")), wmem=_triplet(src.text(f"{p}/ipv4/tcp_wmem")),
        rmem_max=src.integer(f"{p}/core/rmem_max"), wmem_max=src.integer(f"{p}/core/wmem_max"),
        congestion_control=src.text(f"{p}/ipv4/tcp_congestion_control"),
        available_cc=tuple((src.text(f"{p}/ipv4/tcp_available_congestion_control") or "").split()),
        allowed_cc=tuple((src.text(f"{p}/ipv4/tcp_allowed_congestion_control", quiet=True) or "").split()),
        busy_poll=src.integer(f"{p}/core/busy_poll", quiet=True),
        busy_read=src.integer(f"{p}/core/busy_read", quiet=True),
    )


def read(*, root: str | os.PathLike[str] = "/", netns: str | None = None, sample_s: float = 0.0,
         protected: tuple[str, ...] = (DEFAULT_ROUTE,), run: Run | None = None,
         sleep: Callable[[float], None] = time.sleep) -> NetFacts:
    """The network facts under ``root`` (of the namespace ``netns`` when given).

    Args:
        root: the directory holding ``proc/`` and ``sys/``.
        netns: a namespace of ``<root>/run/netns`` (``ip netns add``); None: this process's.
        sample_s: when > 0, wait this long (at most 60 s) and read the connections again, keeping each
            connection's later figures (a connection's rate settles while it runs).
        protected: the setting ``protected_interfaces``.
        run: runs ``ethtool`` / ``ss`` / ``ip netns exec``; default: real commands on ``/``, none on a
            fixture root.

    Raises:
        CollectorError: ``root`` is not a directory, ``netns`` is not one of ``<root>/run/netns``, or
            ``sample_s`` is out of range.
    """
    fs = RootReader(root)
    if not fs.root.is_dir():
        raise CollectorError(f"network facts root {root}: not a directory")
    if not 0.0 <= sample_s <= _MAX_SAMPLE_S:
        raise CollectorError(f"sample_s must be within 0..{_MAX_SAMPLE_S:g} s, got {sample_s}")
    if netns is not None and netns not in fs.listdir("run/netns"):
        listed = ", ".join(fs.listdir("run/netns")) or "none"
        raise CollectorError(f"no network namespace {netns!r}; namespaces: {listed}")
    if run is None and fs.is_host:
        run = _run
    src = _Source(fs, netns, run)
    if run is None:
        src.gaps.append("ethtool and ss not run on a fixture root (pass run=)")
    elif shutil.which("ethtool") is None and run is _run:
        src.gaps.append("ethtool is not installed (Debian package ethtool)")
    names = [n for n in src.listdir("sys/class/net") if n != "lo"]
    mgmt = _management(src, names, protected)
    interfaces = tuple(_interface(src, n, mgmt.get(n)) for n in names)
    conns = parse_ss(src.cmd("ss", "-tinH") or "")
    if sample_s > 0 and run is not None:
        sleep(sample_s)
        later = {(c.local, c.peer): c for c in parse_ss(src.cmd("ss", "-tinH") or "")}
        conns = tuple(later.get((c.local, c.peer), c) for c in conns) + tuple(
            c for k, c in later.items() if k not in {(x.local, x.peer) for x in conns})
    where = f"(in netns {netns}) " if netns else ""
    return NetFacts(
        root=str(fs.root), netns=netns, interfaces=interfaces, tcp=_tcp(src), connections=tuple(conns),
        sources={"tcp": f"{where}proc/sys/net", "connections": f"{where}ss -tin",
                 "interfaces": f"{where}sys/class/net", "offloads": f"{where}ethtool -k",
                 "rings": f"{where}ethtool -g"},
        gaps=tuple(src.gaps),
    )
