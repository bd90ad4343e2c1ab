"""wrk: the adapter (a bounded HTTP load against 127.0.0.1 with ``--latency``; req/s and p50/p99) and
:class:`WrkWorkload`, which starts :mod:`collectors.workloads.tools.http_server` unless given a URL."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import pwd
import re
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pandas as pd

from collectors.errors import WorkloadError
from collectors.safepath import PathRefused, SafeFile
from collectors.workloads.process import run_bounded
from collectors.workloads.tools import http_server
from collectors.workloads.tools.adapter import (
    AdapterBase,
    AdapterError,
    AdapterResult,
    check_count,
    check_duration,
    duration_ms,
    to_float,
)
from collectors.workloads.tools.workload import (
    LOOPBACK,
    START_TIMEOUT_S,
    STOP_GRACE_S,
    ToolWorkload,
    check_int,
    make_adapter,
)

__all__ = ["WrkAdapter", "WrkWorkload", "parse_wrk"]

TOOL = "wrk"
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_DIST = re.compile(r"^\s+(50|75|90|99)%\s+([0-9.]+(?:us|ms|s|m|h))\s*$", re.M)
_LAT = re.compile(r"^\s+Latency\s+([0-9.]+(?:us|ms|s|m|h))\s+([0-9.]+(?:us|ms|s|m|h))", re.M)
_TOTAL = re.compile(r"^\s+(\d+) requests in ([0-9.]+(?:us|ms|s|m|h))", re.M)
_SOCK = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True, kw_only=True)
class WrkAdapter(AdapterBase):
    """``wrk -t threads -c connections -d duration_s --timeout 2s --latency url``."""

    url: str
    threads: int = 1
    connections: int = 4
    duration_s: float = 2.0
    tool: str = TOOL

    def max_runtime_s(self) -> float:
        return check_duration(TOOL, "duration_s", self.duration_s) + 10.0

    def command(self) -> list[str]:
        """Raises: AdapterError: an option out of range or a non-http URL."""
        t = check_duration(TOOL, "duration_s", self.duration_s)
        check_count(TOOL, "connections", self.connections, high=10_000)
        check_count(TOOL, "threads", self.threads, high=min(self.connections, 256))
        if not self.url.startswith(("http://", "https://")):
            raise AdapterError(TOOL, f"url must be http(s)://..., got {self.url!r}")
        return [
            "wrk", "-t", str(self.threads), "-c", str(self.connections), "-d", f"{max(1, round(t))}s",
            "--timeout", "2s", "--latency", self.url,
        ]

    def parse(self, text: str) -> AdapterResult:
        return parse_wrk(text)


def parse_wrk(text: str) -> AdapterResult:
    """Parse wrk's text report (run with ``--latency``).

    Throughput is ``Requests/sec`` (``req/s``). wrk's distribution has 50, 75,
    90 and 99 %: p50 and p99 are filled, p95 stays NaN (p75/p90 in ``extra``).
    ``errors`` = socket errors (connect+read+write+timeout) + non-2xx/3xx responses.

    Raises:
        AdapterError: no ``Requests/sec`` line, or ``--latency`` distribution missing.
    """
    m = _RPS.search(text)
    if not m:
        raise AdapterError(TOOL, f"no 'Requests/sec:' line in output: {text.strip()[-300:]!r}")
    dist = {int(p): duration_ms(TOOL, v) for p, v in _DIST.findall(text)}
    if 50 not in dist or 99 not in dist:
        raise AdapterError(TOOL, "no 'Latency Distribution' (run wrk with --latency)")
    lat = _LAT.search(text)
    sock = _SOCK.search(text)
    non2xx = _NON2XX.search(text)
    errors = (sum(int(x) for x in sock.groups()) if sock else 0) + (int(non2xx.group(1)) if non2xx else 0)
    total = _TOTAL.search(text)
    extra = {"latency_p75_ms": dist.get(75, math.nan), "latency_p90_ms": dist.get(90, math.nan)}
    if total:
        extra["requests"] = float(total.group(1))
    return AdapterResult(
        tool=TOOL,
        throughput=to_float(TOOL, "Requests/sec", m.group(1)),
        throughput_unit="req/s",
        latency_p50_ms=dist[50],
        latency_p99_ms=dist[99],
        latency_avg_ms=duration_ms(TOOL, lat.group(1)) if lat else math.nan,
        latency_stddev_ms=duration_ms(TOOL, lat.group(2)) if lat else math.nan,
        errors=errors,
        extra=extra,
        raw={"distribution_ms": dist, "text": text},
    )


def _write_new(target: SafeFile, data: bytes) -> None:
    """Write ``data`` into the fresh file ``target`` and close it. Raises: OSError."""
    with target:
        view = memoryview(data)
        while view:
            view = view[os.write(target.fd, view):]


def _interpreter(account: pwd.struct_passwd | None) -> str:
    """A Python that ``account`` may run (novatune's own may live where it cannot read, e.g. under /root).

    Raises:
        WorkloadError: none of novatune's, ``python3`` on PATH and ``/usr/bin/python3`` runs as the account.
    """
    if account is None:
        return sys.executable
    tried = list(dict.fromkeys(p for p in (sys.executable, shutil.which("python3"), "/usr/bin/python3") if p))
    for python in tried:
        try:
            if run_bounded([python, "-I", "-c", "import http.server"], timeout_s=30, cwd="/", user=account.pw_uid,
                           group=account.pw_gid, extra_groups=[]).returncode == 0:
                return python
        except (OSError, subprocess.SubprocessError, subprocess.TimeoutExpired):
            continue
    raise WorkloadError(f"wrk: no Python that user {account.pw_name} may run for the HTTP server "
                        f"(tried: {', '.join(tried)})")


def _loopback_url(url: Any) -> str:
    """``url`` if it is http(s) to a loopback address (literal 127.0.0.0/8, ::1, or localhost).

    Raises:
        AdapterError: anything else (the message says what is allowed).
    """
    if not isinstance(url, str) or not url:
        raise AdapterError("wrk", f"url must be an http(s):// URL string, got {url!r}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError as err:
        raise AdapterError("wrk", f"url {url!r} is malformed: {err}") from err
    if parts.scheme not in ("http", "https"):
        raise AdapterError("wrk", f"url must be http:// or https://, got {url!r}")
    if not host:
        raise AdapterError("wrk", f"url {url!r} has no host")
    if host != "localhost":
        try:
            addr = ipaddress.ip_address(host)
        except ValueError as err:
            raise AdapterError(
                "wrk", f"url host must be a literal loopback address (127.0.0.0/8, ::1) or localhost, got {host!r}"
            ) from err
        if not addr.is_loopback:
            raise AdapterError("wrk", f"url host must be a loopback address (127.0.0.0/8, ::1), got {host!r}")
    return url


class WrkWorkload(ToolWorkload):
    """wrk against a built-in static HTTP server (the tuned process), or against a given loopback URL.

    Without ``url``, :meth:`start` writes ``www/index.html`` (``file_bytes``
    bytes) in the server's private directory and starts
    :mod:`collectors.workloads.tools.http_server` (HTTP/1.1 keep-alive,
    threaded, no access log) as user ``nobody`` on a socket novatune bound to
    127.0.0.1:<free port>.
    With ``url`` nothing is started and :meth:`pids` is ``[]``.

    Options (defaults): ``url`` (None): http(s) to 127.0.0.0/8, ::1 or
    localhost only; ``threads`` (1): 1..min(connections, 256); ``connections``
    (4): 1..10 000; ``file_bytes`` (1024): 1..16 MiB, size of the served file
    (built-in server only).

    A warm-up run of ``warmup_s`` (discarded) when > 0, then a run of
    ``measure_s`` (wrk takes whole seconds: rounded, >= 1).

    Metrics: ``throughput`` (``req/s``), ``latency_p50_ms``,
    ``latency_p75_ms``, ``latency_p90_ms``, ``latency_p99_ms``,
    ``latency_avg_ms``, ``latency_stddev_ms`` (wrk has no p95), ``errors``
    (socket errors + non-2xx/3xx), ``error_rate``, ``requests``. No timeline.
    """

    kind = "wrk"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"url": None, "threads": 1, "connections": 4, "file_bytes": 1024}
    METRICS = ("throughput", "latency_p50_ms", "latency_p75_ms", "latency_p90_ms", "latency_p99_ms",
               "latency_avg_ms", "latency_stddev_ms", "errors", "error_rate", "requests")
    BINARIES = ("wrk",)
    SERVER_USERS = ("nobody",)

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.url: str | None = None
        super().__init__(workdir, **options)

    def _validate(self) -> None:
        o = self.options
        if o["url"] is not None:
            _loopback_url(o["url"])
        check_int("wrk", "connections", o["connections"], 1, 10_000)
        check_int("wrk", "threads", o["threads"], 1, min(o["connections"], 256))
        check_int("wrk", "file_bytes", o["file_bytes"], 1, 16 << 20)
        self._adapter(1.0, url=o["url"] or "http://127.0.0.1:1/").command()

    def _adapter(self, seconds: float, url: str | None = None) -> WrkAdapter:
        o = self.options
        return make_adapter(
            "wrk", WrkAdapter, url=url or self.url, threads=o["threads"], connections=o["connections"],
            duration_s=seconds,
        )

    def _has_server(self) -> bool:
        return self.options["url"] is None

    def _prepare_own_paths(self) -> None:
        """The served file and the server's script, written into the server's private directory."""
        private = self._private
        if private is None or (private.top / "http_server.py").exists():
            return
        body = (b"novatune " * (self.options["file_bytes"] // 9 + 1))[: self.options["file_bytes"]]
        try:
            www = private.roots.ensure_dir("www")
            os.chmod(www, 0o755)  # novatune's, readable: the server only reads it
            _write_new(private.roots.open_file("www/index.html", mode=0o644), body)
            _write_new(private.roots.open_file("http_server.py", mode=0o644), Path(http_server.__file__).read_bytes())
        except (PathRefused, OSError) as err:
            raise WorkloadError(f"wrk: cannot write the served file in {private.top}: {err}") from err

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        if self.options["url"] is not None:
            self.url = self.options["url"]
            return
        private = self._server_dir()
        www = private.top / "www"
        private.open_to()
        python = _interpreter(private.account)
        listener = socket.socket()  # bound here, on loopback: the server cannot choose where it listens
        try:
            listener.bind((LOOPBACK, 0))
            listener.listen(128)
            fd = listener.fileno()
            argv = [python, "-I", str(private.top / "http_server.py"), "http", "--root", str(www), "--fd", str(fd)]
            proc = self._spawn_tuned(argv, preexec_fn, stdout_pipe=True, private=private, pass_fds=(fd,))
            port = listener.getsockname()[1]
        finally:
            listener.close()
        if self._read_ready(proc) != port:
            raise WorkloadError("wrk: the HTTP server reported another port than the one it was given")
        self.url = f"http://{LOOPBACK}:{port}/index.html"

    def _read_ready(self, proc: subprocess.Popen[bytes]) -> int:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkloadError(f"wrk: HTTP server not ready after {START_TIMEOUT_S:g} s; "
                                        f"log tail:\n{self._log_tail()}")
                if not sel.select(timeout=min(left, 0.2)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait(timeout=STOP_GRACE_S)
                    self._check_alive("during start-up")
                buf += chunk
        try:
            ready = json.loads(buf.split(b"\n", 1)[0])
            return int(ready["port"])
        except (ValueError, KeyError, TypeError) as err:
            raise WorkloadError(f"wrk: HTTP server printed an unexpected ready line: {buf[:200]!r}") from err

    def stop(self) -> None:
        super().stop()
        self.url = None

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        result, notes = self._warm_then_measure(warmup_s, measure_s)
        return result, None, notes

    def _operations(self, result: AdapterResult) -> float:
        return result.extra.get("requests", math.nan)
