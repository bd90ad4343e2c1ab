"""The API's front door: one pure ASGI middleware, the outermost, that settles every request from its
head alone before any route runs and before any byte of its body is read.

In order (the first refusal answers, with ``Connection: close``):

1. **Host**: the ``Host`` header must name 127.0.0.1, localhost, ::1, the bind address or one of
   ``allowed_hosts`` (a page of another site whose name was rebound to this machine sends its own
   name): 400 otherwise.
2. **Size**: a ``Content-Length`` over ``max_body_bytes`` is 413, before anything else is read.
3. **Token**: :meth:`~experiments.service.auth.Authenticator.check` for a request that needs it
   (429 for an address with too many failures, 401 without the right token).
4. **Body**: read here, counted (a chunked body is cut at ``max_body_bytes``: 413) and timed (it must
   arrive within ``read_timeout_s``: 408); the route then gets it whole.

What HTTP itself must bound (a head's size and time, open connections) is bounded below this, in the
server's connection protocol (:mod:`experiments.service.serving`).
"""

from __future__ import annotations

import asyncio
import ipaddress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from experiments.service.auth import Authenticator
from experiments.service.errors import RequestRefused, refusal

__all__ = ["LOOPBACK_NAMES", "Guard", "HostNotAllowed", "MalformedRequest", "RequestTimedOut", "RequestTooLarge",
           "host_name", "is_wildcard"]

#: the names a loopback client uses; always allowed
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class HostNotAllowed(RequestRefused):
    """The ``Host`` header names no host this service answers for, or is missing or malformed (HTTP 400)."""

    http_status = 400


class MalformedRequest(RequestRefused):
    """A request head the guard cannot read: several Host or Content-Length headers, or a malformed one
    (HTTP 400)."""

    http_status = 400


class RequestTooLarge(RequestRefused):
    """A request body over ``max_body_bytes`` (HTTP 413)."""

    http_status = 413


class RequestTimedOut(RequestRefused):
    """A request body that did not arrive within ``read_timeout_s`` (HTTP 408)."""

    http_status = 408


def is_wildcard(host: str) -> bool:
    """Whether ``host`` is an any-address bind (0.0.0.0, ::): no client names it."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The host part of a ``Host`` header value, lower case, without port or IPv6 brackets.

    Raises:
        MalformedRequest: not a host[:port] value.
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            raise MalformedRequest(f"malformed Host header {value[:100]!r}: expected host or host:port")
        return name
    name, colon, port = value.partition(":")
    if not name or (colon and not port.isdigit()):
        raise MalformedRequest(f"malformed Host header {value[:100]!r}: expected host or host:port")
    return name


def _headers(scope: Scope, name: bytes) -> list[bytes]:
    return [bytes(v) for k, v in scope.get("headers", ()) if k == name]


class Guard:
    """The middleware (see the module docstring). ``allowed_hosts``: the names besides
    :data:`LOOPBACK_NAMES`; the bind address is one of them unless it is a wildcard."""

    def __init__(self, app: ASGIApp, *, auth: Authenticator, allowed_hosts: list[str], max_body_bytes: int,
                 read_timeout_s: float) -> None:
        self.app = app
        self.auth = auth
        self.allowed = frozenset(h.strip("[]").lower() for h in (*LOOPBACK_NAMES, *allowed_hosts)
                                 if h and not is_wildcard(h))
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket route: refuse the handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            self._check_head(scope)
            if not _has_body(scope):  # HTTP/1.1: no Content-Length and no Transfer-Encoding, no body (a GET)
                await self.app(scope, receive, send)
                return
            body = await self._read_body(receive)
        except RequestRefused as err:
            await refusal(err, close=True)(scope, receive, send)
            return
        if body is None:  # the client went away mid-body
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_head(self, scope: Scope) -> None:
        hosts = _headers(scope, b"host")
        if len(hosts) != 1:
            raise MalformedRequest(f"a request needs one Host header (it has {len(hosts)}); allowed: "
                                 f"{', '.join(sorted(self.allowed))}")
        name = host_name(hosts[0].decode("latin-1"))
        if name not in self.allowed:
            raise HostNotAllowed(f"Host {name[:100]!r} is not a name this service answers for; allowed: "
                                 f"{', '.join(sorted(self.allowed))} (add names to the allowed_hosts setting)")
        lengths = _headers(scope, b"content-length")
        if len(lengths) > 1 or (lengths and not lengths[0].strip().isdigit()):
            raise MalformedRequest("a request has at most one Content-Length header, a decimal number")
        if lengths and int(lengths[0]) > self.max_body_bytes:
            raise RequestTooLarge(f"the request body has {int(lengths[0])} bytes; at most {self.max_body_bytes} "
                                  "are accepted (max_body_bytes)")
        if self.auth.needs_token(scope["method"], scope["path"]):
            self.auth.check(scope)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (None: the client disconnected).

        Raises:
            RequestTooLarge: more than ``max_body_bytes`` arrived.
            RequestTimedOut: the body did not arrive within ``read_timeout_s``.
        """
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise RequestTooLarge(f"the request body passed {self.max_body_bytes} bytes "
                                              "(max_body_bytes): refused")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise RequestTimedOut(f"the request body did not arrive within {self.read_timeout_s:g} s "
                                  "(read_timeout_s)") from None


def _has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a Content-Length other than 0, or a Transfer-Encoding)."""
    for key, value in scope["headers"]:
        if (key == b"content-length" and value.strip() != b"0") or key == b"transfer-encoding":
            return True
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already in one message, then the connection's own events
    (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
