"""The network advisor: interfaces, TCP settings and measured connections -> buffers, congestion control,
busy-poll, offloads and rings.

Pure: plain data in (:class:`NetFacts`, filled by :func:`collectors.facts.network.read`), :class:`Advice`
out. Knobs: ``net.ipv4.tcp_rmem`` / ``tcp_wmem`` (triplets), ``net.core.rmem_max`` / ``wmem_max``,
``net.ipv4.tcp_congestion_control``, ``net.core.busy_poll`` / ``busy_read`` and ``nic.<if>.*``; with a
network namespace the advice's ``target`` is ``netns:NAME`` (those ``net.*`` knobs act inside it).

* **Buffers (BDP)**: for the established connections that carried data, the bandwidth-delay product
  ``BDP = rate × RTT`` with ``rate`` the link speed when the interface reports one (else the measured
  delivery rate) and ``RTT`` the minimum measured one (the smoothed RTT includes the queue the buffers
  build: a BDP from it grows with every raise). ``2 × BDP`` is rounded up to a power of two, at least
  128 KiB. The max of ``tcp_rmem`` / ``tcp_wmem`` should be at least
  ``2 × BDP`` (and ``rmem_max`` / ``wmem_max`` too); a connection that spent a share of its time limited by
  the receive window or the send buffer (``rwnd_limited`` / ``sndbuf_limited``) is evidence that the
  buffers bind, and raises the confidence.
* **Congestion control**: ``bbr`` where it is available, for a path whose BDP is large (>= 1 MiB) and
  whose current algorithm is loss-based.
* **Busy-poll**: a latency-bound service (many connections carrying small requests at a low rate,
  short RTT) gets ``busy_poll`` / ``busy_read`` 50 us (host-wide knobs: not advised inside a namespace).
* **Offloads and rings**: a physical NIC with GRO/TSO/GSO off that it could turn on, or an RX ring below
  its maximum while the interface dropped packets.

Never on the management interface (:attr:`Interface.management`: carries the default route, or listed
in ``protected_interfaces``): no advice names its ``nic.*`` knobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optimizer.advice import Advice, Change, Evidence

__all__ = [
    "BDP_LARGE", "Connection", "Interface", "NetFacts", "TcpSettings", "advise", "bdp_bytes", "buffer_target",
]

_KIB, _MIB = 1024, 1 << 20
#: a BDP at least this large is a "high-BDP path" (congestion control advice)
BDP_LARGE = 1 * _MIB
_BUF_MAX = 256 * _MIB  # the knobs' hard bound
_MIN_CONN_BYTES = 1 * _MIB  # a connection that carried less says nothing about throughput
_LOSS_BASED = ("reno", "cubic", "htcp", "highspeed", "scalable", "bic", "westwood")
_BUSY_US = 50


@dataclass(frozen=True)
class Interface:
    """One network interface (``lo`` excluded). ``offloads``: feature -> on (``None`` when unknown);
    ``fixed``: features the driver does not let change; ``rings``: ``rx``/``tx``/``rx_max``/``tx_max``."""

    name: str
    driver: str | None = None
    speed_mbps: int | None = None
    mtu: int | None = None
    operstate: str | None = None
    physical: bool = False
    management: bool = False
    management_why: str | None = None
    offloads: dict[str, bool] | None = None
    fixed: tuple[str, ...] = ()
    rings: dict[str, int] | None = None
    rx_dropped: int | None = None


@dataclass(frozen=True)
class TcpSettings:
    """The TCP sysctls as read (``None``: not readable). Triplets are ``(min, default, max)`` bytes."""

    rmem: tuple[int, int, int] | None = None
    wmem: tuple[int, int, int] | None = None
    rmem_max: int | None = None
    wmem_max: int | None = None
    congestion_control: str | None = None
    available_cc: tuple[str, ...] = ()
    allowed_cc: tuple[str, ...] = ()
    busy_poll: int | None = None
    busy_read: int | None = None


@dataclass(frozen=True)
class Connection:
    """One established TCP connection as ``ss -tin`` shows it (rates in bits/s, times in ms)."""

    local: str
    peer: str
    rtt_ms: float | None = None
    min_rtt_ms: float | None = None
    delivery_rate_bps: float | None = None
    bytes_acked: int = 0
    bytes_received: int = 0
    cc: str | None = None
    rwnd_limited_pct: float | None = None
    sndbuf_limited_pct: float | None = None
    segs_out: int = 0
    segs_in: int = 0

    @property
    def bytes(self) -> int:
        return self.bytes_acked + self.bytes_received

    @property
    def base_rtt_ms(self) -> float | None:
        """The path's own round trip: the minimum RTT seen (the smoothed one includes the queue that the
        buffers themselves build, so a BDP from it would grow with every buffer raise)."""
        return self.min_rtt_ms if self.min_rtt_ms else self.rtt_ms


@dataclass(frozen=True)
class NetFacts:
    """Interfaces, TCP settings and connections of one network namespace (``netns`` None: this one)."""

    root: str
    netns: str | None = None
    interfaces: tuple[Interface, ...] = ()
    tcp: TcpSettings = field(default_factory=TcpSettings)
    connections: tuple[Connection, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    gaps: tuple[str, ...] = ()


def bdp_bytes(rate_bps: float, rtt_ms: float) -> int:
    """The bandwidth-delay product in bytes of a ``rate_bps`` path with round trip ``rtt_ms``."""
    return int(rate_bps / 8.0 * rtt_ms / 1000.0)


def buffer_target(bdp: int) -> int:
    """``2 × BDP`` rounded up to a power of two, at least 128 KiB and at most the knobs' bound."""
    want = max(2 * bdp, 128 * _KIB)
    return min(1 << (want - 1).bit_length(), _BUF_MAX)


