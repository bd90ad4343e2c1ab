"""The file-system rules for what novatune trusts and how it writes: one place for every owner, mode and
symlink check.

novatune runs as root. A directory or a file that another local user could have created, replaced or
written is not trusted: it could supply the API token, the configuration, the journal, or code.

- **Directories** (:func:`private_dir`: the data directory, the lock directory): the directory must be
  owned by the running user and not writable by group or others; every directory on the way to it must
  be owned by root or the running user and not writable by group or others unless it is sticky (``/tmp``:
  others cannot rename or delete what is ours there). A symbolic link on the way is followed only when
  root or the running user owns it. Missing directories are created one at a time with mode 0700, and
  checked after the ``mkdir`` (a directory someone created in between is refused, not used).
- **Files read** (:func:`read_trusted`: the config file, the API token file): opened with ``O_NOFOLLOW``
  and checked on the open descriptor (``fstat``): a regular file, owned by root or the running user, not
  writable by group or others; a secret (the token) not readable by them either. Their directories pass
  the rule for the directories on the way.
- **Files written** (:func:`write_file`: ``-o`` outputs, exports): written to a private temporary file
  created with ``O_EXCL`` in the target's directory (``mkstemp``), then renamed over the target; a
  symbolic link at the target is refused, never followed.
- **Process entry** (:data:`PRIVATE_UMASK`): the CLI, the worker and the service run with umask 077, so
  the journal, the databases, ``status.json``, the runs and the MLflow artifacts are created 0600 / 0700.

Every refusal is an :class:`UnsafeLocation` (exit 2, HTTP 409) naming the path, its owner and mode,
and what would make it acceptable.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from collectors.errors import NovatuneError

__all__ = [
    "PRIVATE_UMASK",
    "UnsafeLocation",
    "current_umask",
    "describe_owner",
    "private_dir",
    "private_umask",
    "read_trusted",
    "write_file",
]

#: the umask every novatune process runs with: what it creates is its own user's alone
PRIVATE_UMASK = 0o077
#: symbolic links followed on one path at most (the kernel's own limit)
_MAX_LINKS = 40
#: the largest file :func:`read_trusted` reads (a config file, a token)
_READ_LIMIT = 1 << 20


class UnsafeLocation(NovatuneError):
    """A directory or file novatune would trust is owned or writable by another user, or is a symbolic
    link where none is allowed; the message names it, its owner and mode, and what is required
    (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


# ------------------------------------------------------------------ who and what
def _trusted_owners() -> set[int]:
    return {0, os.geteuid()}


def _who(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _me() -> str:
    return _who(os.geteuid())


def describe_owner(st: os.stat_result) -> str:
    """``owned by uid 1000 (alice) with mode 0777``."""
    return f"owned by {_who(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o}"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _parent_problem(st: os.stat_result) -> str | None:
    """Why a directory on the way to a trusted one is not safe (None: it is)."""
    if st.st_uid not in _trusted_owners():
        return "it is not owned by root or by novatune's user"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return "group or others may write in it (and it is not sticky like /tmp)"
    return None


def _own_problem(st: os.stat_result) -> str | None:
    """Why the trusted directory itself is not safe (None: it is)."""
    if st.st_uid != os.geteuid():
        return "it is not owned by novatune's user"
    if st.st_mode & 0o022:
        return "group or others may write in it"
    return None


# ------------------------------------------------------------------ directories
def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _refuse_dir(what: str, path: Path, where: str, st: os.stat_result, problem: str, fix: str) -> UnsafeLocation:
    subject = "it" if where == str(path) else f"{where}, on the way to it,"
    return UnsafeLocation(
        f"{what} {path} is not safe: {subject} is {describe_owner(st)}: {problem}. novatune (running as "
        f"{_me()}) trusts only a directory owned by itself and not writable by group or others, inside "
        f"directories owned by root or itself that others cannot write in (sticky ones like /tmp excepted). "
        f"Fix: {fix}"
    )


def _fix_hint(where: str, final: bool, hint: str) -> str:
    if final:
        return f"`chown {_user_name()} {where} && chmod 0700 {where}` if its contents are yours, else remove it; {hint}"
    return f"`chown root {where} && chmod go-w {where}`, {hint}"


def _walk(
    path: Path, *, what: str, hint: str, create: bool, final_check: Callable[[os.stat_result], str | None],
) -> Path:
    """Walk ``path`` component by component from ``/`` with ``lstat``, following only trusted symbolic
    links, checking each directory (the last one with ``final_check``), creating missing ones (0700)
    when ``create``. Returns the physical path (where it would be, when missing and not ``create``)."""
    raw = os.fspath(path)
    todo = _split(raw) if raw.startswith("/") else _split(os.getcwd()) + _split(raw)
    cur, links = "/", 0
    st = os.lstat(cur)
    problem = _parent_problem(st) if todo else final_check(st)
    if problem:
        raise _refuse_dir(what, path, cur, st, problem, _fix_hint(cur, not todo, hint))
    while todo:
        name = todo.pop(0)
        if name == "..":
            cur = os.path.dirname(cur)  # cur is physical and checked: its parent was checked before it
            continue
        nxt = os.path.join(cur, name)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            if not create:
                return Path(nxt, *todo)
            try:
                os.mkdir(nxt, 0o700)
            except FileExistsError:
                pass  # someone else's, just now: checked below like any other
            st = os.lstat(nxt)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise UnsafeLocation(f"{what} {path}: too many symbolic links on the way ({nxt})")
            if st.st_uid not in _trusted_owners():
                raise UnsafeLocation(
                    f"{what} {path} is not safe: {nxt} is a symbolic link {describe_owner(st)}, who can point it "
                    f"anywhere; novatune follows only links owned by root or {_me()}: {hint}")
            target = os.readlink(nxt)
            if target.startswith("/"):
                cur = "/"
            todo = _split(target) + todo
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLocation(f"{what} {path}: {nxt} is not a directory: remove it, {hint}")
        problem = final_check(st) if not todo else _parent_problem(st)
        if problem:
            raise _refuse_dir(what, path, nxt, st, problem, _fix_hint(nxt, not todo, hint))
        cur = nxt
    return Path(cur)


def private_dir(path: str | os.PathLike[str], *, what: str, hint: str = "or choose another directory",
                create: bool = False) -> Path:
    """``path`` checked as a directory novatune trusts (the rule in the module docstring), created 0700
    (with its missing parents) when ``create``; returns its physical path.

    Not ``create`` and missing: the directories that exist on the way are checked, and the path where it
    would be is returned.

    Raises:
        UnsafeLocation: ``path`` or a directory on the way is another user's or writable by others, a
            symbolic link on the way is another user's, or a component is not a directory.
        OSError: a directory could not be created or read (permissions, read-only file system).
    """
    return _walk(Path(path), what=what, hint=hint, create=create, final_check=_own_problem)


# ------------------------------------------------------------------ files
def read_trusted(path: str | os.PathLike[str], *, what: str, secret: bool = False,
                 hint: str = "") -> bytes | None:
    """The bytes of the file novatune trusts at ``path``; None when it does not exist.

    Opened with ``O_NOFOLLOW`` and checked on the descriptor: a regular file, owned by root or the
    running user, not writable by group or others, and (``secret``) not readable by them; its directory
    and the directories on the way pass the rule for the directories on the way.

    Raises:
        UnsafeLocation: a symbolic link, not a regular file, another user's, writable (or, a secret,
            readable) by group or others, larger than 1 MiB, or an unsafe directory on the way.
        OSError: it cannot be read (permissions, I/O).
    """
    p = Path(path)
    hint = hint or "or use another file"
    parent = _walk(p.parent, what=f"the directory of {what}", hint=hint, create=False, final_check=_parent_problem)
    if not parent.is_dir():
        return None
    real = parent / p.name
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafeLocation(f"{what} {p} is a symbolic link; novatune reads it only as a regular file of its "
                                 f"own (a link could point anywhere): replace the link by the file, {hint}") from None
        raise
    try:
        st = os.fstat(fd)
        problem = _file_problem(st, secret=secret)
        if problem:
            raise UnsafeLocation(f"{what} {p} is not safe: it is {describe_owner(st)}; {problem}, {hint}")
        chunks: list[bytes] = []
        size = 0
        while size <= _READ_LIMIT:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > _READ_LIMIT:
            raise UnsafeLocation(f"{what} {p} is larger than {_READ_LIMIT} bytes; it cannot be novatune's")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _file_problem(st: os.stat_result, *, secret: bool) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_uid not in _trusted_owners():
        return f"novatune (running as {_me()}) reads only a file owned by root or itself: `chown` it"
    if st.st_mode & 0o022:
        return "group or others may write it: `chmod go-w` it"
    if secret and st.st_mode & 0o044:
        return "it is a secret that group or others may read: `chmod 0600` it"
    return None


def current_umask() -> int:
    """This process's umask, read without changing it (``/proc/self/status``; else set and put back)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(PRIVATE_UMASK)  # the strictest value in between: a file another thread creates now is private
    os.umask(old)
    return old


def write_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path``: a private temporary file created with ``O_EXCL`` beside it, synced,
    given ``mode`` less the umask, then renamed over ``path`` (readers see the old file or the new one).
    Returns ``path``.

    Raises:
        UnsafeLocation: ``path`` is a symbolic link (refused, never followed: it could point at any file).
        OSError: the directory is missing or not writable, ``path`` is a directory, the disk is full.
    """
    p = Path(path)
    try:
        st: os.stat_result | None = os.lstat(p)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise UnsafeLocation(f"{p} is a symbolic link; novatune never writes through a link (it could point at "
                             f"any file, e.g. /etc/shadow): remove the link, or choose another path")
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(p))
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")  # O_EXCL, 0600
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode & ~current_umask() & 0o777)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, p)  # renames over a link planted meanwhile: the link goes, its target is untouched
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


@contextmanager
def private_umask() -> Iterator[None]:
    """Run the block with umask :data:`PRIVATE_UMASK`, then put the previous one back (a CLI called in
    process, as the tests do, leaves its caller as it was)."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)
