"""Loading configurations, planning them (nothing written) and verifying drift, on a fake tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actuators import Catalog, SysRoot
from actuators.conflicts import ConflictFinder
from experiments.deploy.config_file import ConfigError, load_config
from experiments.deploy.plan import plan
from experiments.deploy.verify import verify
from tests.actuators.conftest import build_fake_tree, tree_bytes


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = build_fake_tree(tmp_path / "root")
    (r / "etc/sysctl.d").mkdir(parents=True)
    (r / "etc/sysctl.d/90-site.conf").write_text("vm.swappiness = 10\n")
    return r


def _cfg(tmp_path: Path, knobs: dict, **extra) -> Path:
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"format": "novatune.config/v1", "study": "s", "knobs": knobs, **extra}))
    return p


def test_plan_config_shows_change_conflict_and_writes_nothing(tmp_path: Path, root: Path) -> None:
    before = tree_bytes(root)
    cfg = load_config(_cfg(tmp_path, {"vm.swappiness": 20, "thp.enabled": "madvise", "vm.dirty_ratio": 500}))
    result = plan(cfg, Catalog(SysRoot(root)), ConflictFinder(root))
    rows = {r.knob: r for r in result.rows}
    sw = rows["vm.swappiness"]
    assert (sw.current, sw.new, sw.changes, sw.risk, sw.reboot, sw.available) == (60, 20, True, "low", False, True)
    assert [c["source"] for c in sw.conflicts] == ["/etc/sysctl.d/90-site.conf"]
    assert sw.conflicts[0]["value"] == "10" and sw.conflicts[0]["differs"] is True
    assert rows["thp.enabled"].changes is False
    bad = rows["vm.dirty_ratio"]
    assert not bad.valid and "500" in bad.error and bad.allowed == "integers in [5, 80]"
    assert result.invalid == ["vm.dirty_ratio"]
    assert tree_bytes(root) == before


def test_plan_spec_shows_ranges(tmp_path: Path, root: Path) -> None:
    p = tmp_path / "spec.yaml"
    p.write_text("name: s\nknobs:\n  vm.swappiness: {low: 0, high: 100}\n  vm.dirty_ratio: {low: 1, high: 90}\n"
                 "objectives: {throughput_rps: maximize}\n")
    cfg = load_config(p)
    assert cfg.kind == "spec"
    rows = {r.knob: r for r in plan(cfg, Catalog(SysRoot(root)), ConflictFinder(root)).rows}
    assert rows["vm.swappiness"].range == {"low": 0.0, "high": 100.0} and rows["vm.swappiness"].current == 60
    assert rows["vm.swappiness"].conflicts and rows["vm.swappiness"].changes is None
    assert not rows["vm.dirty_ratio"].valid and "hard safety bounds [5, 80]" in rows["vm.dirty_ratio"].error


def test_unknown_knob_is_an_invalid_row(tmp_path: Path, root: Path) -> None:
    cfg = load_config(_cfg(tmp_path, {"../../etc/passwd": 1}))
    (row,) = plan(cfg, Catalog(SysRoot(root)), ConflictFinder(root)).rows
    assert not row.valid and "unknown knob" in row.error


def test_verify_drift_then_none_after_apply(tmp_path: Path, root: Path) -> None:
    cfg = load_config(_cfg(tmp_path, {"vm.swappiness": 20, "thp.enabled": "never", "sizing.vcpus": 1.0}))
    cat = Catalog(SysRoot(root))
    v = verify(cfg, cat)
    assert v.drift == ["vm.swappiness", "thp.enabled"]
    rows = {r.knob: r for r in v.rows}
    assert (rows["vm.swappiness"].expected, rows["vm.swappiness"].actual, rows["vm.swappiness"].ok) == (20, 60, False)
    assert rows["sizing.vcpus"].ok is None  # bound to a run's cgroup: not checkable here
    cat.get("vm.swappiness").apply(20)
    cat.get("thp.enabled").apply("never")
    assert verify(cfg, cat).drift == []


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("{", ".json", "not valid JSON"),
        ("- 1\n", ".yaml", "expected a mapping"),
        ('{"format": "other/v9", "knobs": {}}', ".json", "unknown format 'other/v9'"),
        ('{"format": "novatune.config/v1", "knobs": {}}', ".json", "knobs: required"),
        ('{"format": "novatune.config/v1", "knobs": {"vm.swappiness": [1]}}', ".json", "is not a value"),
        ('{"format": "novatune.config/v1", "knobs": {"vm.swappiness": 1}, "x": 1}', ".json", "unknown field"),
        ("name: x\n", ".yaml", "invalid study spec"),
        ("x", ".txt", "unsupported file type"),
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    p = tmp_path / f"c{suffix}"
    p.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_missing_file_and_verify_of_a_spec(tmp_path: Path, root: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.json")
    p = tmp_path / "spec.json"
    p.write_text(json.dumps({"name": "s", "knobs": {"vm.swappiness": {"low": 0, "high": 9}},
                             "objectives": {"throughput_rps": "maximize"}}))
    with pytest.raises(ConfigError, match="not a study spec"):
        verify(load_config(p), Catalog(SysRoot(root)))
    with pytest.raises(ConfigError, match="outside the hard bounds"):
        verify(load_config(_cfg(tmp_path, {"vm.swappiness": 999})), Catalog(SysRoot(root)))
