"""A command novatune launches to profile it (``novatune profile record -- CMD``): started in its own session,
profiled for a window, then ended (SIGTERM to its process group, SIGKILL 5 s later) and always reaped.

Its stdout is discarded and the tail of its stderr kept for the error of a command that fails at once. With
``tracemalloc`` the command runs under ``collectors/profiler/tracewrap.py`` (by path: any Python runs it,
novatune need not be importable there), which writes the top allocation sites at exit or on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from collectors.profiler.model import Profile, ProfileError
from collectors.profiler.target import ProfileTargetError, ProfileTargetExited

__all__ = ["profile_child", "tracewrap_argv"]

_TERM_GRACE_S = 5.0
_STDERR_TAIL = 4096


def tracewrap_argv(argv: list[str], out: Path) -> list[str]:
    """``argv`` run under the tracemalloc wrapper, writing to ``out``.

    Raises:
        ProfileError: ``argv`` is not ``python ...``.
    """
    if not Path(argv[0]).name.startswith("python") or len(argv) < 2:
        raise ProfileError("tracemalloc=True needs a Python command (python SCRIPT ..., python -m MODULE ... or "
                           f"python -c CODE): {argv[0]!r} is not a Python interpreter")
    wrapper = Path(__file__).with_name("tracewrap.py")
    return [argv[0], str(wrapper), "--out", str(out), "--", *argv[1:]]


def _drain(stream: IO[bytes], tail: deque[bytes]) -> None:
    for chunk in iter(lambda: stream.read(1024), b""):
        tail.append(chunk)


def _end(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's process group, SIGKILL after the grace; reaped either way."""
    if child.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, _TERM_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except OSError:
            pass
        try:
            child.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _failed(argv: list[str], child: subprocess.Popen[bytes], drain: threading.Thread, tail: deque[bytes],
            when: str) -> ProfileTargetExited:
    drain.join(timeout=1.0)
    err_tail = b"".join(tail).decode("utf-8", "replace").strip()[-400:]
    return ProfileTargetExited(f"the command {' '.join(argv)[:200]!r} exited with code {child.returncode} {when}: "
                               f"{err_tail or 'no stderr'}")


def _allocations(path: Path, *, wait_s: float = 2.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    top = doc.get("top") if isinstance(doc, dict) else None
    return [row for row in top if isinstance(row, dict)] if isinstance(top, list) else []


def profile_child(argv: list[str], duration_s: float, options: Any, *, tracemalloc: bool,
                  stop: threading.Event | None, labels: Mapping[str, str] | None,
                  record: Callable[..., Profile]) -> Profile:
    """Launch ``argv``, ``record(pid, duration_s, options, partial_ok=True, ...)`` it, end it, reap it.

    Raises:
        ProfileError: it cannot be started, or ``tracemalloc`` for a non-Python command.
        ProfileTargetExited: it exited before any sample, or with a non-zero code (its exit code and stderr
            tail in the message).
        whatever ``record`` raises.
    """
    tmp = Path(tempfile.mkdtemp(prefix="novatune-launch-"))
    alloc_out = tmp / "allocations.json"
    cmd = tracewrap_argv(argv, alloc_out) if tracemalloc else argv
    tail: deque[bytes] = deque(maxlen=_STDERR_TAIL // 1024 + 1)
    try:
        try:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        except OSError as err:
            raise ProfileError(f"cannot start {argv[0]!r}: {err}") from err
        assert child.stderr is not None
        drain = threading.Thread(target=_drain, args=(child.stderr, tail), name="novatune-stderr", daemon=True)
        drain.start()
        t0 = time.monotonic()
        try:
            try:
                profile = record(child.pid, duration_s, options, partial_ok=True, stop=stop, labels=labels)
            except ProfileTargetError as err:
                if child.poll() is None:
                    raise
                raise _failed(argv, child, drain, tail, "before it could be sampled") from err
            code = child.poll()
            if code:  # a command that failed: its exit matters more than a profile of its start-up
                raise _failed(argv, child, drain, tail, f"{time.monotonic() - t0:.1f} s into the window")
        finally:
            _end(child)
            drain.join(timeout=1.0)
            child.stderr.close()
        if code is not None:  # it ended by itself: the whole run, not a partial window
            profile.meta.labels.pop("partial", None)
            profile.meta.labels["exit_code"] = str(code)
        if tracemalloc:
            profile.meta.allocations = _allocations(alloc_out)
        return profile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
