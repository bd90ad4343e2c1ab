"""``target: {loop: {size: 256M}}``: a loop device the study makes, owns and tunes.

The study creates a sparse backing file ``novatune-loop-<8 hex>.img`` in its run directory, attaches it
with ``losetup --find --show`` (direct I/O to the file, so the device's own page cache is the only
one in front of the disk) and binds ``block.@target.<leaf>`` to that ``loopN``. The file is journaled
before it is created and again with its device once attached (:meth:`actuators.Journal.record_loop`);
:meth:`LoopTarget.close` detaches it and deletes the file on every way out, and ``novatune recover``
does the same after a kill (:func:`actuators.loopdev.release`: only a device still backed by that file).

The fio workload runs on the device itself when it names no ``filename``; no other workload can use
the target (a :class:`~experiments.spec.SpecError` says so).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator

from actuators.block import BLOCK_LEAVES, TARGET
from actuators.journal import Journal
from actuators.loopdev import attach, release

if TYPE_CHECKING:
    from experiments.spec import StudySpec

__all__ = ["LOOP_MAX", "LOOP_MIN", "LoopSpec", "LoopTarget", "loop_problems", "size_bytes"]

LOOP_MIN = 16 << 20
LOOP_MAX = 4 << 30
#: the workload kinds that can use a loop target (fio runs on the device)
LOOP_WORKLOADS = ("fio",)
_SIZE = re.compile(r"([0-9]{1,13})([KMG]?)(?:i?B)?", re.IGNORECASE)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_PREFIX = f"block.{TARGET}."


def size_bytes(text: Any) -> int:
    """``"256M"`` / ``"1G"`` / ``"64MiB"`` / a byte count -> bytes.

    Raises:
        ValueError: not a size.
    """
    m = _SIZE.fullmatch(str(text).strip()) if isinstance(text, (str, int)) and not isinstance(text, bool) else None
    if m is None:
        raise ValueError(f"size must be like '256M' or '1G', got {text!r}")
    return int(m.group(1)) * _MULT[m.group(2).lower()]


class LoopSpec(BaseModel):
    """A loop device of ``size`` (16M..4G) backed by a sparse file in the study's run directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: str = "256M"

    @field_validator("size", mode="before")
    @classmethod
    def _bounded(cls, v: Any) -> str:
        n = size_bytes(v)
        if not LOOP_MIN <= n <= LOOP_MAX:
            raise ValueError(f"size must be between 16M and 4G, got {v!r}")
        return str(v)

    @property
    def bytes(self) -> int:
        return size_bytes(self.size)


def target_knobs(spec: StudySpec) -> list[str]:
    """The spec's ``block.@target.*`` knobs."""
    return [k for k in spec.knobs if k.startswith(_PREFIX)]


def loop_problems(spec: StudySpec, data_dir: Path) -> list[str]:
    """What is wrong with the spec's loop target (or with ``block.@target.*`` knobs without one); empty if
    nothing. ``data_dir`` is where the backing file goes: its file system must have the room."""
    loop = spec.target.loop if spec.target is not None else None
    out: list[str] = []
    leaves = ", ".join(f"{_PREFIX}{leaf}" for leaf in BLOCK_LEAVES)
    if loop is None:
        if spec.target is None or spec.target.disk is None:
            out += [f"knobs.{k}: acts on the study's block target; it needs a `target: {{loop: {{size: 256M}}}}` "
                    "(a loop device of the study's own) or `target: {disk: {}}` (the disk under fio's file) "
                    "section (allowed without them: block.<dev>.<leaf> of a device of /sys/block)"
                    for k in target_knobs(spec)]
        else:
            out += [f"knobs.{k}: unknown block leaf; allowed: {leaves}"
                    for k in target_knobs(spec) if k[len(_PREFIX):] not in BLOCK_LEAVES]
        return out
    out += [f"knobs.{k}: unknown block leaf; allowed: {leaves}"
            for k in target_knobs(spec) if k[len(_PREFIX):] not in BLOCK_LEAVES]
    w = spec.workload
    if w.kind not in LOOP_WORKLOADS:
        out.append(f"target.loop: the {w.kind} workload cannot use a loop device; allowed with target.loop: "
                   f"workload kind {', '.join(LOOP_WORKLOADS)}")
        return out
    if getattr(w, "filename", None) is not None:
        out.append("workload.filename: with target.loop fio runs on the study's loop device; remove filename")
    fio_text = getattr(w, "size", "0")
    try:
        fio_size = size_bytes(fio_text)
    except ValueError:
        fio_size = 0  # the workload's own check names it
    if fio_size > loop.bytes:
        out.append(f"workload.size: {fio_text} is more than the loop device's {loop.size}; allowed: up to {loop.size}")
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    if loop.bytes > free:
        out.append(f"target.loop.size: {loop.size} does not fit: the file system of {data_dir} has "
                   f"{free >> 20} MiB free")
    return out


class LoopTarget:
    """The study's loop device: :meth:`open` makes it (journaled first), :meth:`close` removes it."""

    def __init__(self, spec: LoopSpec, *, workdir: Path, home: Path, journal: Journal, run_id: str) -> None:
        self.spec = spec
        self.home = home
        self.journal = journal
        self.run_id = run_id
        self.backing = workdir / f"novatune-loop-{secrets.token_hex(4)}.img"
        self.device: str | None = None  # loopN once attached
        self._open = False

    @property
    def path(self) -> str:
        """``/dev/loopN``."""
        assert self.device is not None
        return f"/dev/{self.device}"

    def open(self) -> str:
        """Journal the backing file, create and attach it; returns ``loopN``.

        Raises:
            ActuatorError: the file or the attach failed (what was made is removed again).
        """
        self.backing.parent.mkdir(parents=True, exist_ok=True)
        self.journal.record_loop(self.run_id, self.backing)
        self._open = True
        try:
            self.device = attach(self.backing, self.spec.bytes)
        except BaseException:
            self.close()
            raise
        self.journal.record_loop(self.run_id, self.backing, self.device)
        return self.device

    def close(self) -> None:
        """Detach the device (only while the backing file is still ours) and delete the file; idempotent."""
        if not self._open:
            return
        detached = release(self.backing, self.home)
        self._open = False
        self.journal.release_loop(self.run_id, self.backing, note=f"detached {', '.join(detached) or 'nothing'}")
