"""Loop devices a study owns: a backing file in the data directory, attached with ``losetup``.

The backing file is always named :data:`BACKING_NAME` (``novatune-loop-<8 hex>.img``); a loop device
is detached only while ``/sys/block/loopN/loop/backing_file`` still names that file (a loop device
reused by someone else is never touched), and the file is deleted only when it is a regular file of
that name, reached without a symlink. :func:`attach` journals nothing itself: the caller records the
backing file first (:meth:`actuators.journal.Journal.record_loop`), so a kill at any point leaves a
record :func:`release` cleans up from (``novatune recover``).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

from actuators.errors import ActuatorError, UnsafePath

__all__ = ["BACKING_NAME", "LOOP_DEV", "attach", "check_backing", "devices_of", "release"]

#: the only backing-file name novatune makes (and so the only one recover deletes)
BACKING_NAME = re.compile(r"novatune-loop-[0-9a-f]{8}\.img")
#: a loop device name as ``losetup --show`` prints it
LOOP_DEV = re.compile(r"/dev/(loop[0-9]{1,4})")
_TIMEOUT_S = 20
#: how long a release waits for a detached device to go (an open one is detached by the kernel when closed)
_SETTLE_S = 5.0


def _losetup() -> str:
    tool = shutil.which("losetup")
    if tool is None:
        raise ActuatorError("the `losetup` command is missing (util-linux)")
    return tool


def check_backing(path: str | os.PathLike[str], home: str | os.PathLike[str] | None = None) -> Path:
    """``path`` when it may be a novatune backing file: absolute, named :data:`BACKING_NAME`, no symlink
    on the way, and (with ``home``) under that directory.

    Raises:
        UnsafePath: anything else.
    """
    p = Path(os.fspath(path))
    if not p.is_absolute() or BACKING_NAME.fullmatch(p.name) is None:
        raise UnsafePath(f"refused loop backing file {str(p)!r}: not an absolute novatune-loop-XXXXXXXX.img")
    if os.path.realpath(p.parent) != str(p.parent) or p.is_symlink():
        raise UnsafePath(f"refused loop backing file {p}: reached through a symlink")
    if home is not None and not p.is_relative_to(os.path.realpath(home)):
        raise UnsafePath(f"refused loop backing file {p}: not under novatune's data directory {home}")
    return p


def _backing_of(name: str) -> str | None:
    """What ``/sys/block/<name>/loop/backing_file`` says (None: not attached / no such device)."""
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip() or None
    except OSError:
        return None


def devices_of(backing: Path) -> list[str]:
    """The loop devices (``loopN``) attached to ``backing`` now, from sysfs (no tool needed)."""
    out = []
    for entry in sorted(os.listdir("/sys/block")):
        if entry.startswith("loop") and _backing_of(entry) == str(backing):
            out.append(entry)
    return out


def attach(backing: Path, size: int) -> str:
    """Create ``backing`` as a sparse file of ``size`` bytes and attach it (direct I/O to the file, so a
    trial measures the disk, not the page cache of the backing file). Returns ``loopN``.

    Raises:
        ActuatorError: the file exists already, or losetup failed (the file is left for :func:`release`).
    """
    check_backing(backing)
    try:
        fd = os.open(backing, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise ActuatorError(f"cannot create loop backing file {backing}: {err}") from None
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    cmd = [_losetup(), "--find", "--show", "--direct-io=on", str(backing)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as err:
        raise ActuatorError(f"losetup failed: {err}") from None
    m = LOOP_DEV.fullmatch(done.stdout.strip())
    if done.returncode != 0 or m is None:
        raise ActuatorError(f"losetup could not attach {backing}: {(done.stderr or done.stdout).strip()[:300]}")
    return m.group(1)


def release(backing: str | os.PathLike[str], home: str | os.PathLike[str] | None = None) -> list[str]:
    """Detach every loop device still backed by ``backing`` and delete the file. Returns the detached
    devices. A device still open (a killed run's tool finishing its bounded run) is detached by the kernel
    when its last user closes it (``losetup --detach`` sets autoclear); this waits a few seconds for that.
    Idempotent: nothing attached and no file is not an error.

    Raises:
        UnsafePath: ``backing`` is not a novatune backing file (nothing is touched).
        ActuatorError: a detach or the delete failed.
    """
    p = check_backing(backing, home)
    detached = []
    for name in devices_of(p):
        try:
            done = subprocess.run([_losetup(), "--detach", f"/dev/{name}"], capture_output=True, text=True,
                                  timeout=_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as err:
            raise ActuatorError(f"cannot detach /dev/{name}: {err}") from None
        if done.returncode != 0 and _backing_of(name) == str(p):
            raise ActuatorError(f"cannot detach /dev/{name}: {done.stderr.strip()[:300]}")
        detached.append(name)
    deadline = time.monotonic() + _SETTLE_S  # a device still open (a tool run in flight) detaches when closed
    while detached and devices_of(p) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return detached
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"refused loop backing file {p}: not a regular file")
    try:
        p.unlink()
    except OSError as err:
        raise ActuatorError(f"cannot delete loop backing file {p}: {err}") from None
    return detached
