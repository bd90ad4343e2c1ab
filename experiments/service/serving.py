"""How ``novatune serve`` (and ``novatune ui``) is exposed: which addresses it may bind, and the limits
HTTP itself needs below the app (the guard, :mod:`experiments.service.guard`, bounds the rest).

- :func:`check_bind`: a non-loopback address only with TLS (``tls_certfile``/``tls_keyfile``) or an
  explicit ``--insecure-bind`` / ``allow_insecure_bind`` (then a loud warning); :class:`InsecureBind`
  (exit 2) otherwise.
- :func:`uvicorn_config`: the server's options, with :func:`protocol_class`: uvicorn's httptools
  protocol plus what uvicorn lacks -- a request head must arrive within ``read_timeout_s`` of the
  connection (or of the first byte of a kept-alive connection's next request) and within
  ``max_header_bytes``, else 408/431 and the connection is closed; past ``max_connections`` open
  connections a new one is answered 503 and closed. X-Forwarded-For is not trusted (a local client
  would otherwise pick its own address for the per-address limits); no websocket.
- :func:`raise_fd_limit`: the soft open-files limit raised to the hard one, and ``max_connections``
  kept under it (accept() must never fail for want of a descriptor).
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import resource
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from collectors.errors import NovatuneError

__all__ = ["ConnectionLimits", "InsecureBind", "check_bind", "is_loopback", "protocol_class", "raise_fd_limit",
           "tls_files", "uvicorn_config"]

log = logging.getLogger(__name__)

#: descriptors kept for the service's own files (databases, logs, workers' pipes) besides connections
FD_RESERVE = 256


class InsecureBind(NovatuneError):
    """A server asked to listen beyond loopback without TLS or an explicit insecure flag, or with half or
    unreadable TLS settings (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address (False if it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, *, tls: bool, insecure: bool, what: str = "novatune serve",
               tls_possible: bool = True) -> str | None:
    """Whether ``what`` may listen on ``host``: loopback always; anything else only with ``tls`` or
    ``insecure``. Returns the warning to print for an insecure bind (None otherwise). ``tls_possible``:
    whether the message may point to the TLS settings (not for the MLflow UI).

    Raises:
        InsecureBind: a non-loopback ``host`` without TLS or the insecure flag.
    """
    if is_loopback(host) or tls:
        return None
    if not insecure:
        remedy = ("set tls_certfile and tls_keyfile, or pass --insecure-bind (setting allow_insecure_bind) to "
                  "accept it") if tls_possible else "or pass --insecure-bind to accept it (no TLS, no login)"
        raise InsecureBind(
            f"{what} refuses to listen on {host} without TLS: every client on the network could read what "
            f"it sends and answers. Keep 127.0.0.1 (an SSH tunnel or a proxy with TLS and auth reaches it), {remedy}")
    return (f"WARNING: {what} listens on {host} over plain HTTP (--insecure-bind): what it sends and answers "
            "crosses the network readable by anyone on it"
            + ("; use TLS (tls_certfile/tls_keyfile) or a proxy" if tls_possible else ""))


def tls_files(settings: Any) -> tuple[str, str] | None:
    """The (certificate, key) files of ``settings`` (None: no TLS).

    Raises:
        InsecureBind: only one of the two is set, or one cannot be read.
    """
    cert, key = settings.tls_certfile, settings.tls_keyfile
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InsecureBind("TLS needs both tls_certfile and tls_keyfile (only "
                           f"{'tls_certfile' if cert is not None else 'tls_keyfile'} is set)")
    for name, path in (("tls_certfile", cert), ("tls_keyfile", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise InsecureBind(f"{name} {path}: cannot be read ({err.strerror or err})") from None
    return str(cert), str(key)


def raise_fd_limit(max_connections: int) -> int:
    """Raise the soft open-files limit to the hard one; returns how many connections fit under it
    (``max_connections``, or fewer when the hard limit is low: a warning then says so)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, max_connections + FD_RESERVE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as err:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, err)
    fits = max(16, soft - FD_RESERVE)
    if fits < max_connections:
        log.warning("max_connections %d lowered to %d: the open-files limit is %d (raise `ulimit -n`)",
                    max_connections, fits, soft)
        return fits
    return max_connections


@dataclass(frozen=True)
class ConnectionLimits:
    """What the connection protocol enforces (from the settings of the same names)."""

    read_timeout_s: float
    max_header_bytes: int
    max_connections: int


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for each request head and a cap
    on open connections (:class:`ConnectionLimits`, set on the subclass :func:`protocol_class` makes).

    The deadline runs from the connection (a client that connects and says nothing is closed too) and
    from the first byte of each later request of a kept-alive connection (uvicorn's keep-alive timeout
    covers the idle time in between). The head size counts every byte received while a head is
    incomplete (a pipelined body before it counts too: a bound, not an exact size).
    """

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "too many open connections")
            return
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"request head over {self.limits.max_header_bytes} bytes (max_header_bytes)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:
            self._start_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_timer()
        super().on_headers_complete()

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.read_timeout_s, self._head_timed_out)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"no complete request head within {self.limits.read_timeout_s:g} s (read_timeout_s)")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message`` (unless a response is under way) and close the connection."""
        self._stop_timer()
        self._in_head = False
        if self.cycle is None or self.cycle.response_complete:
            body = message.encode("ascii", "replace")
            self.transport.write(b"".join([
                STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """A :class:`GuardedHttpProtocol` subclass that enforces ``limits`` (uvicorn instantiates it)."""
    return type("GuardedHttp", (GuardedHttpProtocol,), {"limits": limits})


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging set-up, plus novatune's own loggers (auth failures, the watcher) on its handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["experiments"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def uvicorn_config(app: Any, settings: Any, *, max_connections: int, tls: tuple[str, str] | None) -> Any:
    """The uvicorn configuration ``novatune serve`` runs ``app`` with (limits from ``settings``)."""
    import uvicorn

    limits = ConnectionLimits(read_timeout_s=settings.read_timeout_s, max_header_bytes=settings.max_header_bytes,
                              max_connections=max_connections)
    cert, key = tls if tls is not None else (None, None)
    return uvicorn.Config(
        app, http=protocol_class(limits), ws="none", lifespan="on", proxy_headers=False, server_header=False,
        # uvicorn's own 503 past this many tasks; connections are capped by the protocol
        limit_concurrency=max_connections + 1, backlog=2048, timeout_keep_alive=5,
        h11_max_incomplete_event_size=settings.max_header_bytes,  # the same bound, were h11 ever chosen
        ssl_certfile=cert, ssl_keyfile=key, log_level=settings.log_level, log_config=_log_config(settings.log_level),
        # the access log costs ~5 % of a busy service's CPU: on with log_level debug
        access_log=settings.log_level == "debug")
