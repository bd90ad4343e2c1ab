"""The IO and network advisors on plain facts: the rules, the confidence, and what is never advised."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.advice import rank
from optimizer.advisors.io import IDLE_REQUESTS, BlockFacts, IoFacts, IoPattern, advise, confidence
from optimizer.advisors.network import Connection, Interface, NetFacts, TcpSettings, buffer_target
from optimizer.advisors.network import advise as net_advise


def _pattern(reads: int, read_kb: float, merges: int = 0, writes: int = 0, *, sampled: bool = True,
             queue_ms: int = 0, interval_s: float = 10.0) -> IoPattern:
    return IoPattern(interval_s=interval_s, reads=reads, read_merges=merges, read_sectors=int(reads * read_kb * 2),
                     writes=writes, write_merges=0, write_sectors=writes * 8, in_flight=0, io_ticks_ms=5000,
                     time_in_queue_ms=queue_ms, sampled=sampled)


def _dev(**kw: object) -> BlockFacts:
    base = BlockFacts(name="loop3", kind="loop", rotational=False, scheduler="none",
                      schedulers=("none", "mq-deadline"), read_ahead_kb=128, nr_requests=128, hw_queues=1)
    return replace(base, **kw)  # type: ignore[arg-type]


def _knobs(advice: list) -> dict:
    return {c.knob: c.value for a in advice for c in a.changes}


def test_read_ahead_off_with_page_sized_reads_is_raised() -> None:
    # what a buffered sequential reader looks like with read-ahead 0: one page per request, nothing merged
    (a,) = advise(IoFacts(root="/", devices=(_dev(read_ahead_kb=0, sampled=_pattern(30_000, 4.0)),)))
    assert _knobs([a]) == {"block.loop3.read_ahead_kb": 1024} and a.expected_impact >= 0.3
    assert a.confidence < confidence(_pattern(30_000, 4.0))  # the pattern is ambiguous: less sure


def test_small_random_reads_under_a_small_window_are_left_alone() -> None:
    dev = _dev(rotational=True, kind="scsi", scheduler="mq-deadline", read_ahead_kb=32, sampled=_pattern(30_000, 4))
    assert advise(IoFacts(root="/", devices=(dev,))) == []


def test_fitting_schedulers_are_kept() -> None:
    for kind, rot, sched in (("nvme", False, "none"), ("virtio", False, "mq-deadline"), ("scsi", True, "bfq")):
        dev = _dev(kind=kind, rotational=rot, scheduler=sched, schedulers=("none", "mq-deadline", "bfq"),
                   sampled=_pattern(5000, 64.0, merges=10))
        assert "block.loop3.scheduler" not in _knobs(advise(IoFacts(root="/", devices=(dev,))))


def test_confidence_grows_with_requests_and_idle_is_zero() -> None:
    assert confidence(_pattern(IDLE_REQUESTS - 1, 4)) == 0.0
    values = [confidence(_pattern(n, 4)) for n in (IDLE_REQUESTS, 1000, 10_000, 1_000_000)]
    assert values == sorted(values) and values[-1] == 0.85
    assert confidence(_pattern(1_000_000, 4, sampled=False)) == 0.5


def test_write_only_device_gets_no_read_ahead_advice() -> None:
    dev = _dev(read_ahead_kb=0, sampled=_pattern(10, 4.0, writes=50_000))
    assert "block.loop3.read_ahead_kb" not in _knobs(advise(IoFacts(root="/", devices=(dev,))))


def test_zram_and_unknown_pattern_get_nothing() -> None:
    devs = (_dev(name="zram0", kind="zram", sampled=_pattern(50_000, 4)), _dev(name="loop9"))
    assert advise(IoFacts(root="/", devices=devs)) == []


def _nic(name: str, *, mgmt: bool) -> Interface:
    return Interface(name=name, driver="ixgbe", speed_mbps=25000, physical=True, management=mgmt,
                     offloads={"tso": False, "gso": False, "gro": False}, rings={"rx": 64, "rx_max": 8192},
                     rx_dropped=10)


@settings(max_examples=60, deadline=None)
@given(mgmt=st.lists(st.booleans(), min_size=1, max_size=4), rtt=st.floats(0.01, 200.0),
       rate=st.floats(1e6, 1e11), limited=st.floats(0, 100), rmax=st.integers(4096, 1 << 28))
def test_never_on_a_management_interface(mgmt: list[bool], rtt: float, rate: float, limited: float,
                                         rmax: int) -> None:
    nics = tuple(_nic(f"eth{i}", mgmt=m) for i, m in enumerate(mgmt))
    conn = Connection(local="a:1", peer="b:2", rtt_ms=rtt, delivery_rate_bps=rate, bytes_acked=1 << 30,
                      rwnd_limited_pct=limited)
    tcp = TcpSettings(rmem=(4096, 4096, rmax), wmem=(4096, 4096, rmax), rmem_max=rmax, wmem_max=rmax,
                      congestion_control="cubic", available_cc=("cubic", "bbr"), busy_poll=0, busy_read=0)
    advice = net_advise(NetFacts(root="/", interfaces=nics, tcp=tcp, connections=(conn,)))
    knobs = _knobs(advice)
    for nic in nics:
        assert any(k.startswith(f"nic.{nic.name}.") for k in knobs) != nic.management
    for a in advice:
        for c in a.changes:
            if c.knob in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
                assert c.value[0] <= c.value[1] <= c.value[2] <= 256 << 20
    assert len(rank(advice)) == len(advice)


def test_buffer_target_is_twice_the_bdp_in_powers_of_two() -> None:
    assert buffer_target(10) == 128 << 10
    assert buffer_target(3 << 20) == 8 << 20 and buffer_target(1 << 40) == 256 << 20


def test_netns_advice_is_targeted_and_skips_host_wide_busy_poll() -> None:
    conn = Connection(local="a:1", peer="b:2", rtt_ms=0.04, delivery_rate_bps=1e9, bytes_acked=1 << 28,
                      rwnd_limited_pct=50.0)
    tcp = TcpSettings(rmem=(4096, 4096, 8192), wmem=(4096, 4096, 8192), congestion_control="bbr")
    nic = Interface(name="v0", speed_mbps=10000)
    advice = net_advise(NetFacts(root="/", netns="ns1", interfaces=(nic,), tcp=tcp, connections=(conn,)))
    assert [a.target for a in advice] == ["netns:ns1"]
    assert _knobs(advice) == {"net.ipv4.tcp_rmem": [4096, 32768, 131072], "net.ipv4.tcp_wmem": [4096, 32768, 131072]}


def test_virtio_and_loop_rotational_flag_is_not_trusted() -> None:
    # virtio-blk never clears the flag and a loop device copies its backing device's: neither is seek-bound
    for kind in ("virtio", "loop"):
        dev = _dev(kind=kind, rotational=True, scheduler="none", read_ahead_kb=4096, sampled=_pattern(30_000, 4.0))
        assert _knobs(advise(IoFacts(root="/", devices=(dev,)))) == {"block.loop3.read_ahead_kb": 128}
    scsi = _dev(kind="scsi", rotational=True, scheduler="none", schedulers=("none", "mq-deadline"),
                read_ahead_kb=4096, sampled=_pattern(30_000, 4.0))
    assert _knobs(advise(IoFacts(root="/", devices=(scsi,)))) == {
        "block.loop3.scheduler": "mq-deadline", "block.loop3.read_ahead_kb": 32}


def test_bdp_uses_the_minimum_rtt_so_raising_buffers_does_not_ratchet() -> None:
    # under load the smoothed RTT includes the queue the buffers build; the minimum RTT is the path's
    tcp = TcpSettings(rmem=(4096, 131072, 131072), wmem=(4096, 131072, 131072), congestion_control="bbr")
    loaded = Connection(local="a:1", peer="b:2", rtt_ms=0.4, min_rtt_ms=0.02, delivery_rate_bps=5e9,
                        bytes_acked=1 << 30, rwnd_limited_pct=60.0)
    facts = NetFacts(root="/", interfaces=(Interface(name="v0", speed_mbps=10000),), tcp=tcp, connections=(loaded,))
    assert net_advise(facts) == []  # 2 x (10 Gbit/s x 0.02 ms) = 50 KB < 128 KiB already there
    assert _knobs(net_advise(replace(facts, connections=(replace(loaded, min_rtt_ms=None),))))  # smoothed: raise


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(["nvme", "virtio", "scsi", "loop", "zram", "md", "other"]), rot=st.booleans(),
       ra=st.integers(0, 16384), nr=st.integers(1, 8192), reads=st.integers(0, 10**6), kb=st.floats(0.5, 1024),
       merges=st.integers(0, 10**6), writes=st.integers(0, 10**6), queue_ms=st.integers(0, 10**7),
       sched=st.sampled_from(["none", "mq-deadline", "bfq", "kyber"]))
def test_io_advice_is_well_formed_and_idle_devices_get_none(kind: str, rot: bool, ra: int, nr: int, reads: int,
                                                            kb: float, merges: int, writes: int, queue_ms: int,
                                                            sched: str) -> None:
    p = _pattern(reads, kb, merges, writes, queue_ms=queue_ms)
    dev = _dev(kind=kind, rotational=rot, read_ahead_kb=ra, nr_requests=nr, scheduler=sched,
               schedulers=("none", "mq-deadline", "bfq", "kyber"), sampled=p)
    advice = advise(IoFacts(root="/", devices=(dev,)))
    if p.requests < IDLE_REQUESTS or kind in ("zram", "md"):
        assert advice == []
    for a in advice:
        assert 0 < a.confidence <= 0.85 and a.evidence and len(a.changes) == 1
        c = a.changes[0]
        assert c.value != c.current
        if c.knob.endswith(".scheduler"):
            seeking = rot and kind in ("scsi", "other")
            assert c.value in ("none", "mq-deadline") and (c.value == "mq-deadline") == seeking
        if c.knob.endswith(".nr_requests"):
            assert nr < c.value <= 4096
    assert len(rank(advice)) == len(advice)
