"""The one place novatune opens or creates a file for writing on behalf of a spec: under allow-listed roots only.

A :class:`WriteRoots` names where writing is allowed:

* ``scratch``: the run's own scratch directory (a workload's workdir); always allowed, created when missing;
* ``allowed``: directories the operator configured (``workload_allowed_paths``); their own path must exist;
* ``protected``: directories that are never a target through ``allowed``, even when an allowed root
  contains them (novatune's data directory: the journal, the databases). The scratch directory may lie
  inside one (a run's workdir is under the data directory): only the scratch itself is exempt.

A name (absolute, or relative to the scratch directory) is refused when it is empty, longer than 4096
bytes, holds NUL or a ``..`` component, or lies (lexically) under none of the roots. It is then reached
without ever following a symlink: the root is opened component by component from ``/`` and every
component below it with ``openat``-style calls and ``O_NOFOLLOW``, so a symlink planted anywhere on the
way (or swapped in after a check) is refused, never followed; a directory that is a protected one by
identity (device and inode: a bind mount) is refused too. The final file must be a regular file (never
a device, FIFO, socket or directory; checked before it is opened, and again on the open descriptor),
have one link (a hard link to another file is refused) and belong to the running user. A missing file
is created with ``O_CREAT | O_EXCL`` (mode 0600 unless told otherwise), missing directories with 0700.

:meth:`WriteRoots.open_file` returns a :class:`SafeFile` holding the open descriptor: hand a tool
``SafeFile.proc_path`` (``/proc/self/fd/N`` with the descriptor passed to the child) rather than the
name, and :meth:`SafeFile.verify` it again right before the tool runs. :meth:`WriteRoots.ensure_dir`
is for a directory handed to a tool by path: it must also be private (owned by the running user,
writable by nobody else, and so must every directory between it and its root).

Every refusal is a :class:`PathRefused` (exit 2, HTTP 422) naming what was wrong and what is allowed.
Before each write-open it makes relative to a directory descriptor, the helper raises the audit event
``novatune.safepath.open`` with ``(dir_fd, name, flags)``, so an audit hook can resolve where it lands.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collectors.errors import CollectorError

__all__ = ["MAX_PATH", "PathRefused", "SafeFile", "WriteRoots"]

#: the longest name accepted (bytes, as the kernel's PATH_MAX)
MAX_PATH = 4096
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_AUDIT = "novatune.safepath.open"


class PathRefused(CollectorError):
    """A path novatune was asked to write is refused; the message says why and what is allowed (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@dataclass
class SafeFile:
    """A file :meth:`WriteRoots.open_file` opened safely: its descriptor (read-write), its directory's, its name.

    ``path`` is the absolute name it was reached by (for messages); ``created`` says whether this open made it.
    """

    path: Path
    fd: int
    dir_fd: int
    name: str
    created: bool
    _ident: tuple[int, int] = field(default=(0, 0), repr=False)

    @property
    def proc_path(self) -> str:
        """``/proc/self/fd/N``: the same file for a child that inherited the descriptor (``pass_fds``)."""
        return f"/proc/self/fd/{self.fd}"

    def verify(self) -> None:
        """Check the open file again (right before a tool gets it): regular, one link, the running user's.

        Raises:
            PathRefused: it is no longer (a hard link was added, its owner changed) or the descriptor is closed.
        """
        try:
            st = os.fstat(self.fd)
        except OSError as err:
            raise PathRefused(f"{self.path}: cannot check the open file: {err.strerror or err}") from None
        _check_file(self.path, st)

    def unlink(self) -> None:
        """Remove the name if it still is this file (through the directory descriptor; never a path walk)."""
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == self._ident:
                os.unlink(self.name, dir_fd=self.dir_fd)
        except OSError:
            pass

    def close(self) -> None:
        """Close both descriptors (idempotent)."""
        for attr in ("fd", "dir_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> SafeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_file(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(f"{path} is {_kind(st.st_mode)}: only a regular file may be written (never a device, "
                          "FIFO, socket, directory or symlink)")
    if st.st_nlink > 1:
        raise PathRefused(f"{path} has {st.st_nlink} hard links: refused (a hard link may point at any file "
                          "of the file system)")
    if st.st_uid != os.geteuid():
        raise PathRefused(f"{path} belongs to uid {st.st_uid}, not to the running user (uid {os.geteuid()}): "
                          "refused")


def _private_dir(path: Path, st: os.stat_result, *, is_root: bool) -> None:
    """A directory handed to a tool by path: the running user's, writable by nobody else (a root may be sticky)."""
    if st.st_uid != os.geteuid():
        raise PathRefused(f"directory {path} belongs to uid {st.st_uid}, not to the running user: a directory a "
                          "tool is given by path must be private")
    if st.st_mode & 0o022 and not (is_root and st.st_mode & stat.S_ISVTX):
        raise PathRefused(f"directory {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}): "
                          "a directory a tool is given by path must be private")


@dataclass(frozen=True)
class _Located:
    """Where a name lands: its absolute lexical path, the root it is under, the components below that root."""

    path: Path
    root: Path
    parts: tuple[str, ...]
    scratch: bool


@dataclass(frozen=True)
class WriteRoots:
    """Where novatune may write for a spec (see the module docstring). Build it with :meth:`of`."""

    scratch: Path
    allowed: tuple[Path, ...] = ()
    protected: tuple[Path, ...] = ()

    @classmethod
    def of(cls, scratch: str | os.PathLike[str], allowed: Iterable[str | os.PathLike[str]] = (),
           protected: Iterable[str | os.PathLike[str]] = ()) -> WriteRoots:
        """The roots: ``allowed`` and ``protected`` resolved once (symlinks in their own paths are the
        operator's), ``scratch`` taken as it is: no component of its path may be a symlink (it is novatune's
        own, under the resolved data directory: a symlink there was planted).

        Raises:
            PathRefused: a root that is not an absolute path, or holds NUL.
        """
        def checked(p: str | os.PathLike[str], what: str) -> str:
            text = os.fspath(p)
            if not isinstance(text, str) or not os.path.isabs(text) or "\0" in text:
                raise PathRefused(f"{what} {text!r} must be an absolute path")
            return text

        return cls(Path(os.path.normpath(os.path.abspath(os.fspath(scratch)))),
                   tuple(Path(os.path.realpath(checked(p, "allowed root"))) for p in allowed),
                   tuple(Path(os.path.realpath(checked(p, "protected directory"))) for p in protected))

    def describe(self) -> str:
        """What is allowed, for messages."""
        extra = ", ".join(str(p) for p in self.allowed) or "none configured"
        return f"the run's scratch directory {self.scratch} or a configured workload_allowed_paths root ({extra})"

    # ------------------------------------------------------------ lexical
    def locate(self, name: str | os.PathLike[str]) -> _Located:
        """Where ``name`` lands (relative names are under the scratch directory), without touching the disk.

        Raises:
            PathRefused: empty, too long, NUL, a ``..`` component, outside every root, inside a protected one.
        """
        text = os.fspath(name) if isinstance(name, (str, os.PathLike)) else name
        if not isinstance(text, str) or not text:
            raise PathRefused(f"path must be a non-empty string, got {name!r}")
        if "\0" in text:
            raise PathRefused(f"path {text[:80]!r} holds a NUL byte")
        try:
            size = len(os.fsencode(text))
        except UnicodeEncodeError:
            raise PathRefused(f"path {text[:80]!r} is not encodable as a file name") from None
        if size > MAX_PATH:
            raise PathRefused(f"path {text[:80]!r}... is longer than {MAX_PATH} bytes")
        raw = Path(text)
        if ".." in raw.parts:
            raise PathRefused(f"path {text!r} has a '..' component: refused; name a path under {self.describe()}")
        path = raw if raw.is_absolute() else self.scratch / raw
        if _under(path, self.scratch):
            return _Located(path, self.scratch, path.relative_to(self.scratch).parts, True)
        for root in sorted(self.allowed, key=lambda r: len(r.parts), reverse=True):
            if not _under(path, root):
                continue
            for prot in self.protected:
                if _under(path, prot) or _under(root, prot):
                    raise PathRefused(f"path {text!r} is inside novatune's own data directory {prot}: never a "
                                      "target, even under a configured root")
            return _Located(path, root, path.relative_to(root).parts, False)
        raise PathRefused(f"path {text!r} is outside the allowed roots: name a path under {self.describe()}")

    # ------------------------------------------------------------ the walk
    def _protected_ids(self) -> set[tuple[int, int]]:
        out = set()
        for p in self.protected:
            try:
                st = os.stat(p)
            except OSError:
                continue
            out.add((st.st_dev, st.st_ino))
        return out

    def _open_root(self, loc: _Located, *, create: bool) -> int | None:
        """A descriptor of ``loc.root``, reached from ``/`` without following a symlink; None: missing (no create).

        Raises:
            PathRefused: a component is a symlink or not a directory; an allowed root does not exist.
        """
        fd: int | None = os.open("/", _DIR_FLAGS)
        for i, comp in enumerate(loc.root.parts[1:]):
            assert fd is not None
            fd = self._step(fd, comp, Path(*loc.root.parts[: i + 2]), create=create and loc.scratch)
            if fd is None:
                if not loc.scratch:
                    raise PathRefused(f"the configured root {loc.root} does not exist")
                return None
        return fd

    @staticmethod
    def _step(dfd: int, comp: str, where: Path, *, create: bool) -> int | None:
        """Open directory ``comp`` under ``dfd`` (always closed here) without following it; None when missing
        and not ``create`` (then made, mode 0700).

        Raises:
            PathRefused: ``comp`` is a symlink or not a directory, or cannot be opened or made.
        """
        try:
            try:
                return os.open(comp, _DIR_FLAGS, dir_fd=dfd)
            except FileNotFoundError:
                if not create:
                    return None
            try:
                os.mkdir(comp, 0o700, dir_fd=dfd)
            except FileExistsError:
                pass  # made by someone else meanwhile: opened (and checked) like any other
            return os.open(comp, _DIR_FLAGS, dir_fd=dfd)
        except OSError as err:
            try:
                what = _kind(os.stat(comp, dir_fd=dfd, follow_symlinks=False).st_mode)
            except OSError:
                what = f"not usable ({err.strerror or err})"
            raise PathRefused(f"{where} is {what}: refused (no symlink may lie on the path of a file "
                              "novatune writes)") from None
        finally:
            os.close(dfd)

    def _walk(self, loc: _Located, parts: Sequence[str], *, create: bool, private: bool) -> int | None:
        """A descriptor of the directory ``root/parts``; None when a component is missing (no create)."""
        fd = self._open_root(loc, create=create)
        if fd is None:
            return None
        protected = set() if loc.scratch else self._protected_ids()
        where = loc.root
        try:
            self._check_dir(fd, where, protected, private=private, is_root=True)
        except BaseException:
            os.close(fd)
            raise
        for comp in parts:
            where = where / comp
            nfd = self._step(fd, comp, where, create=create)  # closes fd
            if nfd is None:
                return None
            fd = nfd
            try:
                self._check_dir(fd, where, protected, private=private, is_root=False)
            except BaseException:
                os.close(fd)
                raise
        return fd

    @staticmethod
    def _check_dir(fd: int, where: Path, protected: set[tuple[int, int]], *, private: bool, is_root: bool) -> None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in protected:
            raise PathRefused(f"{where} is novatune's own data directory: never a target")
        if private:
            _private_dir(where, st, is_root=is_root)

    # ------------------------------------------------------------ public
    def check(self, name: str | os.PathLike[str]) -> Path:
        """``name``'s absolute path if writing it would be allowed now; creates nothing.

        Components that exist are walked as :meth:`open_file` would; a missing file is fine (it would be
        created), an existing one must pass the file checks.

        Raises:
            PathRefused: see the module docstring.
        """
        loc = self.locate(name)
        if not loc.parts:
            raise PathRefused(f"{loc.path} is a directory (the root itself): name a file under it")
        dfd = self._walk(loc, loc.parts[:-1], create=False, private=False)
        if dfd is None:
            return loc.path
        try:
            st = os.stat(loc.parts[-1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return loc.path
        except OSError as err:
            raise PathRefused(f"{loc.path}: cannot check: {err.strerror or err}") from None
        finally:
            os.close(dfd)
        _check_file(loc.path, st)
        return loc.path

    def open_file(self, name: str | os.PathLike[str], *, append: bool = False, mode: int = 0o600) -> SafeFile:
        """Open (or create with ``mode``, whatever the umask) ``name`` read-write for novatune itself; never truncates.

        Raises:
            PathRefused: see the module docstring (also when the file cannot be opened or made).
        """
        loc = self.locate(name)
        if not loc.parts:
            raise PathRefused(f"{loc.path} is a directory (the root itself): name a file under it")
        dfd = self._walk(loc, loc.parts[:-1], create=True, private=False)
        assert dfd is not None  # create=True never answers "missing"
        try:
            return _open_in(dfd, loc.parts[-1], loc.path, append=append, mode=mode)
        except BaseException:
            os.close(dfd)
            raise

    def ensure_dir(self, name: str | os.PathLike[str] = ".") -> Path:
        """Create (0700) or check the directory ``name``, to hand to a tool by path; its absolute path.

        It and every directory from its root down must be private (owned by the running user, writable by
        nobody else; a root may be a sticky directory).

        Raises:
            PathRefused: see the module docstring, or a directory on the way is not private.
        """
        loc = self.locate(name)
        fd = self._walk(loc, loc.parts, create=True, private=True)
        assert fd is not None
        os.close(fd)
        return loc.path


def _open_in(dfd: int, name: str, path: Path, *, append: bool, mode: int) -> SafeFile:
    """Open the file ``name`` of the directory ``dfd`` (kept by the SafeFile), checked before and after."""
    base = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if append else 0)
    for _ in range(2):  # created or removed by someone else in between: look again, once
        try:
            before = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            before = None
        except OSError as err:
            raise PathRefused(f"{path}: cannot check: {err.strerror or err}") from None
        if before is not None:
            _check_file(path, before)  # before opening: opening a device or FIFO may act on it
        flags = base | (os.O_NONBLOCK if before is not None else os.O_CREAT | os.O_EXCL)
        sys.audit(_AUDIT, dfd, name, flags)
        try:
            fd = os.open(name, flags, mode, dir_fd=dfd)
        except (FileExistsError, FileNotFoundError):
            continue
        except OSError as err:
            raise PathRefused(f"{path}: cannot open for writing: {err.strerror or err}") from None
        try:
            st = os.fstat(fd)
            _check_file(path, st)
            if before is not None and (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
                raise PathRefused(f"{path} was replaced while it was opened: refused")
            if before is not None:
                os.set_blocking(fd, True)
            else:
                os.fchmod(fd, mode)  # the mode asked for, whatever the umask (novatune runs under 077)
        except BaseException:
            os.close(fd)
            raise
        return SafeFile(path, fd, dfd, name, before is None, (st.st_dev, st.st_ino))
    raise PathRefused(f"{path} keeps changing while it is opened: refused")
