"""``target: {disk: {}}``: fio on a file on a real disk, and that disk's queue settings tuned.

fio runs on its file as it does without a target (``<run dir>/work/fio.dat``, or the spec's ``filename``
under a directory the operator allowed); ``block.@target.<leaf>`` bind to the whole disk that holds the
file's file system (``/sys/dev/block/MAJ:MIN``, a partition's parent: ``vda`` for ``/dev/vda1``), found when
the study starts. The disk is the machine's own, so its settings are tuned like any host knob: held for
the whole study (two studies never tune one disk), journaled before each write and put back at the end and
by ``novatune recover``. Nothing is created on the device beyond fio's file.

Refused (exit 2, nothing changed): with ``target.loop`` (one device per study), a workload other than fio,
a file system that is not on a block device of ``/sys/block`` (tmpfs, overlay: nothing to tune).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from experiments.study.target_loop import target_knobs

if TYPE_CHECKING:
    from experiments.spec import StudySpec

__all__ = ["DiskError", "DiskSpec", "disk_of", "disk_problems", "fio_dir"]

#: the workload kinds that can use a disk target (fio runs on a file on it)
DISK_WORKLOADS = ("fio",)


class DiskError(ValueError):
    """The file system of a path is not on a disk of ``/sys/block``."""


class DiskSpec(BaseModel):
    """The disk under fio's file (no options: the file decides which disk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def disk_of(path: str | os.PathLike[str], sys_root: str | os.PathLike[str] = "/") -> str:
    """The name in ``/sys/block`` of the whole disk that holds ``path``'s file system (``path`` or the
    nearest existing directory above it).

    Raises:
        DiskError: a file system without a block device (tmpfs, overlay, a network file system), or one
            whose device is not listed in ``/sys/block``.
    """
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.stat(probe)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    sys_dir = Path(sys_root, "sys")
    if major == 0:
        raise DiskError(f"the file system of {probe} is not on a block device (device {major}:{minor}: tmpfs, "
                        "overlay or a network file system); allowed: a file system on a disk of /sys/block")
    link = sys_dir / "dev" / "block" / f"{major}:{minor}"
    try:
        dev_dir = Path(os.path.realpath(link, strict=True))
    except OSError:
        raise DiskError(f"the file system of {probe} is on device {major}:{minor}, which {link} does not "
                        "list") from None
    if (dev_dir / "partition").exists():  # a partition: its queue is the whole disk's
        dev_dir = dev_dir.parent
    name = dev_dir.name
    if name not in {p.name for p in (sys_dir / "block").iterdir()}:
        raise DiskError(f"the file system of {probe} is on {name!r}, which is not a disk of {sys_dir / 'block'}")
    return name


def fio_dir(spec: StudySpec, work_dir: Path) -> Path:
    """The directory fio's file is in: the spec's ``filename``'s, else ``work_dir`` (the run's)."""
    filename = getattr(spec.workload, "filename", None)
    return Path(filename).parent if filename else work_dir


def disk_problems(spec: StudySpec, runs_dir: Path, sys_root: str | os.PathLike[str] = "/") -> list[str]:
    """What is wrong with the spec's disk target; empty if nothing (or none). ``runs_dir`` holds the run
    directories (fio's file, when the spec names none)."""
    disk = spec.target.disk if spec.target is not None else None
    if disk is None:
        return []
    if spec.target is not None and spec.target.loop is not None:
        return ["target.disk: with target.loop the block.@target.* knobs act on the loop device; use one of them"]
    if spec.workload.kind not in DISK_WORKLOADS:
        return [f"target.disk: the {spec.workload.kind} workload runs on no file; allowed with target.disk: "
                f"workload kind {', '.join(DISK_WORKLOADS)}"]
    out = []
    if not target_knobs(spec):
        out.append("target.disk: no block.@target.* knob to tune on the disk; add one (e.g. "
                   "block.@target.read_ahead_kb)")
    try:
        disk_of(fio_dir(spec, runs_dir), sys_root)
    except (DiskError, OSError) as err:
        out.append(f"target.disk: {err}")
    return out
