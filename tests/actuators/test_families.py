"""Family-specific rules on the fake tree: triplets, IRQ CPU sets, bounds from MemTotal, netns, cpufreq."""

from __future__ import annotations

import shutil
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actuators import Catalog, KnobContext, KnobUnavailable, OutOfBounds, SysRoot
from collectors.kernelfiles import format_cpu_list, parse_cpu_list
from tests.actuators.conftest import tree_bytes

_HS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_catalog_offers_families_with_full_metadata(fake_root: SysRoot) -> None:
    knobs = Catalog(fake_root).knobs()
    families = Counter(k.family for k in knobs)
    assert len(knobs) >= 30 and len(families) >= 8, families
    for k in knobs:
        assert k.scope in ("host", "device", "netns", "cgroup", "process", "vm")
        assert k.risk in ("low", "medium", "high")
        assert k.reboot is False and isinstance(k.needs_root, bool)
        assert k.domain.kind in ("int", "float", "categorical")
        if k.family in ("vm", "kernel", "net"):
            assert k.sysctl_key == k.name
        else:
            assert k.sysctl_key is None
        reason = k.available()
        assert reason is None or (isinstance(reason, str) and reason)
    scopes = {k.name: k.scope for k in knobs}
    assert scopes["net.core.somaxconn"] == "netns" and scopes["net.core.busy_poll"] == "host"


def test_min_free_kbytes_bounds_follow_memtotal(fake_root: SysRoot) -> None:
    d = Catalog(fake_root).get("vm.min_free_kbytes").domain
    assert (d.low, d.high) == (19873 // 2, 24684096 * 5 // 100)
    (fake_root.root / "proc/meminfo").write_text("MemFree: 1 kB\n")
    knob = Catalog(fake_root).get("vm.min_free_kbytes")
    assert "MemTotal" in (knob.available() or "")
    with pytest.raises(KnobUnavailable):
        knob.apply(90112)


@st.composite
def _bad_triplet(draw: Any) -> tuple[int, int, int]:
    elements = ((4096, 1 << 20), (4096, 64 << 20), (4096, 256 << 20))
    vals = [draw(st.integers(lo, hi)) for lo, hi in elements]
    vals.sort()
    i = draw(st.integers(0, 2))
    lo, hi = elements[i]
    vals[i] = draw(st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1)))
    return (vals[0], vals[1], vals[2])