def advise(facts: NetFacts) -> list[Advice]:
    """Advice for ``facts`` (see the module doc). Never names a management interface's knob; never
    raises on missing facts (what is unknown is not advised)."""
    target = f"netns:{facts.netns}" if facts.netns else None
    out = [*_buffers(facts, target), *_congestion(facts, target), *_busy_poll(facts), *_nics(facts)]
    return out


def _path(facts: NetFacts) -> tuple[Connection, float, int, str] | None:
    """The busiest data-carrying connection, the rate used for its BDP, the BDP, and the rate's source."""
    busy = [c for c in facts.connections if c.bytes >= _MIN_CONN_BYTES and c.base_rtt_ms and c.base_rtt_ms > 0]
    if not busy:
        return None
    conn = max(busy, key=lambda c: c.bytes)
    speeds = [i.speed_mbps for i in facts.interfaces if i.speed_mbps and not i.management]
    if speeds:
        rate, src = max(speeds) * 1e6, "link speed"
    elif conn.delivery_rate_bps:
        rate, src = conn.delivery_rate_bps, "measured delivery rate"
    else:
        return None
    rtt = conn.base_rtt_ms
    assert rtt is not None
    return conn, rate, bdp_bytes(rate, rtt), src


def _conn_evidence(facts: NetFacts, conn: Connection, rate: float, bdp: int, src: str) -> tuple[Evidence, ...]:
    ss = facts.sources.get("connections", "ss -tin")
    return (
        Evidence("connection", f"{conn.local} -> {conn.peer}", "", ss),
        Evidence("RTT (smoothed)", conn.rtt_ms, "ms", ss),
        Evidence("RTT (minimum, for the BDP)", conn.base_rtt_ms, "ms", ss),
        Evidence("delivery rate", conn.delivery_rate_bps, "bit/s", ss),
        Evidence("bytes carried", conn.bytes, "B", ss),
        Evidence("rwnd limited", conn.rwnd_limited_pct, "%", ss),
        Evidence("sndbuf limited", conn.sndbuf_limited_pct, "%", ss),
        Evidence(f"rate for BDP ({src})", rate, "bit/s",
                 facts.sources.get("interfaces", "sys/class/net") if src == "link speed" else ss),
        Evidence("BDP", bdp, "B", "rate × RTT"),
    )


