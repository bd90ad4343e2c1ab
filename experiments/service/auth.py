"""Bearer-token auth: every request that changes something needs the token; reads too when
``require_token_for_reads`` is set. The token is ``NOVATUNE_API_TOKEN``, the settings file's
``api_token``, or the one generated into the data directory at first start.

Routes ask for it through :data:`~experiments.service.deps.ReadAccess` and
:data:`~experiments.service.deps.WriteAccess`.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["read_access", "write_access"]

_bearer = HTTPBearer(auto_error=False, description="the novatune API token (printed by `novatune serve`)")


def _check(request: Request, creds: HTTPAuthorizationCredentials | None) -> None:
    expected: str = request.app.state.token
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "this request needs the API token: send 'Authorization: Bearer <token>' "
                                 "(the token is printed by `novatune serve` and kept in the data directory)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(creds.credentials.encode(), expected.encode()):
        raise HTTPException(401, "wrong API token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def write_access(request: Request, creds: Credentials) -> None:
    """Raises: HTTPException: 401 without the right bearer token."""
    _check(request, creds)


async def read_access(request: Request, creds: Credentials) -> None:
    """Raises: HTTPException: 401 without the right bearer token, when ``require_token_for_reads`` is set."""
    if request.app.state.settings.require_token_for_reads:
        _check(request, creds)
