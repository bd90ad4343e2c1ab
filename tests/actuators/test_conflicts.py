"""Other owners of a setting: sysctl.d files (systemd-sysctl order) and the active TuneD profile."""

from __future__ import annotations

import os
from pathlib import Path

from actuators import Catalog, SysRoot
from actuators.conflicts import ConflictFinder, normalise_sysctl_key, parse_sysctl_text


def _w(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_parse_sysctl_lines() -> None:
    text = "# c\n; c\n\nvm.swappiness = 10\nvm.dirty_ratio=15\n-vm/dirty_background_ratio = 5\nnonsense\n"
    assert parse_sysctl_text(text) == [
        (4, "vm.swappiness", "10"), (5, "vm.dirty_ratio", "15"), (6, "vm.dirty_background_ratio", "5")
    ]
    assert normalise_sysctl_key("net/ipv4/conf/eth0.1/forwarding") == "net.ipv4.conf.eth0/1.forwarding"


def test_sysctl_order_precedence_and_masking(fake_root: SysRoot) -> None:
    r = fake_root.root
    _w(r, "usr/lib/sysctl.d/10-base.conf", "vm.swappiness = 30\n")
    _w(r, "usr/lib/sysctl.d/50-hidden.conf", "vm.swappiness = 99\n")  # hidden by /etc's 50-hidden.conf
    _w(r, "etc/sysctl.d/50-hidden.conf", "vm.swappiness = 40\n")
    _w(r, "run/sysctl.d/60-run.conf", "vm/swappiness=50\n")
    _w(r, "lib/sysctl.d/70-masked.conf", "vm.swappiness = 1\n")
    os.symlink("/dev/null", r / "etc/sysctl.d/70-masked.conf")
    _w(r, "etc/sysctl.conf", "vm.swappiness=70 # last\n")
    _w(r, "etc/sysctl.d/80-glob.conf", "vm.*ness = 45\n")
    knob = Catalog(fake_root).get("vm.swappiness")
    found = ConflictFinder(r).for_knob(knob)
    assert [(c.source, c.value) for c in found] == [
        ("/usr/lib/sysctl.d/10-base.conf", "30"),
        ("/etc/sysctl.d/50-hidden.conf", "40"),
        ("/run/sysctl.d/60-run.conf", "50"),
        ("/etc/sysctl.d/80-glob.conf", "45"),
        ("/etc/sysctl.conf", "70 # last"),
    ]
    assert found[0].describe() == "/usr/lib/sysctl.d/10-base.conf:1 sets vm.swappiness = 30"
    assert ConflictFinder(r).for_knob(Catalog(fake_root).get("vm.dirty_ratio")) == []


def test_sysctl_conf_linked_from_sysctl_d_counted_once(fake_root: SysRoot) -> None:
    r = fake_root.root
    _w(r, "etc/sysctl.conf", "vm.swappiness=70\n")
    (r / "etc/sysctl.d").mkdir(parents=True)
    os.symlink("../sysctl.conf", r / "etc/sysctl.d/99-sysctl.conf")
    found = ConflictFinder(r).for_knob(Catalog(fake_root).get("vm.swappiness"))
    assert [c.source for c in found] == ["/etc/sysctl.d/99-sysctl.conf"]


def test_tuned_active_profile_with_include(fake_root: SysRoot) -> None:
    r = fake_root.root
    _w(r, "etc/tuned/active_profile", "mine\n")
    _w(r, "etc/tuned/mine/tuned.conf", "[main]\ninclude=throughput-performance\n[sysctl]\nvm.swappiness=5\n")
    _w(r, "usr/lib/tuned/throughput-performance/tuned.conf",
       "[main]\nsummary=x\n[vm]\ntransparent_hugepages=always\n[disk]\nreadahead=>4096\nelevator=mq-deadline\n"
       "devices=vda\n[sysctl]\nvm.dirty_ratio = 40\n")
    cat = Catalog(fake_root)
    finder = ConflictFinder(r)
    sw = finder.for_knob(cat.get("vm.swappiness"))
    assert [(c.owner, c.source, c.setting, c.value) for c in sw] == [
        ("tuned", "/etc/tuned/mine/tuned.conf", "[sysctl] vm.swappiness", "5")
    ]
    assert [c.value for c in finder.for_knob(cat.get("thp.enabled"))] == ["always"]
    assert [c.value for c in finder.for_knob(cat.get("block.vda.read_ahead_kb"))] == [">4096"]
    assert [c.value for c in finder.for_knob(cat.get("block.vda.scheduler"))] == ["mq-deadline"]
    assert finder.for_knob(cat.get("block.loop0.scheduler")) == []  # devices=vda only
    assert [c.source for c in finder.for_knob(cat.get("vm.dirty_ratio"))] == [
        "/usr/lib/tuned/throughput-performance/tuned.conf"
    ]


def test_unsafe_or_missing_profile_is_ignored(fake_root: SysRoot) -> None:
    r = fake_root.root
    _w(r, "etc/tuned/active_profile", "../../etc\n")
    assert ConflictFinder(r).active_profiles() == []
    _w(r, "etc/tuned/active_profile", "nosuch\n")
    assert ConflictFinder(r).for_knob(Catalog(fake_root).get("thp.enabled")) == []


def test_no_configuration_no_conflicts(fake_root: SysRoot) -> None:
    assert all(ConflictFinder(fake_root.root).for_knob(k) == [] for k in Catalog(fake_root).knobs())
