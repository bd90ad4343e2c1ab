"""``target: {netns: {}}``: bad input refused with what is allowed; the pair made, journaled and deleted; knobs
bound inside the namespaces (host-wide ones skipped with the reason), never on the host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from actuators import KnobContext
from actuators.journal import Journal
from experiments.settings import Paths, Settings
from experiments.spec import SpecError, parse_spec
from experiments.study.prepare import prepare
from experiments.study.target_netns import NetnsTarget, NetnsTargetSpec, mirror_knobs

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="makes network namespaces: needs root")


def _spec(**over):
    spec = {
        "name": "t",
        "workload": {"kind": "iperf3"},
        "target": {"netns": {}},
        "knobs": {"net.ipv4.tcp_rmem": {"low": 65536, "high": 1048576}},
        "objectives": {"throughput": "maximize"},
    }
    spec.update(over)
    return spec


def _prepare(tmp_path: Path, data: dict) -> None:
    prepare(parse_spec(data), paths=Paths(tmp_path / "home").ensure(), settings=Settings())


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_nic_target_without_a_netns_target_is_refused_naming_what_is_allowed(tmp_path):
    data = _spec(knobs={"nic.@target.tso": {"choices": ["on", "off"]}})
    del data["target"]
    with pytest.raises(SpecError) as err:
        _prepare(tmp_path, data)
    msg = str(err.value)
    assert "knobs.nic.@target.tso" in msg and "target: {netns: {}}" in msg and "nic.<iface>.<leaf>" in msg


def test_unknown_target_leaf_lists_the_leaves(tmp_path):
    with pytest.raises(SpecError) as err:
        _prepare(tmp_path, _spec(knobs={"nic.@target.lro": {"choices": ["on", "off"]}}))
    assert "unknown leaf 'lro'" in str(err.value) and "nic.@target.gro" in str(err.value)


def test_a_workload_that_cannot_cross_the_pair_is_refused(tmp_path):
    with pytest.raises(SpecError) as err:
        _prepare(tmp_path, _spec(workload={"kind": "stress-ng"}))
    assert "target.netns: the stress-ng workload cannot run across the namespace pair" in str(err.value)
    assert "allowed with target.netns: iperf3, wrk" in str(err.value)


def test_a_host_interface_is_refused_with_a_netns_target(tmp_path):
    with pytest.raises(SpecError) as err:
        _prepare(tmp_path, _spec(knobs={"nic.lo.tso": {"choices": ["on", "off"]}}))
    assert "knobs.nic.lo.tso: with target.netns the nic knobs act on the study's veth ends" in str(err.value)
    assert "nic.@target.<leaf> (tso, gso, gro" in str(err.value)


def test_a_wrk_url_is_refused_with_a_netns_target(tmp_path):
    with pytest.raises(SpecError) as err:
        _prepare(tmp_path, _spec(workload={"kind": "wrk", "url": "http://127.0.0.1:8080/"}))
    assert "workload.url: not with target.netns" in str(err.value)


@pytest.mark.parametrize(("target", "needle"), [
    ({"netns": {"mtu": 70000}}, "target.netns.mtu"),
    ({"netns": {"mtu": 100}}, "greater than or equal to 1280"),
    ({"netns": {"devices": 2}}, "unknown field; allowed here: mtu"),
    ({"nets": {}}, "target.nets: unknown field; allowed here: neighbour, loop, netns"),
])
def test_bad_target_section_is_located(target, needle):
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(target=target))
    assert needle in str(err.value)


def test_a_good_spec_prepares_without_making_anything(tmp_path):
    before = _netns() if os.geteuid() == 0 else set()
    _prepare(tmp_path, _spec(knobs={"nic.@target.gso": {"choices": ["off", "on"]},
                                   "net.ipv4.tcp_wmem": {"low": 65536, "high": 1048576}}))
    if os.geteuid() == 0:
        assert _netns() == before


@needs_root
def test_the_pair_is_journaled_bound_and_deleted(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    before = _netns()
    host_rmem = Path("/proc/sys/net/ipv4/tcp_rmem").read_text()
    with NetnsTarget(NetnsTargetSpec(mtu=9000), journal=journal, run_id="r1") as target:
        pair = target.pair
        assert pair is not None and {pair.a, pair.b} <= _netns()
        mtu = subprocess.run(["ip", "-n", pair.a, "-o", "link", "show", "dev", pair.a], capture_output=True,
                             text=True, check=True).stdout
        assert " mtu 9000 " in mtu
        catalog = target.catalog(KnobContext())
        tso = catalog.get("nic.@target.tso")
        assert tso.name == f"nic.{pair.a}.tso" and tso.available() is None
        busy = catalog.get("net.core.busy_poll")
        assert "host-wide" in (busy.available() or "")  # skipped with the reason, never written
        rmem = catalog.get("net.ipv4.tcp_rmem")
        twin = mirror_knobs(["net.ipv4.tcp_rmem", "nic.@target.tso", "vm.swappiness"], KnobContext(), pair)
        assert set(twin) == {"net.ipv4.tcp_rmem", "nic.@target.tso"}
        (b_rmem,) = twin["net.ipv4.tcp_rmem"]
        tok_a, tok_b = rmem.prepare(262144), b_rmem.prepare(262144)
        assert (tok_a.target, tok_b.target) == (f"netns:{pair.a}:proc/sys/net/ipv4/tcp_rmem",
                                                f"netns:{pair.b}:proc/sys/net/ipv4/tcp_rmem")
        rmem.commit(tok_a)
        assert rmem.read()[2] == 262144 and b_rmem.read()[2] != 262144  # one namespace, not the host
        assert Path("/proc/sys/net/ipv4/tcp_rmem").read_text() == host_rmem
    assert _netns() == before
    events = [(r["event"], r["target"]) for r in journal.records() if r.get("kind") == "netns"]
    assert events == [("created", pair.a), ("created", pair.b), ("released", pair.a), ("released", pair.b)]


def test_warm_starts_do_not_mix_the_pair_with_loopback(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    with_pair = prepare(parse_spec(_spec()), paths=paths, settings=Settings())
    loopback = _spec()
    del loopback["target"]
    plain = prepare(parse_spec(loopback), paths=paths, settings=Settings())
    assert with_pair.target_key != plain.target_key
    assert plain.target_key.endswith(':{"kind": "iperf3", "streams": 1}')  # unchanged for specs without target
