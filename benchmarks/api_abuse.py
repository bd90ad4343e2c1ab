"""Abuse benchmark of the service's request limits (not a test).

Requirement (security issue, acceptance): the API stays up and answers ``/healthz`` within 1 s while
1,000 half-open connections and a 100 MB unauthenticated body are thrown at it.

What it does, every step bounded in time (the whole run well under a minute by default):

1. starts the real service, ``python -m experiments serve --port P`` on a free 127.0.0.1 port, over a
   new temporary data directory (``NOVATUNE_HOME``, ``NOVATUNE_API_TOKEN``), with the shipped limits,
   and waits for ``/healthz``;
2. for ``--seconds`` (default 20, longer than the service's ``read_timeout_s`` of 10 s) at once:

   - opens ``--half-open`` (1,000) connections that each send a partial request head and hold it,
     and watches when the server closes them;
   - one client streams a 100 MB chunked body to ``POST /studies`` without a token; one sends
     ``Content-Length: 100000000`` without a token; one streams 100 MB chunked *with* the token (the
     body limit, not the token check, must stop it): for each, the status the server answered and
     how many bytes it took before it refused and closed;
   - a fresh connection asks ``GET /healthz`` every 100 ms (each request times out after 5 s);

3. prints the worst ``/healthz`` latency, how many half-open connections the server closed and when,
   what became of each body, and the server's RSS before and after; stops the server (SIGTERM) and
   removes the data directory.

Exits 1 when a ``/healthz`` took over 1 s or failed, or a 100 MB body was not refused; ``--json``
prints a JSON document.

    python benchmarks/api_abuse.py [--seconds 20] [--half-open 1000] [--json]
"""

from __future__ import annotations

import argparse
import resource
import secrets
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# ``python benchmarks/<name>.py`` puts benchmarks/ first on sys.path; the shared helper is imported by its
# package name from the checkout's root, so no top-level module named ``_service`` exists anywhere
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._service import BenchError, finish, free_port, start_serve, stop_serve

BODY_BYTES = 100_000_000
CHUNK = 64 * 1024
HEALTH_EVERY_S = 0.1
HEALTH_TIMEOUT_S = 5.0
TARGET_S = 1.0


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _health(port: int) -> tuple[float, int | None]:
    """One ``GET /healthz`` on a new connection: (seconds, status or None on failure)."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HEALTH_TIMEOUT_S) as s:
            s.settimeout(max(0.01, HEALTH_TIMEOUT_S - (time.monotonic() - started)))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                more = s.recv(4096)
                if not more:
                    break
                data += more
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
        return time.monotonic() - started, status
    except (OSError, ValueError, IndexError):
        return time.monotonic() - started, None


# ------------------------------------------------------------------ attackers
class HalfOpen:
    """``count`` connections, each with a partial head sent and held; records when the server closes each."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Held: "

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.opened = 0
        self.open_errors = 0
        self.closed_after_s: list[float] = []
        self.answered: dict[str, int] = {}
        self.opened_in_s = 0.0

    def run(self, deadline: float) -> None:
        sel = selectors.DefaultSelector()
        started = time.monotonic()
        try:
            for _ in range(self.count):
                if time.monotonic() >= deadline:
                    break
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    s.sendall(self.HEAD)
                    s.setblocking(False)
                except OSError:
                    self.open_errors += 1
                    continue
                sel.register(s, selectors.EVENT_READ, time.monotonic())
                self.opened += 1
            self.opened_in_s = time.monotonic() - started
            self._watch(sel, deadline)
        finally:
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()

    def _watch(self, sel: selectors.BaseSelector, deadline: float) -> None:
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                s: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    status = data.split(b" ", 2)[1].decode()
                    self.answered[status] = self.answered.get(status, 0) + 1
                    continue
                if not data:
                    self.closed_after_s.append(time.monotonic() - key.data)
                    sel.unregister(s)
                    s.close()

    def figures(self) -> dict[str, Any]:
        closed = sorted(self.closed_after_s)
        return {"opened": self.opened, "open_errors": self.open_errors, "opened_in_s": round(self.opened_in_s, 2),
                "closed_by_server": len(closed), "answers": self.answered,
                "closed_after_s": {"first": round(closed[0], 2), "median": round(statistics.median(closed), 2),
                                   "last": round(closed[-1], 2)} if closed else None}


def _stream_body(port: int, label: str, head: bytes, chunked: bool, deadline: float, out: dict[str, Any]) -> None:
    """Send ``head`` then up to 100 MB (chunked or raw); record the answer and how many bytes went out."""
    sent = 0
    status: str | None = None
    ended = "all sent"
    started = time.monotonic()
    chunk = b"x" * CHUNK
    piece = b"%x\r\n" % CHUNK + chunk + b"\r\n" if chunked else chunk
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head)
            s.settimeout(2)
            while sent < BODY_BYTES and time.monotonic() < deadline:
                try:
                    s.sendall(piece)
                except OSError as err:  # refused and closed: the connection was reset
                    ended = f"connection closed by the server ({type(err).__name__})"
                    break
                sent += CHUNK
                status = status or _peek_status(s)
            else:
                ended = "all sent" if sent >= BODY_BYTES else "out of time"
            status = status or _read_status(s)
    except OSError as err:
        ended = f"could not connect: {err}"
    out[label] = {"status": status, "body_bytes_sent": sent, "refused": status in ("401", "413"),
                  "ended": ended, "seconds": round(time.monotonic() - started, 2)}


