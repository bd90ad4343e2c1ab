"""The safe root-relative reader: the one piece of code that opens files under ``/proc`` and ``/sys``.

Every collector (topology, metrics, cgroup counters) and, through
:class:`actuators.SysRoot` (its writing side), every actuator reads kernel
files through a :class:`RootReader`. Tests point one at a fake or recorded
tree; production uses ``/``.

Path safety: every path is given *relative* to the root
(``"proc/sys/vm/swappiness"``) and is refused when it is empty, contains NUL,
has a ``.`` or ``..`` component, or resolves (through symlinks) outside the
root. The reader never writes.

Errors: a refused path raises :attr:`RootReader.unsafe_error`, a file that
cannot be read (:meth:`RootReader.read`) :attr:`RootReader.read_error`; both
are :class:`~collectors.errors.CollectorError` here, and the writing side
(:class:`actuators.SysRoot`) swaps in the actuators' own errors so its callers
keep catching ``ActuatorError`` / ``UnsafePath``. The low-level
:meth:`RootReader.read_bytes` and :meth:`RootReader.listdir` with ``strict``
raise the ``OSError`` itself, for collectors that report ``strerror`` as a gap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from collectors.errors import CollectorError

__all__ = ["RootReader"]

_CHUNK = 1 << 16
_SLASH = Path("/")


class RootReader:
    """A root directory holding ``proc/`` and ``sys/`` (``/`` on a real host), read-only.

    Args:
        root: the directory; ``"/"`` by default (resolved once, through symlinks).
    """

    #: raised by :meth:`path` (and everything built on it) for a refused path
    unsafe_error: ClassVar[type[Exception]] = CollectorError
    #: raised by :meth:`read` for a file that cannot be read
    read_error: ClassVar[type[Exception]] = CollectorError

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(os.path.realpath(os.fspath(root)))
        self._root_text = str(self.root)
        self._prefix = self._root_text.rstrip("/") + "/"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __fspath__(self) -> str:
        return str(self.root)

    @property
    def is_host(self) -> bool:
        """True when this is the real machine's root ``/``."""
        return self.root == _SLASH

    # ------------------------------------------------------------------ paths
    def path(self, rel: str) -> Path:
        """Absolute path of ``rel`` under the root.

        Raises:
            unsafe_error: NUL, a ``.`` or ``..`` component, an empty path, or a
                path that resolves outside the root.
        """
        return Path(self._checked(rel))

    def _checked(self, rel: str) -> str:
        """:meth:`path` as a string (what the readers open: no ``Path`` objects on the sampling path)."""
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise self.unsafe_error(f"refused path {rel!r}")
        stripped = rel.strip("/")
        parts = stripped.split("/")
        if any(p in ("..", ".") for p in parts) or not stripped:
            raise self.unsafe_error(f"refused path {rel!r}: relative components")
        full = self._prefix + stripped
        if self.root == _SLASH:  # every absolute path resolves under "/": nothing to check, no lstat per component
            return full
        real = os.path.realpath(full)
        if real != self._root_text and not real.startswith(self._prefix):
            raise self.unsafe_error(f"refused path {rel!r}: resolves to {real}, outside {self.root}")
        return full

    def rel(self, path: str | os.PathLike[str]) -> str:
        """``path`` (absolute, under the root) as a root-relative string.

        Raises:
            unsafe_error: the path is not under the root.
        """
        p = Path(os.path.abspath(os.fspath(path)))
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            raise self.unsafe_error(f"{p} is not under {self.root}") from None
        self.path(str(rel))
        return str(rel)

    # ---------------------------------------------------------------- queries
    def exists(self, rel: str) -> bool:
        """True when ``rel`` is an existing regular file (or sysfs attribute).

        Raises:
            unsafe_error: see :meth:`path`.
        """
        return self.path(rel).is_file()

    def is_dir(self, rel: str) -> bool:
        """True when ``rel`` is an existing directory.

        Raises:
            unsafe_error: see :meth:`path`.
        """
        return self.path(rel).is_dir()

    def listdir(self, rel: str, *, strict: bool = False) -> list[str]:
        """Sorted entries of a directory.

        Without ``strict`` a directory that does not exist (or is a file) lists
        as ``[]``; with it, that ``OSError`` is raised too.

        Raises:
            OSError: the directory cannot be listed (``strict``), or cannot be read.
            unsafe_error: see :meth:`path`.
        """
        try:
            return sorted(os.listdir(self._checked(rel)))
        except (FileNotFoundError, NotADirectoryError):
            if strict:
                raise
            return []

    def readlink(self, rel: str) -> str:
        """The text of the symlink ``rel`` (never followed: only its directory must be under the root).

        Raises:
            OSError: not a symlink, or missing.
            unsafe_error: see :meth:`path` (applied to the link's directory).
        """
        head, _, name = rel.strip("/").rpartition("/")
        if not name or name in (".", ".."):
            raise self.unsafe_error(f"refused path {rel!r}: relative components")
        base = self.path(head) if head else self.root
        return os.readlink(base / name)

    # ---------------------------------------------------------------- reading
    def read_bytes(self, rel: str) -> bytes:
        """The whole file, as bytes (read until end of file).

        Raises:
            OSError: the file cannot be opened or read.
            unsafe_error: see :meth:`path`.
        """
        return _read_file(self._checked(rel))

    def read(self, rel: str) -> str:
        """The whole file, byte-exact (decoded as latin-1 so every byte round-trips).

        Raises:
            read_error: the file cannot be read.
            unsafe_error: see :meth:`path`.
        """
        p = self._checked(rel)
        try:
            return _read_file(p).decode("latin-1")
        except OSError as err:
            raise self.read_error(f"cannot read {p}: {err.strerror or err}") from err


def _read_file(path: str) -> bytes:
    """Every byte of ``path``: chunks of 64 KiB until a short one (one ``read()`` for a sysfs value).

    Raises:
        OSError: the file cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, _CHUNK)]
        while len(chunks[-1]) == _CHUNK:
            chunks.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    return b"".join(chunks)
