"""The one process runner of the workloads: run bounded in time, capture, tail; stop and reap.

Every workload that runs a command to completion (a tool run, ``pgbench -i``,
``initdb``, the OLTP load generator) goes through :func:`run_bounded`; every
long-lived process a workload started (a server, a holder) is stopped with
:func:`stop_process`. Error messages quote a child's output through
:func:`tail`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

__all__ = ["PACKAGE_ROOT", "SECRET_ENV", "child_env", "kill_group", "run_bounded", "stop_process", "tail"]

#: the directory holding the ``collectors`` package (put on a child's ``PYTHONPATH``)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
TAIL_CHARS = 1500


def tail(text: str | bytes | None, n: int = TAIL_CHARS) -> str:
    """The last ``n`` characters of ``text`` (stripped, ``"..."`` in front when cut), or ``"(empty)"``."""
    if not text:
        return "(empty)"
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    if not text:
        return "(empty)"
    return text if len(text) <= n else "..." + text[-n:]


#: variables that may carry a credential (the API token, a database or tracking URL with its password)
SECRET_ENV = frozenset({"NOVATUNE_API_TOKEN", "NOVATUNE_STORAGE", "NOVATUNE_MLFLOW_TRACKING_URI"})


def child_env(*, secrets: bool = False) -> dict[str, str]:
    """This process's environment with :data:`PACKAGE_ROOT` first on ``PYTHONPATH`` (``python -m collectors...``)
    and ``PYTHONSAFEPATH=1``: a child's working directory (a run's workdir, the directory novatune was started
    in) is never on its ``sys.path``, so nothing planted there is imported (as root). Without ``secrets``,
    none of :data:`SECRET_ENV`: a workload's server may run as a shared system account (``postgres``,
    ``redis``) whose other processes can read its ``/proc/PID/environ``; only novatune's own workers get them."""
    env = {k: v for k, v in os.environ.items() if secrets or k not in SECRET_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONSAFEPATH"] = "1"
    return env


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL whatever is left in the process group led by ``proc`` (a run's forked workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(proc: subprocess.Popen[Any], *, group: bool) -> None:
    if group:
        kill_group(proc)
    elif proc.poll() is None:
        proc.kill()


def run_bounded(
    argv: Sequence[str],
    *,
    timeout_s: float,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    merge_stderr: bool = False,
    new_group: bool = True,
    **popen_kw: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (no shell, stdin from /dev/null), wait at most ``timeout_s`` and return what it printed.

    Output is text (undecodable bytes replaced); ``merge_stderr`` sends stderr
    into stdout (``stderr`` is then ``None``). With ``new_group`` the child
    leads its own process group, and on timeout (or an exception while
    waiting, e.g. ``KeyboardInterrupt``) the whole group is SIGKILLed, so
    forked workers do not outlive the run; without it only the child is
    killed. The exit status is not checked: read ``returncode``.
    ``popen_kw`` goes to :class:`subprocess.Popen` (e.g. ``user``, ``group``).

    Raises:
        OSError: the program could not be executed.
        subprocess.SubprocessError: ``preexec_fn`` failed in the child.
        subprocess.TimeoutExpired: the run was killed after ``timeout_s``;
            ``output`` / ``stderr`` hold what it printed until then.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        errors="replace",
        cwd=cwd,
        env=env,
        preexec_fn=preexec_fn,  # noqa: PLW1509 - the caller's: cgroup placement, copied attributes
        process_group=0 if new_group else None,
        **popen_kw,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc, group=new_group)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(list(argv), timeout_s, output=out, stderr=err) from None
    except BaseException:
        _kill(proc, group=new_group)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, *, grace_s: float = 10.0) -> None:
    """Stop a long-lived child and every descendant it had; reap them; close its pipes.

    ``sig`` goes to ``proc``; if it has not exited after ``grace_s``, its
    process group (or, when it leads none, ``proc`` itself) is SIGKILLed.
    Descendants known before the signal that are still running are then
    SIGKILLed and waited for (at most ``grace_s``).
    """
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # not a group leader: the process alone
            proc.kill()
        proc.wait(timeout=grace_s)
    alive = []
    for child in family:
        try:
            if child.is_running():
                child.kill()
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
