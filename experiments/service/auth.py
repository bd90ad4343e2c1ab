"""Bearer-token auth, in one place: which request needs the token (:meth:`Authenticator.needs_token`),
the one comparison (``secrets.compare_digest``), failures logged (client address, method, path; never
the token presented) and counted per client address (:class:`AuthFailures`: after
``auth_failure_limit`` failures within a minute the address gets 429 with ``Retry-After`` for
``auth_lockout_s``, before its token is even looked at).

Every request that changes something (any method but GET, HEAD, OPTIONS) needs the token; reads too
when ``require_token_for_reads`` is set, except :data:`PUBLIC_PATHS` (liveness and the API's own
description). The token is ``NOVATUNE_API_TOKEN``, the settings file's ``api_token``, or the one
generated into the data directory at first start (``<data dir>/api-token``, mode 0600; never printed).

The guard (:mod:`experiments.service.guard`) calls :meth:`Authenticator.check` for every request
from its headers alone, before any byte of the body is read. The route dependencies
:data:`~experiments.service.deps.ReadAccess` / :data:`~experiments.service.deps.WriteAccess`
declare the scheme in the OpenAPI schema and call the same check when the guard has not already
passed the request (a route whose declaration is stricter than the method rule).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from experiments.service.errors import RequestRefused

__all__ = [
    "AUTHENTICATED",
    "PUBLIC_PATHS",
    "AuthFailures",
    "Authenticator",
    "TokenRequired",
    "TooManyAuthFailures",
    "read_access",
    "write_access",
]

log = logging.getLogger(__name__)

#: the scope key the guard sets once a request's token was checked
AUTHENTICATED = "novatune.authenticated"
#: methods that read (any other needs the token)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: paths every client may read, even with ``require_token_for_reads``: liveness and the API's description
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/redoc"})
#: ... and what those pages load (the docs' own scripts and styles)
PUBLIC_PREFIXES = ("/docs/assets/",)
#: failures are counted over this window
FAILURE_WINDOW_S = 60.0
#: addresses remembered at most (the oldest are forgotten first): the table stays bounded under a flood
MAX_ADDRESSES = 4096

_bearer = HTTPBearer(auto_error=False, description="the novatune API token (kept in <data dir>/api-token)")


class TokenRequired(RequestRefused):
    """No bearer token, or not the API token (HTTP 401)."""

    http_status = 401


class TooManyAuthFailures(RequestRefused):
    """Too many failed authentications from one client address: refused for a while (HTTP 429)."""

    http_status = 429


class AuthFailures:
    """Failed authentications per client address: ``limit`` within :data:`FAILURE_WINDOW_S` seconds block
    the address for ``lockout_s`` seconds. Bounded: at most :data:`MAX_ADDRESSES` addresses are kept."""

    def __init__(self, *, limit: int, lockout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.lockout_s = lockout_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def blocked_for(self, address: str) -> float:
        """Seconds ``address`` stays blocked (0: not blocked)."""
        until = self._blocked.get(address)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._blocked[address]
            return 0.0
        return left

    def failed(self, address: str) -> int:
        """Record one failure of ``address``; returns how many it has within the window (the address is
        blocked when that reaches the limit)."""
        now = self._clock()
        times = self._failures.pop(address, None) or deque()
        times.append(now)
        while times and times[0] <= now - FAILURE_WINDOW_S:
            times.popleft()
        self._failures[address] = times  # re-inserted: the dict's order is the order of last failure
        if len(times) >= self.limit:
            self._blocked[address] = now + self.lockout_s
            del self._failures[address]
        for table in (self._failures, self._blocked):
            while len(table) > MAX_ADDRESSES:
                del table[next(iter(table))]
        return len(times)


def _header(scope: MutableMapping[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _printable(text: str, limit: int = 200) -> str:
    """``text`` safe for one log line (a path can hold any character once percent-decoded)."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit] + "..."


class Authenticator:
    """The API token and the rule that asks for it (see the module docstring)."""

    def __init__(self, token: str, *, settings: Any, failures: AuthFailures) -> None:
        self._token = token.encode()
        self._settings = settings
        self.failures = failures

    def needs_token(self, method: str, path: str) -> bool:
        """Whether a request needs the token: every write; reads when ``require_token_for_reads`` is set
        (read now: it changes at runtime), except the public paths."""
        if method not in READ_METHODS:
            return True
        if not self._settings.require_token_for_reads:
            return False
        return path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES)

    def check(self, scope: MutableMapping[str, Any]) -> None:
        """Pass the request of ``scope`` if it carries the token (from its headers only) and mark it
        :data:`AUTHENTICATED`; a failure is logged and counted against the client address.

        Raises:
            TooManyAuthFailures: the client address is blocked (its token is not looked at).
            TokenRequired: no bearer token, or a wrong one.
        """
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        blocked = self.failures.blocked_for(address)
        if blocked:
            wait = max(1, round(blocked))
            raise TooManyAuthFailures(
                f"too many failed authentications from {address}: try again in {wait} s",
                headers={"Retry-After": str(wait)})
        scheme, _, presented = (_header(scope, b"authorization") or b"").partition(b" ")
        if scheme.lower() == b"bearer" and secrets.compare_digest(presented.strip(), self._token):
            scope[AUTHENTICATED] = True
            return
        reason = "wrong API token" if scheme.lower() == b"bearer" else "no bearer token"
        count = self.failures.failed(address)
        log.warning("refused %s %s from %s: %s (%d of %d failures allowed within %.0f s)",
                    _printable(str(scope.get("method", ""))), _printable(str(scope.get("path", ""))), address,
                    reason, count, self.failures.limit, FAILURE_WINDOW_S)
        if count >= self.failures.limit:
            log.warning("%s: %d failed authentications within %.0f s: its requests that need the token get 429 "
                        "for %.0f s", address, count, FAILURE_WINDOW_S, self.failures.lockout_s)
        if reason == "no bearer token":
            raise TokenRequired("this request needs the API token: send 'Authorization: Bearer <token>' (the "
                                "token is in <data dir>/api-token, mode 0600, unless NOVATUNE_API_TOKEN is set)",
                                headers={"WWW-Authenticate": "Bearer"})
        raise TokenRequired("wrong API token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check(request: Request) -> None:
    if not request.scope.get(AUTHENTICATED):
        authenticator: Authenticator = request.app.state.auth
        authenticator.check(request.scope)


async def write_access(request: Request, _creds: Credentials) -> None:
    """Raises: TokenRequired: 401 without the right bearer token; TooManyAuthFailures: 429."""
    _check(request)


async def read_access(request: Request, _creds: Credentials) -> None:
    """Raises: TokenRequired: 401 without the right bearer token, when ``require_token_for_reads`` is
    set; TooManyAuthFailures: 429."""
    if request.app.state.settings.require_token_for_reads:
        _check(request)
