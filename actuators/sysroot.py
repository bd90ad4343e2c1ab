"""Where ``/proc`` and ``/sys`` live, and the only code that touches their files.

Tests point a :class:`SysRoot` at a fake tree; production uses ``/``. Every
path is given *relative* to the root (``"proc/sys/vm/swappiness"``) and is
refused when it contains ``..``, NUL, or resolves (through symlinks) outside
the root. Writes never create files and put the exact string in one
``write()`` call, as sysfs and procfs need.
"""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

from actuators.errors import ActuatorError, UnsafePath

__all__ = ["RESTORABLE_PREFIXES", "SysRoot", "bracketed", "selector_value"]

#: Trees under the root that a journal entry may point into (for ``recover``).
RESTORABLE_PREFIXES: tuple[str, ...] = (
    "proc/sys/", "proc/irq/", "sys/kernel/mm/", "sys/block/", "sys/fs/cgroup/", "sys/devices/system/cpu/",
)

_BRACKET = re.compile(r"\[([^\[\]\s]+)\]")


def bracketed(raw: str) -> str | None:
    """The ``[selected]`` word of a kernel selector file (``none [mq-deadline] kyber``), or None."""
    m = _BRACKET.search(raw)
    return m.group(1) if m else None


def selector_value(raw: str) -> str:
    """Current value of a selector file: the bracketed word, else the single bare word.

    Raises:
        ActuatorError: the content is neither form.
    """
    word = bracketed(raw)
    if word is not None:
        return word
    parts = raw.split()
    if len(parts) == 1:
        return parts[0]
    raise ActuatorError(f"cannot tell the selected value in {raw!r}")


class SysRoot:
    """A root directory holding ``proc/`` and ``sys/`` (``/`` on a real host).

    Args:
        root: the directory; ``"/"`` by default.
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(os.path.realpath(os.fspath(root)))

    def __repr__(self) -> str:
        return f"SysRoot({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SysRoot) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def is_host(self) -> bool:
        """True when this is the real machine's root ``/``."""
        return self.root == Path("/")

    # ------------------------------------------------------------------ paths
    def path(self, rel: str) -> Path:
        """Absolute path of ``rel`` under the root.

        Raises:
            UnsafePath: NUL, a ``..`` component, an empty path, or a path that
                resolves outside the root.
        """
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise UnsafePath(f"refused path {rel!r}")
        parts = rel.strip("/").split("/")
        if any(p in ("..", ".") for p in parts) or not rel.strip("/"):
            raise UnsafePath(f"refused path {rel!r}: relative components")
        full = self.root.joinpath(*parts)
        real = Path(os.path.realpath(full))
        if real != self.root and self.root not in real.parents:
            raise UnsafePath(f"refused path {rel!r}: resolves to {real}, outside {self.root}")
        return full

    def rel(self, path: str | os.PathLike[str]) -> str:
        """``path`` (absolute, under the root) as a root-relative string.

        Raises:
            UnsafePath: the path is not under the root.
        """
        p = Path(os.path.abspath(os.fspath(path)))
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            raise UnsafePath(f"{p} is not under {self.root}") from None
        self.path(str(rel))
        return str(rel)

    # -------------------------------------------------------------- file I/O
    def exists(self, rel: str) -> bool:
        """True when ``rel`` is an existing regular file (or sysfs attribute)."""
        return self.path(rel).is_file()

    def writable(self, rel: str) -> bool:
        """``os.access(W_OK)`` on the file."""
        return os.access(self.path(rel), os.W_OK)

    def listdir(self, rel: str) -> list[str]:
        """Sorted entries of a directory, ``[]`` if it does not exist."""
        try:
            return sorted(os.listdir(self.path(rel)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read(self, rel: str) -> str:
        """The whole file, byte-exact (decoded as latin-1 so every byte round-trips).

        Raises:
            ActuatorError: the file cannot be read.
        """
        p = self.path(rel)
        try:
            with open(p, "rb") as f:
                return f.read().decode("latin-1")
        except OSError as err:
            raise ActuatorError(f"cannot read {p}: {err.strerror or err}") from err

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
