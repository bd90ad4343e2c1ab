"""The registry of knob families: its declarations are consistent, and every consumer reads them from there."""

from __future__ import annotations

import pytest

from actuators import ActuatorError, Catalog, SysRoot
from actuators.family import Condition, Env, Family, KnobContext, KnobExport, Ordering
from actuators.registry import FAMILIES, REGISTRY, Registry


def test_the_registry_check_passes() -> None:
    assert REGISTRY.problems() == []
    REGISTRY.check()


def test_every_catalog_pattern_belongs_to_one_family(fake_root: SysRoot) -> None:
    cat = Catalog(fake_root)
    assert cat.patterns() == REGISTRY.patterns()
    for f in FAMILIES:
        for p in f.patterns:
            name = f.example(p)
            assert REGISTRY.family_of(name) is f and REGISTRY.match(name).pattern == p
    for knob in cat.knobs():
        m = REGISTRY.match(knob.name)
        assert m is not None and REGISTRY.family_of(knob.name) is m.family, knob.name


def test_relations_and_apply_order_come_from_the_families() -> None:
    from experiments.study.resolve import CONDITIONS, ORDERINGS

    assert [(o.lower, o.upper) for o in ORDERINGS] == [("vm.dirty_background_ratio", "vm.dirty_ratio")]
    assert {c.param: (c.parent, c.values) for c in CONDITIONS} == {
        "thp.defrag": ("thp.enabled", ("always", "madvise")),
        "cpufreq.epp": ("cpufreq.governor", ("powersave",)),
        "ioprio.level": ("ioprio.class", ("best-effort",)),
    }
    assert REGISTRY.rank("affinity.placement") > REGISTRY.rank("affinity.cpus")
    ranks = [REGISTRY.rank(f"block.vda.{leaf}") for leaf in ("scheduler", "read_ahead_kb", "nr_requests")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 3  # a new scheduler resets nr_requests
    assert REGISTRY.rank("vm.swappiness") == 0 and REGISTRY.rank("no.such.knob") == 0


def test_export_mappings_are_declared_by_the_families() -> None:
    def export(name: str) -> KnobExport:
        m = REGISTRY.match(name)
        assert m is not None and m.export is not None, name
        return m.export

    assert export("vm.swappiness").file == "/proc/sys/vm/swappiness" and export("vm.swappiness").sysctl
    assert export("block.vdb.nr_requests").file == "/sys/block/{dev}/queue/nr_requests"
    assert export("block.vdb.scheduler").tuned.option == "elevator"
    assert export("nic.eth0.rx_ring").tuned == export("nic.eth1.rx_ring").tuned
    assert export("sizing.vcpus").systemd.option == "CPUQuota"
    assert REGISTRY.workload_bound("sched.nice") and not REGISTRY.workload_bound("vm.swappiness")
    assert REGISTRY.match("block.../scheduler") is None and REGISTRY.match("irq.x.affinity") is None


class _Broken(Family):
    name = "broken"
    patterns = ("broken.a", "vm.swappiness", "broken.<dev>.b")
    prefix = "broken."
    fields = {"dev": "[a-z0-9]+"}
    orderings = (Ordering("broken.a", "broken.nothing"),)
    conditions = (Condition("broken.a", "nope.x", ("1",)),)
    apply_order = {"broken.zzz": 1}
    restore_kinds = ("teleport",)
    exports = {"broken.c": KnobExport(), "broken.<dev>.b": KnobExport(file="/etc/{dev}/b")}


def test_the_check_names_every_inconsistency() -> None:
    problems = "\n".join(Registry((*FAMILIES, _Broken())).problems())
    for part in ("'vm.swappiness' (pattern 'vm.swappiness') is also claimed by broken",
                 "'broken.nothing' is no family's knob", "'nope.x' is no family's knob",
                 "apply_order names 'broken.zzz'", "no restorer knows that kind", "export mapping for 'broken.c'",
                 "outside what recover restores"):
        assert part in problems, part
    with pytest.raises(ActuatorError, match="inconsistent knob families"):
        Registry((_Broken(),)).check()


def test_a_family_resolves_through_the_catalog(fake_root: SysRoot) -> None:
    knob = REGISTRY.family_of("block.vda.scheduler").resolve("block.vda.scheduler", Env(fake_root, KnobContext()))
    assert knob.name == "block.vda.scheduler" and knob.read() == "mq-deadline"
