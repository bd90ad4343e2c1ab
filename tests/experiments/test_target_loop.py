"""``target: {loop: ...}`` and ``block.@target.*``: bad input is a SpecError naming what is allowed, before
anything is made; the catalog binds ``@target`` to the run's loop device only; recover never deletes a file
that is not a novatune backing file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from actuators import Catalog, KnobContext, UnknownKnob
from actuators.errors import UnsafePath
from actuators.journal import Journal
from actuators.loopdev import check_backing
from actuators.recover import recover
from experiments.settings import Paths, Settings
from experiments.spec import SpecError, parse_spec
from experiments.study.prepare import prepare
from experiments.study.target_loop import loop_problems

BASE: dict[str, Any] = {
    "name": "loop-bad",
    "workload": {"kind": "fio", "rw": "randread", "size": "16M"},
    "target": {"loop": {"size": "64M"}},
    "knobs": {"block.@target.read_ahead_kb": {"low": 0, "high": 1024}},
    "objectives": {"throughput": "maximize"},
}


def _loops() -> set[str]:
    return {d for d in os.listdir("/sys/block") if d.startswith("loop")
            and Path(f"/sys/block/{d}/loop/backing_file").exists()}


def _problems(tmp_path: Path, **changes: Any) -> list[str]:
    spec = {**BASE, **changes}
    spec = {k: v for k, v in spec.items() if v is not None}
    before = _loops()
    with pytest.raises(SpecError) as err:
        prepare(parse_spec(spec), paths=Paths(tmp_path / "home"), settings=Settings())
    assert _loops() == before  # nothing attached
    assert not (tmp_path / "home" / "runs").exists() or not list((tmp_path / "home" / "runs").rglob("*.img"))
    return err.value.problems


def test_target_knob_without_a_loop_target_names_what_is_allowed(tmp_path: Path) -> None:
    problems = _problems(tmp_path, target=None)
    assert len(problems) == 1
    assert "knobs.block.@target.read_ahead_kb" in problems[0]
    assert "target: {loop:" in problems[0] and "block.<dev>.<leaf>" in problems[0]


def test_loop_target_with_a_workload_that_cannot_use_it(tmp_path: Path) -> None:
    problems = _problems(tmp_path, workload={"kind": "stress-ng"})
    assert any("the stress-ng workload cannot use a loop device" in p and "fio" in p for p in problems), problems


def test_fio_filename_or_size_beyond_the_device_is_refused(tmp_path: Path) -> None:
    problems = _problems(tmp_path, workload={"kind": "fio", "filename": "x.dat", "size": "128M"})
    assert any(p.startswith("workload.filename:") for p in problems), problems
    assert any(p.startswith("workload.size:") and "up to 64M" in p for p in problems), problems


def test_unknown_leaf_of_the_target(tmp_path: Path) -> None:
    problems = _problems(tmp_path, knobs={"block.@target.queue_depth": {"low": 1, "high": 2}})
    assert any("unknown block leaf" in p and "block.@target.nr_requests" in p for p in problems), problems


@pytest.mark.parametrize("size", ["8M", "5G", "lots", "-1M"])
def test_loop_size_bounds(size: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, "target": {"loop": {"size": size}}})
    assert any(p.startswith("target.loop.size:") for p in err.value.problems), err.value.problems


def test_unknown_target_field_lists_the_allowed() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, "target": {"loop": {"size": "64M", "file": "/etc/passwd"}}})
    assert err.value.problems == ["target.loop.file: unknown field; allowed here: size"]


def test_a_loop_larger_than_the_free_space_is_refused(tmp_path: Path) -> None:
    spec = parse_spec({**BASE, "target": {"loop": {"size": "4G"}}})
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    problems = loop_problems(spec, tmp_path / "home" / "runs")
    assert any("does not fit" in p for p in problems) == (free < 4 << 30), problems


def test_catalog_binds_target_only_to_a_device_of_sys_block() -> None:
    knob = Catalog().get("block.@target.scheduler")  # not bound: a stand-in that is never available
    assert knob.available() is not None
    assert "mq-deadline" in knob.domain.choices
    with pytest.raises(UnknownKnob, match="'nodisk0' is not a device of /sys/block"):
        Catalog(context=KnobContext(block_target="nodisk0")).get("block.@target.read_ahead_kb")
    dev = sorted(os.listdir("/sys/block"))[0]  # a loop device or the disk under fio's file (target.disk)
    bound = Catalog(context=KnobContext(block_target=dev)).get("block.@target.read_ahead_kb")
    assert bound.name == f"block.{dev}.read_ahead_kb"


@pytest.mark.parametrize("bad", ["/etc/passwd", "relative/novatune-loop-0011aabb.img", "/tmp/novatune-loop-xyz.img"])
def test_backing_file_names_recover_accepts(bad: str) -> None:
    with pytest.raises(UnsafePath):
        check_backing(bad)


def test_recover_refuses_a_journaled_loop_file_outside_the_data_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    outside = tmp_path / "novatune-loop-0011aabb.img"
    outside.write_bytes(b"x")
    journal = Journal(home / "journal.jsonl")
    journal.record_loop("r1", outside)  # written by this (live) process: recover needs force
    report = recover(journal, force=True)
    assert outside.exists()
    assert any("not under novatune's data directory" in r for r in report.refused), report.refused
    assert recover(journal, force=True).refused == []  # closed: refused once


@pytest.mark.parametrize("device", ["/dev/vda", "/dev/loop0/../vda", "/dev/loop-control", "loop0", "/tmp/x"])
def test_fio_takes_only_a_loop_device_from_the_study(tmp_path: Path, device: str) -> None:
    from collectors.workloads.tools.adapter import AdapterError
    from collectors.workloads.tools.fio import FioWorkload

    w = FioWorkload(tmp_path / "work")
    with pytest.raises(AdapterError, match="only a /dev/loopN"):
        w.use_device(device)


def test_fio_device_file_must_be_a_loop_block_device() -> None:
    from collectors.workloads.tools.adapter import AdapterError
    from collectors.workloads.tools.fio import LoopDeviceFile

    with pytest.raises(AdapterError, match="not a loop block device"):
        LoopDeviceFile.open("/dev/null")  # a character device: refused, and its descriptor closed


def test_two_studies_on_their_own_loop_devices_do_not_claim_the_same_knob() -> None:
    from experiments.study.manager import host_wide

    knobs = [Catalog().get("block.@target.nr_requests"), Catalog().get("vm.dirty_ratio")]
    assert host_wide(knobs) == ["vm.dirty_ratio"]
