"""HTTP probe: latency percentiles of a running endpoint, bounded in count and time; and :func:`fetch`,
the one way a passive target's URL is requested (the probe, the scrape, the start check).

The outbound rule lives here, once: a probe or scrape URL is ``http(s)://HOST[:PORT]/PATH`` where HOST
is a loopback address (a literal in 127.0.0.0/8 or ``::1``, or ``localhost``, which must resolve to
loopback addresses only) or a host the operator listed in the setting ``allowed_probe_hosts``
(:func:`check_url`, run when a spec is validated). :func:`fetch` checks it again, resolves the host,
checks every address it resolves to, and connects to a checked address (never resolving again);
redirects are never followed. Failure reasons carry the status code or the exception class with the
OS's short message (:func:`describe`), never text the server sent.
"""

from __future__ import annotations

import http.client
import ipaddress
import math
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from collectors.errors import CollectorError

__all__ = ["OUTBOUND_RULE", "Endpoint", "ProbeResult", "check_url", "describe", "fetch", "probe"]

OUTBOUND_RULE = ("http(s)://HOST[:PORT]/PATH where HOST is a loopback address (127.0.0.0/8, ::1, or localhost "
                 "resolving to loopback only) or a host listed in the setting allowed_probe_hosts")
_MAX_ADDRESSES = 8  # bound on the resolved addresses tried
_PROBE_BODY = 1 << 20  # a probe reads at most this much of a body (it times the answer, not the content)


@dataclass(frozen=True)
class Endpoint:
    """A checked URL: where to connect and what to ask for (``target``: path and query)."""

    url: str
    scheme: str
    host: str
    port: int
    target: str
    allowed_host: bool  # named in allowed_probe_hosts (any address), else loopback only


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_url(url: object, *, allowed_hosts: tuple[str, ...] = (), what: str = "URL") -> Endpoint:
    """``url`` checked against the outbound rule (:data:`OUTBOUND_RULE`), without resolving anything.

    Raises:
        CollectorError: not an http(s) URL with a host, user info in it, or a host the rule refuses
            (the message names ``what``, the URL and the rule).
    """
    refuse = CollectorError(f"{what} must be {OUTBOUND_RULE}, got {url!r}")
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 for c in url):
        raise refuse
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username is not None:
        raise refuse
    allowed = host in allowed_hosts
    if not (allowed or host == "localhost" or _is_loopback(host)):
        raise refuse
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80), target, allowed)