def _buffers(facts: NetFacts, target: str | None) -> list[Advice]:
    path = _path(facts)
    tcp = facts.tcp
    if path is None or tcp.rmem is None or tcp.wmem is None:
        return []
    conn, rate, bdp, src = path
    want = buffer_target(bdp)
    limited = max(conn.rwnd_limited_pct or 0.0, conn.sndbuf_limited_pct or 0.0)
    changes = []
    for name, trip in (("net.ipv4.tcp_rmem", tcp.rmem), ("net.ipv4.tcp_wmem", tcp.wmem)):
        if trip[2] < want:
            changes.append(Change(name, [trip[0], max(trip[1], min(want // 4, 128 * _KIB)), want], list(trip)))
    for name, cur in (("net.core.rmem_max", tcp.rmem_max), ("net.core.wmem_max", tcp.wmem_max)):
        if cur is not None and cur < want:
            changes.append(Change(name, want, cur))
    if not changes:
        return []
    smallest = min(tcp.rmem[2], tcp.wmem[2])
    impact = min(0.5, max(0.05, 1.0 - smallest / want)) if limited >= 5 else 0.05
    conf = 0.8 if limited >= 20 else 0.6 if limited >= 5 else 0.35
    sysctl = facts.sources.get("tcp", "proc/sys/net")
    return [Advice(
        advisor="network", title=f"TCP buffers up to {want // _KIB} KiB (2 × BDP)",
        why=(f"BDP = {rate / 1e9:.2f} Gbit/s ({src}) × {conn.base_rtt_ms} ms (min RTT) = {bdp // _KIB} KiB; "
             f"the TCP buffer max is {smallest // _KIB} KiB, below 2 × BDP"
             + (f"; the busiest connection was window- or buffer-limited {limited:.0f} % of its time"
                if limited else "")),
        changes=tuple(changes), metric="throughput", expected_impact=round(impact, 3), confidence=conf, risk=1.0,
        evidence=(*_conn_evidence(facts, conn, rate, bdp, src),
                  Evidence("tcp_rmem", " ".join(map(str, tcp.rmem)), "B", f"{sysctl}/ipv4/tcp_rmem"),
                  Evidence("tcp_wmem", " ".join(map(str, tcp.wmem)), "B", f"{sysctl}/ipv4/tcp_wmem")),
        target=target,
    )]


def _congestion(facts: NetFacts, target: str | None) -> list[Advice]:
    path = _path(facts)
    tcp = facts.tcp
    usable = set(tcp.allowed_cc) | set(tcp.available_cc)
    if path is None or tcp.congestion_control not in _LOSS_BASED or "bbr" not in usable:
        return []
    conn, rate, bdp, src = path
    if bdp < BDP_LARGE:
        return []
    return [Advice(
        advisor="network", title="congestion control bbr",
        why=(f"a {bdp // _KIB} KiB BDP path under {tcp.congestion_control}: a loss-based algorithm halves its "
             "window on each loss and refills a large window slowly; bbr paces at the measured bottleneck rate"),
        changes=(Change("net.ipv4.tcp_congestion_control", "bbr", tcp.congestion_control),),
        metric="throughput", expected_impact=0.10, confidence=0.5, risk=1.5,
        evidence=(*_conn_evidence(facts, conn, rate, bdp, src),
                  Evidence("congestion control", tcp.congestion_control, "",
                           facts.sources.get("tcp", "proc/sys/net") + "/ipv4/tcp_congestion_control"),
                  Evidence("available", " ".join(tcp.available_cc), "",
                           facts.sources.get("tcp", "proc/sys/net") + "/ipv4/tcp_available_congestion_control")),
        target=target,
    )]


def _busy_poll(facts: NetFacts) -> list[Advice]:
    """Many short request/response connections at a low rate and short RTT: latency-bound."""
    tcp = facts.tcp
    if facts.netns or tcp.busy_poll is None or tcp.busy_poll > 0:
        return []
    conns = [c for c in facts.connections if c.segs_in + c.segs_out >= 100 and c.rtt_ms is not None]
    if len(conns) < 4:
        return []
    small = [c for c in conns if c.bytes / max(1, c.segs_in + c.segs_out) <= 512 and (c.rtt_ms or 0) <= 1.0]
    if len(small) < 0.75 * len(conns):
        return []
    ss = facts.sources.get("connections", "ss -tin")
    mean_seg = sum(c.bytes for c in small) / max(1, sum(c.segs_in + c.segs_out for c in small))
    return [Advice(
        advisor="network", title=f"busy-poll {_BUSY_US} us (latency-bound service)",
        why=(f"{len(small)} of {len(conns)} connections carry small requests ({mean_seg:.0f} B per segment) at a "
             "short RTT: the wake-up after an interrupt dominates their latency; busy-polling the queue for "
             f"{_BUSY_US} us trades CPU for it"),
        changes=(Change("net.core.busy_poll", _BUSY_US, tcp.busy_poll),
                 Change("net.core.busy_read", _BUSY_US, tcp.busy_read)),
        metric="p95_latency_ms", expected_impact=0.05, confidence=0.4, risk=2.0,
        evidence=(Evidence("small-request connections", len(small), "", ss),
                  Evidence("mean bytes per segment", round(mean_seg, 1), "B", ss),
                  Evidence("busy_poll", tcp.busy_poll, "us",
                           facts.sources.get("tcp", "proc/sys/net") + "/core/busy_poll")),
    )]


def _nics(facts: NetFacts) -> list[Advice]:
    out: list[Advice] = []
    target = f"netns:{facts.netns}" if facts.netns else None
    for nic in facts.interfaces:
        if nic.management or not nic.physical:
            continue
        src = facts.sources.get("offloads", "ethtool -k")
        off = [k for k, on in (nic.offloads or {}).items() if on is False and k not in nic.fixed]
        if off:
            out.append(Advice(
                advisor="network", title=f"offloads {', '.join(off)} on for {nic.name}",
                why=(f"{nic.name} ({nic.driver or 'unknown driver'}) has {', '.join(off)} off: every segment then "
                     "costs the CPU a trip through the stack that the NIC or GRO batching would save"),
                changes=tuple(Change(f"nic.{nic.name}.{k}", "on", "off") for k in off),
                metric="throughput", expected_impact=0.05, confidence=0.5, risk=1.0, target=target,
                evidence=tuple(Evidence(f"{nic.name} {k}", "off", "", src) for k in off),
            ))
        rings = nic.rings or {}
        if rings.get("rx") and rings.get("rx_max") and rings["rx"] < rings["rx_max"] and (nic.rx_dropped or 0) > 0:
            want = min(rings["rx_max"], 4 * rings["rx"])
            ring_src = facts.sources.get("rings", "ethtool -g")
            out.append(Advice(
                advisor="network", title=f"RX ring {want} on {nic.name}",
                why=(f"{nic.name} dropped {nic.rx_dropped} received packets with an RX ring of {rings['rx']} "
                     f"(max {rings['rx_max']}): a longer ring absorbs bursts"),
                changes=(Change(f"nic.{nic.name}.rx_ring", want, rings["rx"]),),
                metric="throughput", expected_impact=0.03, confidence=0.5, risk=1.0, target=target,
                evidence=(Evidence(f"{nic.name} rx ring", rings["rx"], "entries", ring_src),
                          Evidence(f"{nic.name} rx ring max", rings["rx_max"], "entries", ring_src),
                          Evidence(f"{nic.name} rx_dropped", nic.rx_dropped, "packets",
                                   f"sys/class/net/{nic.name}/statistics/rx_dropped")),
            ))
    return out
