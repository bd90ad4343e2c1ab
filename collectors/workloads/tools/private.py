"""Where a workload's server lives and who it runs as: an unprivileged account and a private directory.

A server novatune starts for a workload (PostgreSQL for pgbench, redis-server, ``iperf3 -s``, the HTTP
server of wrk) never runs as root when novatune does: :func:`server_account` picks its account (the
first of the workload's ``SERVER_USERS`` that exists, e.g. ``redis`` then ``nobody``) and
:func:`drop_privileges` switches to it in the child, after the caller's preexec (cgroup placement needs
root) and before ``exec``. When novatune is not root the server simply runs as novatune's user.

:class:`PrivateDir` is the server's directory, made fresh with ``mkdtemp`` under the system temp
directory (``novatune-<kind>-*``, pgbench's ``novatune-pg-*``, journaled as a scratch directory by the
study so that ``recover`` deletes it after a ``kill -9``):

* ``top``: novatune's (mode 0710, group of the account: only the account may pass, nobody may list);
  what novatune writes for the server (served files, a password file) goes here, through
  :attr:`PrivateDir.roots`, before :meth:`PrivateDir.open_to` lets the account in;
* ``home``: the account's (0700): the server's working directory, ``HOME``, ``TMPDIR``, data and unix
  socket. novatune never writes there once the account owns it, and a client that talks to the server
  through a path in it runs as the account too (the account controls what that path names).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from collectors.errors import WorkloadError
from collectors.safepath import WriteRoots
from collectors.workloads.process import run_bounded

__all__ = ["PrivateDir", "drop_privileges", "server_account"]


def server_account(kind: str, names: Sequence[str]) -> pwd.struct_passwd | None:
    """The account the server of ``kind`` runs as: None when novatune is not root (it runs as this user).

    Raises:
        WorkloadError: root, and none of ``names`` exists (the message lists them).
    """
    if os.geteuid() != 0 or not names:
        return None
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise WorkloadError(f"{kind}: no unprivileged account to run the server as (tried: {', '.join(names)}); "
                        "novatune never runs a workload's server as root")


def drop_privileges(account: pwd.struct_passwd | None) -> None:
    """In a child before ``exec``: become ``account`` (no supplementary groups). None: nothing to do."""
    if account is None:
        return
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)


def account_env(env: dict[str, str], account: pwd.struct_passwd | None, home: Path) -> dict[str, str]:
    """``env`` for a process of ``account`` living in ``home`` (``HOME``, ``TMPDIR``, ``USER``, ``LOGNAME``)."""
    out = dict(env)
    out.update(HOME=str(home), TMPDIR=str(home))
    if account is not None:
        out.update(USER=account.pw_name, LOGNAME=account.pw_name)
    return out


class PrivateDir:
    """A server's private directory (see the module docstring); made at once, 0700 and novatune's.

    Raises:
        WorkloadError: the directory cannot be made.
    """

    def __init__(self, kind: str, account: pwd.struct_passwd | None, *, name: str = "") -> None:
        self.kind = kind
        self.account = account
        try:
            self.top = Path(os.path.realpath(tempfile.mkdtemp(prefix=f"novatune-{name or kind}-")))
        except OSError as err:
            raise WorkloadError(f"{kind}: cannot make a private directory: {err}") from err
        self.home = self.top / "home"
        self.roots = WriteRoots.of(self.top)
        try:
            os.mkdir(self.home, 0o700)
        except OSError as err:
            self.remove()
            raise WorkloadError(f"{kind}: cannot make a private directory: {err}") from err

    def open_to(self) -> None:
        """Give ``home`` to the account and let it pass ``top`` (nothing to do when novatune is not root).

        Raises:
            WorkloadError: the account cannot reach ``home`` (a parent of the system temp directory is
                not searchable by others), or the ownership cannot be changed.
        """
        acct = self.account
        if acct is None:
            return
        try:
            os.chown(self.home, acct.pw_uid, acct.pw_gid, follow_symlinks=False)
            os.chown(self.top, 0, acct.pw_gid, follow_symlinks=False)
            os.chmod(self.top, 0o710)
        except OSError as err:
            raise WorkloadError(f"{self.kind}: cannot prepare {self.top} for user {acct.pw_name}: {err}") from err
        try:
            probe = run_bounded(["test", "-w", str(self.home)], timeout_s=10, cwd="/", user=acct.pw_uid,
                                group=acct.pw_gid, extra_groups=[])
        except (OSError, subprocess.SubprocessError) as err:
            raise WorkloadError(f"{self.kind}: cannot run a check as user {acct.pw_name}: {err}") from err
        if probe.returncode != 0:
            raise WorkloadError(
                f"{self.kind}: user {acct.pw_name} cannot reach {self.home}: every parent directory of the "
                "system temp directory must be searchable by others (chmod o+x)"
            )

    def give(self, fd: int) -> None:
        """Let the account own the file open as ``fd`` (a file novatune wrote in ``top`` for it)."""
        if self.account is not None:
            os.fchown(fd, self.account.pw_uid, self.account.pw_gid)

    def remove(self) -> None:
        """Delete the whole directory (symlinks inside are removed, never followed). Idempotent."""
        shutil.rmtree(self.top, ignore_errors=True)