def _peek_status(s: socket.socket) -> str | None:
    """The status of an answer already there (without waiting: a socket with a timeout would wait in recv)."""
    import select

    try:
        if not select.select([s], [], [], 0)[0]:
            return None
        data = s.recv(64, socket.MSG_PEEK)
    except OSError:
        return None
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") and data.count(b" ") >= 2 else None


def _read_status(s: socket.socket) -> str | None:
    try:
        data = s.recv(64)
    except OSError:
        return None
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") and data.count(b" ") >= 2 else None


def _bodies(port: int, token: str, deadline: float, out: dict[str, Any]) -> list[threading.Thread]:
    host = b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
    cases = [
        ("chunked_100MB_no_token", b"POST /studies HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n", True),
        ("content_length_100MB_no_token",
         b"POST /studies HTTP/1.1\r\n" + host + b"Content-Length: %d\r\n\r\n" % BODY_BYTES, False),
        ("chunked_100MB_with_token", b"POST /studies HTTP/1.1\r\n" + host + b"Authorization: Bearer "
         + token.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    ]
    threads = [threading.Thread(target=_stream_body, args=(port, label, head, chunked, deadline, out), daemon=True)
               for label, head, chunked in cases]
    for t in threads:
        t.start()
    return threads


# ------------------------------------------------------------------ the run
def _start_server(home: Path, token: str, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    server, log = start_serve(home, token, port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited ({server.returncode}): {log.read_text()[-2000:]}")
        if _health(port)[1] == 200:
            return server, log
        time.sleep(0.2)
    stop_serve(server, timeout_s=30)
    raise BenchError("the server did not answer /healthz within 60 s")


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"the open-files limit {hard} is below the {needed} this benchmark needs (ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _attack(port: int, token: str, args: argparse.Namespace, server_pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + args.seconds
    half = HalfOpen(port, args.half_open)
    opener = threading.Thread(target=half.run, args=(deadline,), daemon=True)
    bodies: dict[str, Any] = {}
    opener.start()
    threads = _bodies(port, token, deadline, bodies)
    latencies: list[float] = []
    failures = 0
    rss_peak = _rss_mb(server_pid) or 0.0
    while time.monotonic() < deadline:
        tick = time.monotonic()
        took, status = _health(port)
        latencies.append(took)
        failures += status != 200
        rss_peak = max(rss_peak, _rss_mb(server_pid) or 0.0)
        time.sleep(max(0.0, HEALTH_EVERY_S - (time.monotonic() - tick)))
    for t in (opener, *threads):
        t.join(timeout=15)
    ordered = sorted(latencies)
    return {
        "healthz": {"requests": len(latencies), "failures": failures,
                    "worst_ms": round(ordered[-1] * 1000, 1) if ordered else None,
                    "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
                    "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1) if ordered else None},
        "half_open": half.figures(), "bodies": bodies, "rss_peak_mb": rss_peak,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    _raise_own_fd_limit(args.half_open + 256)
    home = Path(tempfile.mkdtemp(prefix="novatune-abuse-"))
    token = secrets.token_urlsafe(24)
    port = free_port()
    result: dict[str, Any] = {"port": port, "seconds": args.seconds, "target_ms": TARGET_S * 1000}
    server, log = _start_server(home, token, port)
    try:
        result["rss_before_mb"] = _rss_mb(server.pid)
        result.update(_attack(port, token, args, server.pid))
        result["rss_after_mb"] = _rss_mb(server.pid)
        result["healthz_after"] = _health(port)[1]
    finally:
        result["server_exit"] = stop_serve(server, timeout_s=30)[0]
        if args.keep:
            result["data_dir"], result["server_log"] = str(home), str(log)
        else:
            shutil.rmtree(home, ignore_errors=True)
            log.unlink(missing_ok=True)
    return result


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    h, half, bodies = result["healthz"], result["half_open"], result["bodies"]
    refused = all(b.get("refused") for b in bodies.values()) and len(bodies) == 3
    ok = (h["failures"] == 0 and h["worst_ms"] is not None and h["worst_ms"] <= result["target_ms"] and refused
          and result.get("healthz_after") == 200)
    closed = half["closed_after_s"]
    when = (f"after {closed['first']}-{closed['last']} s (median {closed['median']} s)" if closed else "none")
    body_text = "; ".join(f"{k}: {v['status']} after {v['body_bytes_sent'] / 1e6:.1f} MB sent ({v['ended']})"
                          for k, v in bodies.items())
    line = (f"/healthz worst {h['worst_ms']} ms (target <= {result['target_ms']:.0f} ms), p50 {h['p50_ms']} ms, "
            f"{h['requests']} requests, {h['failures']} failed; half-open: {half['opened']} opened in "
            f"{half['opened_in_s']} s, {half['closed_by_server']} closed by the server {when}, answers "
            f"{half['answers']}; bodies: {body_text}; server RSS {result['rss_before_mb']} MB before, peak "
            f"{result['rss_peak_mb']} MB, {result['rss_after_mb']} MB after")
    return ok, line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="attack duration (default 20, at most 50)")
    ap.add_argument("--half-open", type=int, default=1000, help="half-open connections (default 1000)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory and server log")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.seconds <= 50 or not 0 <= args.half_open <= 5000:
        ap.error("--seconds must be in 1..50 and --half-open in 0..5000")
    return finish("api_abuse", lambda: run(args), verdict, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
