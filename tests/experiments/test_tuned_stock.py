"""Stock TuneD profiles as knob values: includes merged, conditions, "at least" values, what is skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments.deploy.tuned_stock import STOCK_PROFILES, TunedProfileError, resolve_profile


def _profile(root: Path, name: str, text: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "tuned.conf").write_text(text)


def test_includes_merge_and_the_including_profile_wins(tmp_path: Path) -> None:
    _profile(tmp_path, "base", "[main]\nsummary=b\n[sysctl]\nvm.swappiness=10\nvm.dirty_ratio=40\n"
                               "[disk]\nreadahead=>4096\n[vm]\ntransparent_hugepages=always\n")
    _profile(tmp_path, "child", "[main]\ninclude=base\n[sysctl]\nvm.dirty_ratio = 30\n"
                                "net.core.somaxconn=>2048\n")
    current = {"net.core.somaxconn": 4096, "block.loop9.read_ahead_kb": 128}
    got = resolve_profile("child", dirs=[tmp_path], devices=["loop9"], current=current.get)
    assert got.chain == ["base", "child"]
    assert got.values == {"vm.swappiness": 10, "vm.dirty_ratio": 30, "block.loop9.read_ahead_kb": 4096,
                          "thp.enabled": "always", "net.core.somaxconn": 4096}  # ">2048" never lowers 4096


def test_conditions_variables_functions_and_unknown_options_are_skipped_with_reasons(tmp_path: Path) -> None:
    _profile(tmp_path, "p", "[variables]\narch=no-such-arch-.*\n[sysctl.other]\ntype=sysctl\nuname_regex=${arch}\n"
                            "vm.swappiness=1\n[sysctl]\nvm.dirty_ratio=${f:exec:/bin/true}\nfs.no_such=1\n"
                            "[disk]\nreadahead=4096\n[bootloader]\ncmdline=x\n")
    got = resolve_profile("p", dirs=[tmp_path])
    assert got.values == {}
    assert "[sysctl.other]: not for this machine (uname_regex/cpuinfo_regex)" in got.skipped
    assert "[sysctl] vm.dirty_ratio: a TuneD function or unknown variable" in got.skipped
    assert "[sysctl] fs.no_such: no novatune knob" in got.skipped
    assert "[disk] readahead: no block device given" in got.skipped
    assert "[bootloader] cmdline: novatune does not tune the bootloader plugin" in got.skipped


def test_bad_names_unknown_profiles_and_include_loops_are_refused(tmp_path: Path) -> None:
    _profile(tmp_path, "a", "[main]\ninclude=b\n")
    _profile(tmp_path, "b", "[main]\ninclude=a\n")
    with pytest.raises(TunedProfileError, match="include loop"):
        resolve_profile("a", dirs=[tmp_path])
    with pytest.raises(TunedProfileError, match="not a TuneD profile name"):
        resolve_profile("../etc", dirs=[tmp_path])
    with pytest.raises(TunedProfileError, match="no TuneD profile 'nope' in"):
        resolve_profile("nope", dirs=[tmp_path])
    _profile(tmp_path, "broken", "no section header\n")
    with pytest.raises(TunedProfileError, match="not a TuneD profile"):
        resolve_profile("broken", dirs=[tmp_path])


def test_the_stock_profiles_of_the_tuned_package() -> None:
    root = os.environ.get("TUNED_ROOT")
    if not root:
        pytest.skip("no TuneD: set TUNED_ROOT (.ci/run unpacks Debian's tuned package there)")
    dirs = [Path(root) / "usr/lib/tuned"]
    got = {p: resolve_profile(p, dirs=dirs, devices=["loop9"]) for p in STOCK_PROFILES}
    assert got["virtual-guest"].chain == ["throughput-performance", "virtual-guest"]
    assert got["virtual-guest"].values["vm.dirty_ratio"] == 30 and got["virtual-guest"].values["vm.swappiness"] == 30
    assert got["throughput-performance"].values["block.loop9.read_ahead_kb"] == 4096
    assert got["network-latency"].values["thp.enabled"] == "never"
    assert got["network-latency"].values["net.core.busy_poll"] == 50
    assert got["network-throughput"].values["net.ipv4.tcp_rmem"] == [4096, 87380, 16777216]
    assert all(p.values or p.skipped for p in got.values())
