"""Where ``/proc`` and ``/sys`` live, and the only code that writes their files.

:class:`SysRoot` is the writing side of :class:`collectors.rootfs.RootReader`
(the one safe root-relative reader): it reads exactly as the collectors do and
adds ``write``/``restore``/``rmdir``. Tests point a :class:`SysRoot` at a fake
tree; production uses ``/``. Every path is given *relative* to the root
(``"proc/sys/vm/swappiness"``) and is refused (:class:`UnsafePath`) when it
contains ``..``, NUL, or resolves (through symlinks) outside the root; a file
that cannot be read raises :class:`ActuatorError`. Writes never create files
and put the exact string in one ``write()`` call, as sysfs and procfs need.
"""

from __future__ import annotations

import errno
import os
import time

from actuators.errors import ActuatorError, UnsafePath
from collectors.kernelfiles import bracketed
from collectors.rootfs import RootReader

__all__ = ["RESTORABLE_PREFIXES", "SysRoot"]

#: Trees under the root that a journal entry may point into (for ``recover``).
RESTORABLE_PREFIXES: tuple[str, ...] = (
    "proc/sys/", "proc/irq/", "sys/kernel/mm/", "sys/block/", "sys/fs/cgroup/", "sys/devices/system/cpu/",
)


class SysRoot(RootReader):
    """A root directory holding ``proc/`` and ``sys/`` (``/`` on a real host), read and written.

    Reading (``path``, ``rel``, ``exists``, ``is_dir``, ``listdir``, ``read``,
    ...) is :class:`~collectors.rootfs.RootReader`'s, raising the actuators'
    errors; writing is here.

    Args:
        root: the directory; ``"/"`` by default.
    """

    unsafe_error = UnsafePath
    read_error = ActuatorError

    def writable(self, rel: str) -> bool:
        """``os.access(W_OK)`` on the file."""
        return os.access(self.path(rel), os.W_OK)

    def write(self, rel: str, data: str) -> None:
        """Write ``data`` exactly, in one ``write()``; never creates the file.

        Raises:
            ActuatorError: the file is missing or the kernel refused the value.
        """
        p = self.path(rel)
        payload = data.encode("latin-1")
        try:
            fd = os.open(p, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as err:
            raise ActuatorError(f"cannot open {p} for writing: {err.strerror or err}") from err
        try:
            done = os.write(fd, payload)
            while done < len(payload):  # regular files only; sysfs takes it in one go
                done += os.write(fd, payload[done:])
        except OSError as err:
            raise ActuatorError(f"writing {data!r} to {p} failed: {err.strerror or err}") from err
        finally:
            os.close(fd)

    def restore(self, rel: str, raw: str) -> None:
        """Put back the content ``raw`` that was read from ``rel`` before a change.

        Kernel selector files (``[mq-deadline]``, ``[madvise]``) only accept the
        bare word, so that is written first; if the file then holds no
        selection (a plain file, as in a fake tree) the exact bytes are written.
        Afterwards the file must read back as ``raw`` (or with the same
        selection).

        Raises:
            ActuatorError: the write failed or the read-back differs.
            UnsafePath: see :meth:`path`.
        """
        word = bracketed(raw)
        if word is None:
            self.write(rel, raw)
        else:
            self.write(rel, word)
            if bracketed(self.read(rel)) is None:
                self.write(rel, raw)
        now = self.read(rel)
        if now != raw and (word is None or bracketed(now) != word):
            raise ActuatorError(f"{self.path(rel)} reads {now!r} after restore, expected {raw!r}")

    def rmdir(self, rel: str, *, busy_timeout_s: float = 5.0) -> None:
        """Remove a (cgroup) directory.

        On a real cgroupfs the control files vanish with the directory; right
        after its tasks are killed the kernel may still hold the cgroup
        (EBUSY), so that is retried for up to ``busy_timeout_s``. On a fake
        tree (root other than ``/``) the control files are plain files, which
        are removed first so the fake behaves like the kernel.

        Raises:
            ActuatorError: the directory could not be removed.
        """
        p = self.path(rel)
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                os.rmdir(p)
                return
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        try:
            os.rmdir(p)
        except OSError as err:
            if err.errno != errno.ENOTEMPTY or self.is_host:
                raise ActuatorError(f"cannot remove {p}: {err.strerror or err}") from err
            try:
                for entry in os.scandir(p):
                    if entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                os.rmdir(p)
            except OSError as err2:
                raise ActuatorError(f"cannot remove {p}: {err2.strerror or err2}") from err2
