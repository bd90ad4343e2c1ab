"""What the API benchmarks share: a real ``novatune serve`` in a data directory of its own, a free port,
the error a failed step raises, and the ``main`` tail (run, judge, print, exit code).

Imported as ``benchmarks._service`` by the benchmark scripts, which put the checkout's root on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """A step of the benchmark failed (the message says which)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(home: Path, token: str, port: int, *, env: dict[str, str] | None = None
                ) -> tuple[subprocess.Popen[bytes], Path]:
    """``novatune serve`` on ``port`` with its own data directory ``home`` (not waited for); returns the
    process (in a session of its own) and its log file, ``<home>-server.log``."""
    full = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_API_TOKEN": token, **(env or {})}
    full.pop("NOVATUNE_CONFIG", None)
    log = home.parent / f"{home.name}-server.log"
    with open(log, "wb") as f:
        server = subprocess.Popen([sys.executable, "-m", "experiments", "serve", "--port", str(port)], cwd=REPO,
                                  env=full, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    return server, log


def stop_serve(server: subprocess.Popen[bytes], *, timeout_s: float) -> tuple[int | None, bool]:
    """SIGTERM (the service restores and stops its studies), then SIGKILL of its group after ``timeout_s``;
    returns the exit status and whether it had to be killed."""
    if server.poll() is not None:
        return server.returncode, False
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=timeout_s)
        return server.returncode, False
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        return server.returncode, True


def finish(name: str, run: Callable[[], dict[str, Any]],
           verdict: Callable[[dict[str, Any]], tuple[bool, str]], *, as_json: bool) -> int:
    """Run the benchmark, print its line (or the result as JSON): exit 0 on target, 1 off it, 2 if a step
    failed."""
    try:
        result = run()
    except BenchError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 2
    ok, line = verdict(result)
    result["ok"] = ok
    print(json.dumps(result, indent=2) if as_json else line)
    return 0 if ok else 1
