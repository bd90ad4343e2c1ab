"""nic.<iface>.*: ethtool output parsing, and the contract on a veth pair in a namespace the test creates."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from actuators import ChangeSession, Journal, OutOfBounds, UnknownKnob
from actuators.nic import _section, interfaces, nic_knob, restore_nic

RINGS = """Ring parameters for eth0:
Pre-set maximums:
RX:\t\t4096
RX Mini:\tn/a
TX:\t\t4096
Current hardware settings:
RX:\t\t256
RX Mini:\tn/a
TX:\t\t512
"""


def test_ring_sections_are_parsed():
    assert _section(RINGS, "Pre-set maximums")["RX"] == "4096"
    cur = _section(RINGS, "Current hardware settings")
    assert (cur["RX"], cur["TX"]) == ("256", "512")


def test_unknown_names_are_refused():
    with pytest.raises(UnknownKnob, match="nic knobs are tso, gso, gro"):
        nic_knob("eth0", "mtu")
    with pytest.raises(UnknownKnob, match="no interface"):
        nic_knob("../../x", "gro")
    with pytest.raises(UnknownKnob, match="no network namespace"):
        nic_knob("veth0", "gro", netns="does-not-exist")


needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ethtool") is None,
    reason="needs root, ip (iproute2) and ethtool (Debian package ethtool)",
)


@pytest.fixture
def veth_netns():
    ns = f"novatune-nic-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "nva", "type", "veth", "peer", "name", "nvb"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _features(ns):
    return subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-k", "nva"],
                          capture_output=True, text=True, check=True).stdout


@needs_netns
def test_offload_contract_in_a_private_namespace(tmp_path, veth_netns):
    assert interfaces(veth_netns) == ["nva", "nvb"]
    before = _features(veth_netns)
    gro = nic_knob("nva", "gro", netns=veth_netns)
    assert gro.available() is None
    new = "on" if gro.read() == "off" else "off"
    with ChangeSession(Journal(tmp_path / "j.jsonl"), run_id="r", trial=0) as s:
        s.apply(gro, new)
        assert gro.read() == new and gro.verify(new)
    assert _features(veth_netns) == before
    with pytest.raises(OutOfBounds, match="choices"):
        gro.apply("maybe")
    assert _features(veth_netns) == before


@needs_netns
def test_unsupported_and_fixed_settings_say_why(veth_netns):
    assert "not supported here" in nic_knob("nva", "rx_ring", netns=veth_netns).available()
    assert "not supported here" in nic_knob("nva", "rx_usecs", netns=veth_netns).available()


@needs_netns
def test_restore_nic_from_a_journal_target(veth_netns):
    gro = nic_knob("nva", "gro", netns=veth_netns)
    old = gro.read()
    gro.apply("on" if old == "off" else "off")
    restore_nic(f"{veth_netns}:nva:gro", old)
    assert gro.read() == old
