"""target.disk's device lookup: the whole disk of /sys/block under a path's file system, a partition's parent,
and a clear refusal for a file system without a block device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments.study.target_disk import DiskError, disk_of


def _fake_sys(root: Path, of: Path, *, partition: bool) -> None:
    """A /sys tree under ``root`` whose dev/block entry for ``of``'s device is ``disk0`` (or its partition)."""
    st = os.stat(of)
    devices = root / "sys" / "devices" / "virtual" / "block" / "disk0"
    node = devices / "disk0p1" if partition else devices
    node.mkdir(parents=True)
    if partition:
        (node / "partition").write_text("1\n")
    (root / "sys" / "block").mkdir(parents=True)
    (root / "sys" / "block" / "disk0").symlink_to(devices)
    (root / "sys" / "dev" / "block").mkdir(parents=True)
    (root / "sys" / "dev" / "block" / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}").symlink_to(node)


def _on_a_block_device(path: Path) -> bool:
    return os.major(os.stat(path).st_dev) != 0


@pytest.mark.parametrize("partition", [False, True])
def test_the_whole_disk_is_named_also_for_a_partition(tmp_path: Path, partition: bool) -> None:
    if not _on_a_block_device(tmp_path):
        pytest.skip(f"{tmp_path} is not on a block device here (tmpfs)")
    _fake_sys(tmp_path / "root", tmp_path, partition=partition)
    assert disk_of(tmp_path / "not" / "made" / "yet", tmp_path / "root") == "disk0"


def test_the_real_root_file_system_is_on_a_disk_of_sys_block() -> None:
    if not _on_a_block_device(Path("/")):
        pytest.skip("/ is not on a block device here (a container's overlay)")
    assert disk_of("/") in os.listdir("/sys/block")


def test_a_device_missing_from_sys_block_is_refused(tmp_path: Path) -> None:
    if not _on_a_block_device(tmp_path):
        pytest.skip(f"{tmp_path} is not on a block device here (tmpfs)")
    _fake_sys(tmp_path / "root", tmp_path, partition=False)
    (tmp_path / "root" / "sys" / "block" / "disk0").unlink()
    with pytest.raises(DiskError, match="'disk0', which is not a disk of"):
        disk_of(tmp_path, tmp_path / "root")


def test_a_file_system_without_a_block_device_is_refused_with_what_is_allowed() -> None:
    with pytest.raises(DiskError, match=r"/dev/shm is not on a block device .*allowed: a file system on a disk"):
        disk_of("/dev/shm")