def _addresses(ep: Endpoint) -> list[str]:
    """The addresses to connect to, each checked: loopback unless the host was allowed by name.

    Raises:
        CollectorError: the name does not resolve, or resolves to an address the rule refuses.
    """
    if _is_loopback(ep.host):
        return [ep.host]
    try:
        infos = socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise CollectorError(f"{ep.url}: {describe(err)}") from None
    out = list(dict.fromkeys(str(sockaddr[0]) for _, _, _, _, sockaddr in infos))
    bad = [a for a in out if not _is_loopback(a)]
    if bad and not ep.allowed_host:
        raise CollectorError(f"{ep.url}: {ep.host} resolves to {', '.join(bad)}, not loopback only; "
                             f"a URL must be {OUTBOUND_RULE}")
    return out[:_MAX_ADDRESSES]


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to a checked address; the Host header keeps the URL's host."""

    def __init__(self, ep: Endpoint, address: str, timeout: float) -> None:
        super().__init__(ep.host, ep.port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate is verified against the URL's host."""

    def __init__(self, ep: Endpoint, address: str, timeout: float) -> None:
        super().__init__(ep.host, ep.port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def describe(err: BaseException) -> str:
    """A failure as its class and, for OS-level errors, the OS's short message: never text a peer sent
    (an HTTP parse error carries the server's status line, so it is named by its class alone)."""
    name = type(err).__name__
    if isinstance(err, http.client.HTTPException):
        return name
    if isinstance(err, ssl.SSLError):
        return f"{name}: {err.reason}" if err.reason else name
    if isinstance(err, TimeoutError):
        return f"{name}: timed out"
    if isinstance(err, OSError) and err.strerror:
        return f"{name}: {err.strerror}"
    return name


def fetch(url: str, *, timeout_s: float, allowed_hosts: tuple[str, ...] = (), max_bytes: int = _PROBE_BODY,
          ) -> tuple[int, bytes]:
    """One GET of ``url`` under the outbound rule: ``(status, body)``, the body cut at ``max_bytes``.

    Redirects are not followed (a 3xx is returned as it is). Each checked address is tried in turn.

    Raises:
        CollectorError: the rule refuses the URL or an address it resolves to, or no answer came (the
            message names the exception class and the OS's short message, never what the server sent).
    """
    ep = check_url(url, allowed_hosts=allowed_hosts)
    last: BaseException | None = None
    for address in _addresses(ep):
        conn: http.client.HTTPConnection = (_PinnedTLS if ep.scheme == "https" else _Pinned)(ep, address, timeout_s)
        try:
            conn.request("GET", ep.target, headers={"User-Agent": "novatune-probe", "Accept": "*/*",
                                                    "Connection": "close"})
            resp = conn.getresponse()
            return resp.status, resp.read(max_bytes)
        except (OSError, http.client.HTTPException, ValueError) as err:
            last = err
            if not isinstance(err, (ConnectionRefusedError, socket.gaierror)):
                break  # a server answered something, or timed out: another address will not be better
        finally:
            conn.close()
    raise CollectorError(f"{url}: {describe(last) if last is not None else 'no address to connect to'}")


@dataclass(frozen=True)
class ProbeResult:
    """``requests`` answered with a 2xx/3xx status, ``errors`` the rest (timeouts, 4xx/5xx, refused)."""

    url: str
    requests: int
    errors: int
    duration_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    last_error: str | None

    @property
    def error_rate(self) -> float:
        total = self.requests + self.errors
        return self.errors / total if total else 1.0

    def metrics(self) -> dict[str, float]:
        return {
            "probe_requests": float(self.requests),
            "probe_error_rate": self.error_rate,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "latency_p99_ms": self.latency_p99_ms,
        }


def probe(
    url: str, *, count: int = 50, duration_s: float = 10.0, interval_s: float = 0.0, timeout_s: float = 2.0,
    allowed_hosts: tuple[str, ...] = (),
) -> ProbeResult:
    """Send up to ``count`` GETs to ``url`` within ``duration_s`` and time each (through :func:`fetch`).

    Raises:
        CollectorError: the URL breaks the outbound rule, or bounds outside 1..100000 requests / (0, 3600] s.
    """
    check_url(url, allowed_hosts=allowed_hosts, what="probe URL")
    if not 1 <= count <= 100_000:
        raise CollectorError(f"probe count must be in 1..100000, got {count}")
    if not 0 < duration_s <= 3600 or not 0 < timeout_s <= 60 or interval_s < 0:
        raise CollectorError("probe duration must be in (0, 3600] s, timeout in (0, 60] s, interval >= 0")
    lat: list[float] = []
    errors, last_error = 0, None
    start = time.monotonic()
    deadline = start + duration_s
    for _ in range(count):
        if time.monotonic() >= deadline:
            break
        t0 = time.perf_counter()
        status: int | None
        try:
            status, _ = fetch(url, timeout_s=timeout_s, allowed_hosts=allowed_hosts)
            if not 200 <= status < 400:
                last_error = f"HTTP {status}"
        except CollectorError as err:
            status, last_error = None, str(err).removeprefix(f"{url}: ")
        if status is not None and 200 <= status < 400:
            lat.append((time.perf_counter() - t0) * 1000.0)
        else:
            errors += 1
        # a refused connection returns at once: pace it (>= 50 ms) instead of spinning through the count
        pause = interval_s if status is not None else max(interval_s, 0.05)
        if pause:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
    arr = np.asarray(lat)
    pct = [float(np.percentile(arr, q)) if arr.size else math.nan for q in (50, 95, 99)]
    return ProbeResult(url, len(lat), errors, time.monotonic() - start, pct[0], pct[1], pct[2], last_error)