@pytest.mark.parametrize("name", ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"])
def test_triplet_elements_bounded_and_ordered(fake_root: SysRoot, name: str) -> None:
    knob = Catalog(fake_root).get(name)
    before = tree_bytes(fake_root.root)

    @_HS
    @given(value=_bad_triplet(), as_text=st.booleans())
    def out_of_bounds(value: tuple[int, int, int], as_text: bool) -> None:
        with pytest.raises(OutOfBounds, match=name):
            knob.apply(" ".join(map(str, value)) if as_text else list(value))
        assert tree_bytes(fake_root.root) == before

    @_HS
    @given(value=st.lists(st.integers(4096, 1 << 20), min_size=3, max_size=3, unique=True))
    def unordered(value: list[int]) -> None:
        bad = sorted(value, reverse=True)
        with pytest.raises(OutOfBounds, match="ordered"):
            knob.apply(bad)
        assert tree_bytes(fake_root.root) == before

    out_of_bounds()
    unordered()
    for bad in ("1 2", (1, 2, 3, 4), ("a", "b", "c"), (4096.5, 8192, 8192), (True, 8192, 8192)):
        with pytest.raises(OutOfBounds):
            knob.apply(bad)
    assert tree_bytes(fake_root.root) == before
    # one integer sets max, keeping min and lowering default to it
    cur = knob.read()
    assert knob.validate(8192) == (cur[0], min(cur[1], 8192), 8192)


def test_irq_affinity_cpu_sets(fake_root: SysRoot) -> None:
    knob = Catalog(fake_root).get("irq.24.affinity")
    before = tree_bytes(fake_root.root)

    @_HS
    @given(cpus=st.sets(st.integers(0, 4096), min_size=1).filter(lambda s: not s <= {0, 1}))
    def outside(cpus: set[int]) -> None:
        for value in (cpus, format_cpu_list(cpus)):
            with pytest.raises(OutOfBounds, match="irq.24.affinity"):
                knob.apply(value)
        assert tree_bytes(fake_root.root) == before

    outside()
    for bad in ("", set(), "0-", "1-0", "a", "0,,1", [True], "0 1"):
        with pytest.raises(OutOfBounds):
            knob.apply(bad)
    assert tree_bytes(fake_root.root) == before
    assert knob.validate({1, 0}) == "0-1" and parse_cpu_list("0-2,5", strict=True) == (0, 1, 2, 5)
    default = Catalog(fake_root).get("irq.default_affinity")
    assert default.read() == "0-1"
    token = default.apply("1")
    assert (fake_root.root / "proc/irq/default_smp_affinity").read_text() == "2"
    default.restore(token)
    assert tree_bytes(fake_root.root) == before


def test_irq_write_refused_is_an_actuator_error(fake_root: SysRoot) -> None:
    from actuators import ActuatorError

    knob = Catalog(fake_root).get("irq.25.affinity")
    (fake_root.root / "proc/irq/25/smp_affinity_list").chmod(0o444)
    if knob.available() is None:  # running as root: access() says yes; make the write itself fail
        (fake_root.root / "proc/irq/25/smp_affinity_list").unlink()
        (fake_root.root / "proc/irq/25/smp_affinity_list").mkdir()
    with pytest.raises(ActuatorError):
        knob.apply("0")


def test_cpufreq_missing_driver_reason(fake_root: SysRoot) -> None:
    shutil.rmtree(fake_root.root / "sys/devices/system/cpu/cpu0/cpufreq")
    for name in ("cpufreq.governor", "cpufreq.epp"):
        knob = Catalog(fake_root).get(name)
        assert knob.available() == "no cpufreq driver (/sys/devices/system/cpu/cpu0/cpufreq missing)"
        with pytest.raises((KnobUnavailable, OutOfBounds)):
            knob.apply("performance")


def test_cpufreq_writes_every_cpu_and_reports_mixed(fake_root: SysRoot) -> None:
    knob = Catalog(fake_root).get("cpufreq.governor")
    token = knob.apply("performance")
    assert token.kind == "files" and len(token.old) == 2
    for c in (0, 1):
        assert (fake_root.root / f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor").read_text() == "performance"
    (fake_root.root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor").write_text("powersave\n")
    assert knob.read().startswith("mixed:") and not knob.verify("performance")
    knob.restore(token)
    assert knob.read() == "schedutil"


def test_netns_binding_never_touches_the_host(fake_root: SysRoot) -> None:
    before = tree_bytes(fake_root.root)
    cat = Catalog(fake_root, KnobContext(netns="novatune-missing"))
    knob = cat.get("net.core.somaxconn")
    assert "no network namespace" in (knob.available() or "")
    with pytest.raises(KnobUnavailable):
        knob.apply(8192)
    host_wide = cat.get("net.core.busy_poll")
    assert "host-wide" in (host_wide.available() or "")
    with pytest.raises(KnobUnavailable):
        host_wide.apply(50)
    assert tree_bytes(fake_root.root) == before


def test_congestion_choices_are_allowed_plus_current(fake_root: SysRoot) -> None:
    (fake_root.root / "proc/sys/net/ipv4/tcp_congestion_control").write_text("cubic\n")
    knob = Catalog(fake_root).get("net.ipv4.tcp_congestion_control")
    assert knob.domain.choices == ("reno", "bbr", "cubic")
    with pytest.raises(OutOfBounds):
        knob.apply("vegas")


def test_a_triplet_is_the_same_as_its_max_searched_alone(fake_root: SysRoot) -> None:
    """A study searches tcp_rmem by its max: the chosen number and the triplet found before the study are
    compared by their max (the justification step compares them), triplets element by element."""
    knob = Catalog(fake_root).get("net.ipv4.tcp_rmem")
    assert knob.same(33554432, (4096, 131072, 33554432)) and knob.same([4096, 131072, 33554432], 33554432)
    assert not knob.same(16777216, (4096, 131072, 33554432))
    assert knob.same("4096 131072 33554432", (4096, 131072, 33554432))
    assert not knob.same((4096, 87380, 33554432), (4096, 131072, 33554432))
    assert not knob.same(None, 33554432)
